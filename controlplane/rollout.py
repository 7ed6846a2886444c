"""Staged rollout of ``agent.update``: canary devices first, then growing waves, stopping as
soon as the share of failed devices passes a threshold.

A device counts as updated (``done``) when it acked ``done`` *and* its retained state (the
new process's birth message) names the new version; ``failed`` when it acked ``failed`` or
``rejected`` (``rolled_back``, ``hash_mismatch`` …); ``timeout`` when neither came within
``wait_healthy_s``. Devices of waves not started are ``skipped``.

``rollout`` is what a CLI calls, e.g. ``update push ARTIFACT --to grp:q10 --canary 10%
--wait-healthy 10m``: ``SessionFleet`` speaks MQTT through a control-plane session, and any
other ``Fleet`` (a fleet simulator, a test's) can stand in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from controlplane.errors import ControlError
from controlplane.keys import SigningKey, make_document
from controlplane.session import Session
from protocol import Topics
from protocol.release import ReleaseError, read_manifest

# confirming: acked done, waiting for the birth message that names the new version.
State = Literal["waiting", "sent", "accepted", "confirming", "done", "failed", "timeout", "skipped"]
FINAL: frozenset[str] = frozenset({"done", "failed", "timeout", "skipped"})


@dataclass(frozen=True)
class ReleaseRef:
    """The ``agent.update`` body: a signed artifact on an HTTP(S) server."""

    version: str
    url: str
    sha256: str
    size: int
    min_free_mb: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
        }
        if self.min_free_mb is not None:
            body["min_free_mb"] = self.min_free_mb
        return body


@dataclass
class DeviceRun:
    """One device's part in a rollout."""

    device: str
    wave: int
    state: State = "waiting"
    cmd: str | None = None
    version: str | None = None
    reason: str | None = None
    detail: str = ""


@dataclass
class RolloutReport:
    """Every device's outcome, and why the rollout stopped early (None: it did not)."""

    release: ReleaseRef
    runs: list[DeviceRun]
    stopped: str | None = None
    waves: int = 0

    def count(self, state: str) -> int:
        return sum(1 for run in self.runs if run.state == state)

    def table(self) -> str:
        """A table for a person: device, wave, state, version, reason."""
        head = ("device", "wave", "state", "version", "reason")
        rows = [
            (r.device, "canary" if r.wave == 0 else str(r.wave), r.state, r.version or "-",
             r.reason or "")
            for r in self.runs
        ]  # fmt: skip
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
        lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
                 for row in (head, *rows)]  # fmt: skip
        summary = (
            f"{self.release.version}: {self.count('done')} done, {self.count('failed')} failed, "
            f"{self.count('timeout')} timed out, {self.count('skipped')} skipped"
        )
        if self.stopped:
            summary += f" — stopped: {self.stopped}"
        return "\n".join([*lines, summary])


class Fleet(Protocol):
    """How a rollout reaches devices and hears back from them."""

    def send_update(self, device: str, body: dict[str, Any]) -> str:
        """Send a signed ``agent.update`` to one device; return the command's id."""
        ...

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """Acks that arrived, as (device, ack), waiting at most ``timeout`` for the first."""
        ...

    def version(self, device: str) -> str | None:
        """The agent version of the device's latest birth message."""
        ...


def plan_waves(devices: list[str], canary_pct: int, growth: int = 2) -> list[list[str]]:
    """The canary (``canary_pct`` % of the devices, at least one), then waves each ``growth``
    times the one before, until every device is in one."""
    if not 0 < canary_pct <= 100:
        raise ValueError("canary: 1 to 100 %")
    if growth < 1:
        raise ValueError("growth: at least 1")
    ordered = sorted(set(devices))
    size = max(1, math.ceil(len(ordered) * canary_pct / 100))
    waves, start = [], 0
    while start < len(ordered):
        waves.append(ordered[start : start + size])
        start += size
        size *= growth
    return waves


def rollout(
    fleet: Fleet,
    devices: list[str],
    release: ReleaseRef,
    *,
    canary_pct: int = 10,
    wait_healthy_s: float = 600,
    max_failure_pct: int = 10,
    growth: int = 2,
    progress: Callable[[DeviceRun], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RolloutReport:
    """Update ``devices`` wave by wave; stop when failed devices pass ``max_failure_pct`` %
    of those tried so far (a failed canary always stops it)."""
    waves = plan_waves(devices, canary_pct, growth)
    runs = {d: DeviceRun(d, n) for n, wave in enumerate(waves) for d in wave}
    report = RolloutReport(release, [runs[d] for wave in waves for d in wave])
    for number, wave in enumerate(waves):
        report.waves = number + 1
        _run_wave(fleet, [runs[d] for d in wave], release, wait_healthy_s, progress, clock)
        tried = [r for r in report.runs if r.wave <= number]
        bad = sum(1 for r in tried if r.state in ("failed", "timeout"))
        too_many = bad * 100 > max_failure_pct * len(tried)
        if bad and (number == 0 or too_many):
            where = "the canary" if number == 0 else f"wave {number}"
            report.stopped = f"{bad} of {len(tried)} failed after {where}"
            for run in report.runs:
                if run.state == "waiting":
                    run.state = "skipped"
            break
    return report


def _run_wave(
    fleet: Fleet,
    wave: list[DeviceRun],
    release: ReleaseRef,
    wait_healthy_s: float,
    progress: Callable[[DeviceRun], None] | None,
    clock: Callable[[], float],
) -> None:
    by_cmd: dict[str, DeviceRun] = {}
    for run in wave:
        run.cmd = fleet.send_update(run.device, release.body())
        run.state = "sent"
        by_cmd[run.cmd] = run
        _tell(progress, run)
    deadline = clock() + wait_healthy_s
    while any(r.state not in FINAL for r in wave):
        left = deadline - clock()
        if left <= 0:
            for run in wave:
                if run.state not in FINAL:
                    run.state, run.reason = "timeout", "not healthy in time"
                    _tell(progress, run)
            return
        for device, ack in fleet.poll(min(left, 1.0)):
            acked = by_cmd.get(str(ack.get("cmd")))
            if acked is not None and acked.device == device and acked.state not in FINAL:
                _on_ack(acked, ack)
                _tell(progress, acked)
        for run in wave:
            if run.state == "confirming":
                run.version = fleet.version(run.device)
                if run.version == release.version:
                    run.state = "done"
                    _tell(progress, run)


def _on_ack(run: DeviceRun, ack: dict[str, Any]) -> None:
    status = ack.get("status")
    run.detail = str(ack.get("detail") or "")
    if status == "accepted":
        run.state = "accepted"
    elif status == "done":
        run.state = "confirming"
    elif status in ("failed", "rejected", "duplicate"):
        run.state, run.reason = "failed", str(ack.get("reason") or status)


def _tell(progress: Callable[[DeviceRun], None] | None, run: DeviceRun) -> None:
    if progress is not None:
        progress(run)


@dataclass
class SessionFleet:
    """A ``Fleet`` over a control-plane MQTT session subscribed to ``P/dev/+/ack`` and
    ``P/dev/+/state`` (``subscriptions``); commands are signed with ``key``."""

    session: Any  # controlplane.session.Session (publish through .link, read with .next)
    key: SigningKey
    topics: Topics
    ttl_s: int = 3600
    versions: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    db: str | None = None  # the control plane's store: each command is recorded before it is sent

    @staticmethod
    def subscriptions(topics: Topics) -> list[str]:
        return [f"{topics.prefix}/dev/+/ack", f"{topics.prefix}/dev/+/state"]

    def send_update(self, device: str, body: dict[str, Any]) -> str:
        doc = make_document(self.key, "agent.update", f"dev:{device}", body, ttl_s=self.ttl_s)
        payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        if self.db:
            from controlplane.send import record_sent

            record_sent(self.db, [(doc, self.topics.dev(device, "cmd"))])
        self.session.link.publish(self.topics.dev(device, "cmd"), payload, qos=1)
        return str(doc["id"])

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        acks: list[tuple[str, dict[str, Any]]] = []
        message = self.session.next(timeout)
        while message is not None:
            topic, payload = message
            parts = topic.split("/")
            try:
                data = json.loads(payload)
            except ValueError:
                data = None
            if isinstance(data, dict) and len(parts) >= 2:
                device, leaf = parts[-2], parts[-1]
                if leaf == "ack":
                    acks.append((device, data))
                elif leaf == "state" and data.get("online") is True:
                    self.versions[device] = str(data.get("agent_version"))
                    self.groups[device] = [str(g) for g in data.get("groups") or []]
            message = self.session.next(0)
        return acks

    def version(self, device: str) -> str | None:
        return self.versions.get(device)

    def members(self, target: str, settle_s: float = 1.5) -> list[str]:
        """Devices whose retained birth names ``target`` (``dev:ID`` or ``grp:GROUP``)."""
        end = time.monotonic() + settle_s
        while (left := end - time.monotonic()) > 0:
            self.poll(left)
        kind, _, name = target.partition(":")
        if kind == "dev":
            return [name]
        return sorted(d for d, groups in self.groups.items() if name in groups or name == "all")


def devices_of(fleet: SessionFleet, targets: Iterable[str]) -> list[str]:
    """Every device of ``targets`` once."""
    return sorted({d for target in targets for d in fleet.members(target)})


# --------------------------------------------------------------------------- command line


def percent(text: str) -> int:
    """``"10%"`` or ``"10"`` -> 10 (1 to 100)."""
    value = int(text.removesuffix("%"))
    if not 0 <= value <= 100:
        raise ValueError(f"{text}: 0 to 100 %")
    return value


def canary_share(text: str) -> int:
    """A canary share: 1 to 100 % (there is always a canary)."""
    value = percent(text)
    if value < 1:
        raise ValueError(f"{text}: at least 1 %")
    return value


def duration_s(text: str) -> int:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1h"`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    unit = text[-1] if text and text[-1] in units else "s"
    return int(text.removesuffix(unit)) * units[unit]


def cmd_update_push(args: argparse.Namespace) -> int:
    """``ttcs-control update push ARTIFACT --url URL --to grp:q10 --canary 10% …``."""
    key = SigningKey.load(args.key)
    try:
        manifest = read_manifest(args.artifact)
        data = args.artifact.read_bytes()
    except (ReleaseError, OSError) as exc:
        raise ControlError(f"{args.artifact}: {exc}") from None
    release = ReleaseRef(
        str(manifest.get("version")), args.url, hashlib.sha256(data).hexdigest(), len(data)
    )
    topics = Topics(args.prefix)

    def progress(run: DeviceRun) -> None:
        print(f"{run.device}: {run.state} {run.reason or ''}".rstrip(), flush=True)

    with Session(args, SessionFleet.subscriptions(topics)) as session:
        fleet = SessionFleet(session, key, topics, ttl_s=args.ttl, db=args.db)
        devices = devices_of(fleet, args.to)
        if not devices:
            raise ControlError(f"no device of {', '.join(args.to)} has a retained state")
        report = rollout(
            fleet,
            devices,
            release,
            canary_pct=args.canary,
            wait_healthy_s=args.wait_healthy,
            max_failure_pct=args.max_failure,
            progress=progress,
        )
    print(report.table())
    return 0 if report.count("done") == len(report.runs) else 4


def add_update_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``update push`` for the operators' command line (controlplane/cli.py)."""
    p = sub.add_parser("update", help="update the agent on devices, canary first")
    usub = p.add_subparsers(dest="update_command", required=True, metavar="ACTION")
    p = usub.add_parser("push", parents=parents, help="a staged rollout of a signed release")
    p.add_argument("artifact", type=Path, help="the release artifact (ttcs-release build)")
    p.add_argument("--url", required=True, help="where the devices download it (http/https)")
    p.add_argument("--to", action="append", required=True, help="dev:ID or grp:GROUP, repeatable")
    p.add_argument("--canary", type=canary_share, default=10, help="share of the first wave (10%%)")
    p.add_argument("--wait-healthy", type=duration_s, default=600, help="per wave (10m)")
    p.add_argument("--max-failure", type=percent, default=10, help="stop above this (10%%)")
    p.add_argument("--ttl", type=int, default=3600, help="the command's lifetime in seconds")
    p.add_argument(
        "--db",
        default=os.environ.get("TTCS_DB"),
        help="the control plane's store, where each command is recorded before it is sent",
    )
    p.set_defaults(func=cmd_update_push)
