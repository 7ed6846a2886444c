"""The operators' control plane (``scripts/ttcs-control``): keys, provisioning, signed commands,
programs, the fleet table and a live watch. Built on the agent's own protocol, signing and link
modules, so the server and the devices cannot disagree about the wire format.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import secrets
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from agent import report
from protocol import (
    BODY_MODELS,
    COMMAND_TYPES,
    IDENT_RE,
    TARGET_RE,
    Envelope,
    Topics,
    describe_error,
    find_float,
    format_time,
)
from protocol.broker import MqttConfig
from protocol.link import LinkHandler, LinkSettings, MqttLink, Token
from protocol.signing import (
    private_key_from_b64,
    private_key_to_b64,
    public_key_to_b64,
    sign,
)

FINAL = {"done", "failed", "rejected", "duplicate"}
KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # also a bare TOML key in [trust.keys]


class ControlError(Exception):
    """A mistake in what the operator asked for; the message says what to fix."""


# --------------------------------------------------------------------------- keys and documents


class SigningKey:
    """A key id and its Ed25519 private key, kept in a JSON file readable by its owner only."""

    def __init__(self, kid: str, key: Ed25519PrivateKey) -> None:
        if not KID_RE.match(kid):
            raise ControlError(f"bad key id {kid!r}: 1-64 of A-Z a-z 0-9 _ -")
        self.kid = kid
        self.key = key

    @property
    def public_b64(self) -> str:
        return public_key_to_b64(self.key.public_key())

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["kid"]), private_key_from_b64(str(data["private_key"])))
        except (OSError, ValueError, KeyError) as exc:
            raise ControlError(f"cannot load signing key {path}: {exc}") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "kid": self.kid,
            "private_key": private_key_to_b64(self.key),
            "public_key": self.public_b64,
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")


def new_id() -> str:
    """A unique document id (time-ordered prefix, random suffix)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def make_document(
    key: SigningKey,
    doc_type: str,
    target: str,
    body: dict[str, Any],
    ttl_s: int | None = 3600,
    now: datetime | None = None,
    doc_id: str | None = None,
) -> dict[str, Any]:
    """Build, check and sign a command or program envelope."""
    if doc_type not in BODY_MODELS:
        raise ControlError(f"unknown type {doc_type!r}; one of: {', '.join(BODY_MODELS)}")
    if not TARGET_RE.match(target):
        raise ControlError(f"bad target {target!r}: use dev:DEVICE or grp:GROUP")
    now = now or datetime.now(UTC)
    doc: dict[str, Any] = {
        "v": 1,
        "id": doc_id or new_id(),
        "type": doc_type,
        "target": target,
        "issued_at": format_time(now),
        "body": body,
        "kid": key.kid,
    }
    if ttl_s is not None:
        doc["expires_at"] = format_time(now + timedelta(seconds=ttl_s))
    signed = sign(doc, key.key)
    # The devices' own schema check (6), so that nothing is signed that every device rejects.
    where = find_float(signed)
    if where:
        raise ControlError(f"invalid {doc_type}: {where}: floating-point numbers are not allowed")
    try:
        Envelope.model_validate(signed)
    except ValidationError as exc:
        raise ControlError(f"invalid {doc_type}: {describe_error(exc)}") from None
    return signed


def device_config(
    device: str,
    groups: list[str],
    broker: str,
    key: SigningKey,
    prefix: str,
    state_dir: str,
    cache_dir: str,
) -> str:
    """A device's TOML configuration holding the control plane's public key."""
    if not IDENT_RE.match(device):
        raise ControlError(f"bad device id {device!r}")
    group_list = ", ".join(json.dumps(g) for g in groups)
    return f"""# ttcs-agent configuration for {device}, written by `ttcs-control provision`.
# Every key is described in config/agent.example.toml.
device_id = "{device}"
groups = [{group_list}]
timezone = "Asia/Ho_Chi_Minh"

[mqtt]
url = "{broker}"
topic_prefix = "{prefix}"

[trust.keys]
{key.kid} = "{key.public_b64}"

[paths]
state_dir = "{state_dir}"
cache_dir = "{cache_dir}"
"""


# --------------------------------------------------------------------------- MQTT session


class _Collector(LinkHandler):
    def __init__(self, keep_tokens: bool = False) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        # With manual acks, messages go here instead, with the token to acknowledge them by.
        self.inbound: queue.Queue[tuple[str, bytes, Token | None]] = queue.Queue()
        self._keep_tokens = keep_tokens

    def message(self, topic: str, payload: bytes, token: Any, retained: bool) -> None:
        if self._keep_tokens:
            self.inbound.put((topic, payload, token))
        else:
            self.messages.put((topic, payload))


class Session:
    """A short-lived MQTT session of the control plane.

    By default a clean session with a random client id. ``collect`` uses a persistent one
    (fixed ``client_id``, ``persistent``) with ``manual_ack``: messages then arrive on
    ``next_inbound`` with a token for ``link.ack``, to be acknowledged once written to disk.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        subscriptions: list[str],
        *,
        client_id: str | None = None,
        persistent: bool = False,
        manual_ack: bool = False,
    ) -> None:
        try:
            mqtt = MqttConfig(
                url=args.broker,
                ca_file=args.ca_file,
                cert_file=args.cert_file,
                key_file=args.key_file,
                username=args.username,
                topic_prefix=args.prefix,
            )
        except ValidationError as exc:
            raise ControlError(f"bad broker settings: {exc.errors()[0]['msg']}") from None
        self.collector = _Collector(keep_tokens=manual_ack)
        settings = LinkSettings(
            host=mqtt.host,
            port=mqtt.port,
            client_id=client_id or f"ttcs-control-{uuid.uuid4().hex[:12]}",
            tls=mqtt.tls,
            ca_file=mqtt.ca_file,
            cert_file=mqtt.cert_file,
            key_file=mqtt.key_file,
            username=args.username,
            password=os.environ.get("TTCS_PASSWORD"),
            persistent=persistent,
            subscriptions=subscriptions,
            reconnect_max_s=5.0,
            manual_ack=manual_ack,
        )
        self.link = MqttLink(settings, self.collector)

    def __enter__(self) -> Session:
        self.link.start()
        if not self.link.wait_connected(10.0):
            self.link.stop()
            raise ControlError(
                f"cannot reach the broker at {self.link.settings.host}:{self.link.settings.port}"
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        self.link.stop()

    def next(self, timeout: float) -> tuple[str, bytes] | None:
        try:
            return self.collector.messages.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def next_inbound(self, timeout: float) -> tuple[str, bytes, Token | None] | None:
        try:
            return self.collector.inbound.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


# --------------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    key = SigningKey.generate(args.kid)
    try:
        key.save(args.out)
    except FileExistsError:
        raise ControlError(f"{args.out} exists; refusing to overwrite a signing key") from None
    print(f"wrote {args.out} (kid {args.kid}); public key for [trust.keys]:")
    print(f'{args.kid} = "{key.public_b64}"')
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    text = device_config(
        args.device, args.group, args.broker, key, args.prefix, args.state_dir, args.cache_dir
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.body_file:
        body = json.loads(Path(args.body_file).read_text(encoding="utf-8"))
    elif args.body:
        body = json.loads(args.body)
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def cmd_send(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    try:
        body = _body(args)
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read the body: {exc}") from None
    doc = make_document(key, args.type, args.target, body, ttl_s=args.ttl)
    topics = Topics(args.prefix)
    payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    expect = (
        args.expect if args.expect is not None else (1 if args.target.startswith("dev:") else 0)
    )
    synchronized = args.type == "play.now" and _synchronized_speech(doc["body"])
    subs = [topics.dev("+", "ack")]
    if synchronized:
        subs += [topics.dev("+", leaf) for leaf in ("playlog", "state", "status")]
    with Session(args, subs) as session:
        session.link.publish(topics.for_target(args.target, "cmd"), payload, qos=1)
        print(f"sent {args.type} {doc['id']} to {args.target}", file=sys.stderr)
        others: list[tuple[str, bytes]] = []
        finals: dict[str, str] = {}
        status = _await_acks(session, doc["id"], args.wait, expect, others, finals)
        if not synchronized:
            return status
        sync = _await_sync(session, doc, args.target, finals, others, args.sync_wait)
        return status if status != 0 else sync


def _synchronized_speech(body: dict[str, Any]) -> bool:
    bulletin = body.get("bulletin")
    return (
        bool(body.get("play_at")) and isinstance(bulletin, dict) and bool(bulletin.get("speaker"))
    )


def speaking_estimate_s(bulletin: dict[str, Any]) -> float:
    """How long an announcement takes, roughly: its text at a calm announcer's pace (14
    characters a second) and the chime; a file or a stream, up to a minute."""
    part = bulletin.get("speaker") or {}
    chime = 3.0 if part.get("chime", True) else 0.0
    if part.get("kind") == "tts":
        return chime + len(str(part.get("text") or "")) / 14.0
    return chime + 60.0


def _await_sync(
    session: Session,
    doc: dict[str, Any],
    target: str,
    acked: dict[str, str],
    others: list[tuple[str, bytes]],
    wait_s: float | None,
) -> int:
    """After a synchronized ``play.now``: wait until its ``play_at`` and its length have passed
    (or every device has reported) and print, per device, whether it started in sync (its start
    error) or why not."""
    play_at = datetime.fromisoformat(str(doc["body"]["play_at"]).replace("Z", "+00:00"))
    length = speaking_estimate_s(doc["body"]["bulletin"])
    after = wait_s if wait_s is not None else length + 20.0
    deadline = time.monotonic() + max(0.0, (play_at - datetime.now(UTC)).total_seconds()) + after
    follow = SyncFollow(str(doc["id"]), target, acked)
    for topic, payload in others:
        follow.take(topic, payload)
    print(
        f"waiting for the synchronized start at {doc['body']['play_at']} "
        f"(about {length:.0f} s of speech)",
        file=sys.stderr,
    )
    while time.monotonic() < deadline and not follow.complete():
        item = session.next(min(1.0, deadline - time.monotonic()))
        if item is not None:
            follow.take(*item)
    lines, in_sync = follow.table()
    for line in lines:
        print(line)
    return 0 if in_sync else 1


class SyncFollow:
    """What the devices of a synchronized ``play.now`` said of it: their start errors (in their
    status, as soon as they sound) and their play-log entries (when it ends, or is skipped)."""

    def __init__(self, doc_id: str, target: str, acked: Mapping[str, str]) -> None:
        self.doc_id = doc_id
        self.group = target.split(":", 1)[1] if target.startswith("grp:") else None
        self.acked = dict(acked)
        self.members = set(acked) if self.group is not None else {target.split(":", 1)[1]}
        self.entries: dict[str, dict[str, Any]] = {}
        self.starts: dict[str, int] = {}

    def take(self, topic: str, payload: bytes) -> None:
        device, leaf = topic.split("/")[-2:]
        data = _json_object(payload)
        if data is None:
            return
        if leaf == "state":
            groups = data.get("groups")
            if self.group is not None and isinstance(groups, list) and self.group in groups:
                self.members.add(device)
        elif leaf == "status":
            now = data.get("now") or {}
            error = now.get("start_error_ms") if isinstance(now, dict) else None
            if now.get("speaker_ref") == self.doc_id and isinstance(error, int):
                self.starts.setdefault(device, error)
        elif leaf == "playlog":
            for entry in data.get("entries") or []:
                if (
                    isinstance(entry, dict)
                    and entry.get("ref") == self.doc_id
                    and entry.get("channel") == "speaker"
                    and "attempt" not in entry  # a replay is not the synchronized start
                ):
                    self.entries.setdefault(device, entry)

    def complete(self) -> bool:
        return bool(self.members) and self.members <= set(self.entries)

    def table(self) -> tuple[list[str], bool]:
        """The lines to print and whether every device started in sync."""
        in_sync = True
        lines = [f"{'DEVICE':<24} {'START':<16} DETAIL"]
        for device in sorted(self.members | set(self.entries) | set(self.starts)):
            entry = self.entries.get(device)
            error = entry.get("start_error_ms") if entry is not None else None
            if entry is not None and (entry.get("outcome") == "skipped" or error is None):
                start = "not played"
                detail = str(entry.get("reason") or entry.get("outcome"))
                if isinstance(error, int):
                    detail += f" ({error:+d} ms)"
                in_sync = False
            elif entry is not None and isinstance(error, int):
                start, detail = f"in sync {error:+d} ms", str(entry.get("outcome"))
                if entry.get("outcome") == "interrupted" and entry.get("replayed"):
                    detail += " (replayed)"
            elif device in self.starts:
                start, detail = f"in sync {self.starts[device]:+d} ms", "still playing"
            else:
                start, detail = "no report", self.acked.get(device, "no ack")
                in_sync = False
            lines.append(f"{device:<24} {start:<16} {detail}".rstrip())
        return lines, in_sync


def _await_acks(
    session: Session,
    doc_id: str,
    wait_s: float,
    expect: int,
    others: list[tuple[str, bytes]] | None = None,
    finals: dict[str, str] | None = None,
) -> int:
    """Print acks of ``doc_id`` until ``expect`` devices answered finally (0: until ``wait_s``).
    Other messages go to ``others``; the first final status of each device to ``finals``."""
    deadline = time.monotonic() + wait_s
    finals = {} if finals is None else finals
    while time.monotonic() < deadline and (expect == 0 or len(finals) < expect):
        item = session.next(deadline - time.monotonic())
        if item is None:
            break
        topic, payload = item
        if not topic.endswith("/ack"):
            if others is not None:
                others.append((topic, payload))
            continue
        try:
            ack = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(ack, dict) or ack.get("cmd") != doc_id:
            continue
        device = topic.split("/")[-2]
        print(
            f"{device:<24} {ack.get('status'):<10} {ack.get('reason') or '':<16} "
            f"{ack.get('detail', '')}"
        )
        sys.stdout.flush()
        if ack.get("status") in FINAL:
            # The first final ack counts: a later "duplicate" (a redelivery) does not undo "done".
            finals.setdefault(device, str(ack["status"]))
    if not finals:
        print("no final ack before the timeout", file=sys.stderr)
        return 4
    if expect and len(finals) < expect:
        print(f"only {len(finals)} of {expect} devices answered", file=sys.stderr)
        return 4
    return 0 if all(s == "done" for s in finals.values()) else 1


def cmd_program_push(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    try:
        body = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read {args.file}: {exc}") from None
    if not isinstance(body, dict):
        raise ControlError(f"{args.file}: a program body is a JSON object")
    if args.version is not None:
        body["version"] = args.version
    doc = make_document(key, "program", args.target, body, ttl_s=args.ttl)
    topics = Topics(args.prefix)
    payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    with Session(args, [topics.dev("+", "ack")]) as session:
        session.link.publish(topics.for_target(args.target, "program"), payload, 1, retain=True)
        print(
            f"pushed program v{body.get('version')} {doc['id']} to {args.target}", file=sys.stderr
        )
        expect = 1 if args.target.startswith("dev:") else 0
        return _await_acks(session, doc["id"], args.wait, expect) if args.wait else 0


def collect_fleet(args: argparse.Namespace, settle_s: float = 1.5) -> dict[str, dict[str, Any]]:
    """Read the retained state and status of every device."""
    topics = Topics(args.prefix)
    fleet: dict[str, dict[str, Any]] = {}
    with Session(args, [topics.dev("+", "state"), topics.dev("+", "status")]) as session:
        deadline = time.monotonic() + settle_s
        while (item := session.next(deadline - time.monotonic())) is not None:
            topic, payload = item
            parts = topic.split("/")
            try:
                fleet.setdefault(parts[-2], {})[parts[-1]] = json.loads(payload)
            except ValueError:
                continue
    return fleet


def cmd_fleet(args: argparse.Namespace) -> int:
    fleet = collect_fleet(args)
    if args.json:
        print(json.dumps(fleet, ensure_ascii=False, indent=2))
        return 0
    header = ("DEVICE", "ONLINE", "LAST SEEN", "PROGRAMS", "SCREEN", "SPEAKER", "VOL", "OUTBOX")
    rows = [header]
    for device in sorted(fleet):
        state, status = fleet[device].get("state", {}), fleet[device].get("status", {})
        programs = status.get("programs") or {}
        now = status.get("now") or {}
        rows.append(
            (
                device,
                "yes" if state.get("online") else "NO",
                str(status.get("at") or state.get("since") or "—"),
                ",".join(f"v{v}" for v in programs.values()) or "—",
                str(now.get("screen") or "—"),
                str(now.get("speaker") or "—"),
                str(status.get("volume", "—")),
                str(status.get("outbox", "—")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print("(no device has reported yet)", file=sys.stderr)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    topics = Topics(args.prefix)
    subs = [topics.dev("+", leaf) for leaf in ("ack", "event", "playlog")]
    deadline = time.monotonic() + args.duration if args.duration else None
    with Session(args, subs) as session:
        while deadline is None or time.monotonic() < deadline:
            item = session.next(1.0 if deadline is None else min(1.0, deadline - time.monotonic()))
            if item is None:
                continue
            topic, payload = item
            parts = topic.split("/")
            text = payload.decode("utf-8", errors="replace")
            print(f"{datetime.now(UTC):%H:%M:%S} {parts[-2]:<24} {parts[-1]:<8} {text}")
            sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------- proof of play

COLLECTOR_ID = "ttcs-control-collector"
_BATCH_MAX = 500  # messages written (and fsynced) together
_BATCH_QUIET_S = 0.05  # a batch ends when nothing more arrives for this long...
_BATCH_WINDOW_S = 0.2  # ...or after this long


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _known_wards(path: Path) -> dict[str, str]:
    """The wards in the lines an earlier run wrote: a device now offline (its retained state
    is the last will, which names no groups) keeps the ward it had."""
    if not path.exists():
        return {}
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return report.wards_from_lines(fh)
    except OSError as exc:
        raise ControlError(f"cannot read {path}: {exc.strerror}") from None


def _retained_wards(args: argparse.Namespace, topics: Topics) -> dict[str, str]:
    """The wards in the retained ``state`` messages, read by a clean session: a resumed
    persistent session keeps its subscriptions, and the broker sends retained messages to new
    subscriptions only."""
    wards: dict[str, str] = {}
    with Session(args, [topics.dev("+", "state")]) as session:
        deadline = time.monotonic() + 5.0
        # Retained messages follow the SUBACK at once: the first quiet moment ends them.
        while (item := session.next(min(0.5, deadline - time.monotonic()))) is not None:
            topic, payload = item
            state = _json_object(payload)
            ward = report.ward_of(state) if state is not None else None
            if ward:
                wards[topic.split("/")[-2]] = ward
    return wards


@contextlib.contextmanager
def _appending(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for appending whole lines: a line torn by a crash is closed first, so
    the next one stays readable (the report skips the torn one)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        torn = False
        if existed and path.stat().st_size > 0:
            with path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
        out = path.open("ab")
    except OSError as exc:
        raise ControlError(f"cannot append to {path}: {exc.strerror}") from None
    with out:
        if torn:
            out.write(b"\n")
        if not existed:
            # The new file's name must survive a power cut as well as its lines.
            out.flush()
            os.fsync(out.fileno())
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        yield out


def _batch(session: Session, wait_s: float) -> list[tuple[str, bytes, Token | None]]:
    """The next messages: the first within ``wait_s``, then whatever follows at once."""
    first = session.next_inbound(wait_s)
    if first is None:
        return []
    batch = [first]
    end = time.monotonic() + _BATCH_WINDOW_S
    while len(batch) < _BATCH_MAX and time.monotonic() < end:
        item = session.next_inbound(min(_BATCH_QUIET_S, end - time.monotonic()))
        if item is None:
            break
        batch.append(item)
    return batch


def cmd_collect(args: argparse.Namespace) -> int:
    """Append every playlog message to ``--out``, one JSON line each, with the device's ward.

    A persistent session (``--client-id``) makes the broker keep what is published between
    runs; a message is acknowledged only once its line is fsynced, so a crash or Ctrl-C loses
    nothing (it is delivered again; the report counts each entry id once).
    """
    topics = Topics(args.prefix)
    out: Path = args.out
    wards = _known_wards(out)
    wards.update(_retained_wards(args, topics))
    deadline = time.monotonic() + args.duration if args.duration else None
    messages = entries = 0
    devices: set[str] = set()
    subs = [topics.dev("+", "playlog"), topics.dev("+", "state")]
    session = Session(args, subs, client_id=args.client_id, persistent=True, manual_ack=True)
    with _appending(out) as fh, session:
        try:
            while deadline is None or time.monotonic() < deadline:
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                batch = _batch(session, wait)
                lines: list[str] = []
                for topic, payload, _token in batch:
                    device, leaf = topic.split("/")[-2:]
                    doc = _json_object(payload)
                    if leaf == "state":
                        ward = report.ward_of(doc) if doc is not None else None
                        if ward:
                            wards[device] = ward
                    elif doc is None or not isinstance(doc.get("entries"), list):
                        print(f"ignored a malformed playlog from {device}", file=sys.stderr)
                    else:
                        now = datetime.now(UTC)
                        lines.append(report.collected_line(device, now, wards.get(device), doc))
                        entries += len(doc["entries"])
                        devices.add(device)
                if lines:
                    fh.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
                    fh.flush()
                    os.fsync(fh.fileno())
                    messages += len(lines)
                for _topic, _payload, token in batch:
                    session.link.ack(token)
        except KeyboardInterrupt:
            pass  # what was not acknowledged yet is delivered again next time
    print(
        f"collected {messages} playlog message(s) with {entries} entries from "
        f"{len(devices)} device(s) into {out}",
        file=sys.stderr,
    )
    return 0


def _lines(paths: list[Path]) -> Iterator[str]:
    for path in paths:
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                yield from fh
        except OSError as exc:
            raise ControlError(f"cannot read {path}: {exc.strerror}") from None


def cmd_report(args: argparse.Namespace) -> int:
    """Plays per ward, device, bulletin and local day, as CSV, from files of ``collect``."""
    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ControlError(f"unknown time zone {args.tz!r} (e.g. Asia/Ho_Chi_Minh)") from None
    reading = report.read_collected(_lines(args.files))
    rows = report.aggregate(reading.plays, tz)
    if args.out:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("w", encoding="utf-8", newline="") as fh:
                report.write_csv(rows, fh)
        except OSError as exc:
            raise ControlError(f"cannot write {args.out}: {exc.strerror}") from None
    else:
        report.write_csv(rows, sys.stdout)
    notes = [f"{reading.duplicates} duplicate entries ignored"]
    if reading.bad_lines:
        notes.append(f"{reading.bad_lines} unreadable lines skipped")
    if reading.bad_entries:
        notes.append(f"{reading.bad_entries} malformed entries skipped")
    print(f"{len(reading.plays)} plays in {len(rows)} rows ({'; '.join(notes)})", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="ttcs-control",
        description="Control plane for ward screens and loudspeakers: sign and send.",
    )
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument(
        "--broker",
        default=env("TTCS_BROKER", "mqtt://127.0.0.1:1883"),
        help="broker URL (env TTCS_BROKER)",
    )
    conn.add_argument("--ca-file", type=Path, default=env("TTCS_CA_FILE"))
    conn.add_argument("--cert-file", type=Path, default=env("TTCS_CERT_FILE"))
    conn.add_argument("--key-file", type=Path, default=env("TTCS_KEY_FILE"))
    conn.add_argument(
        "--username",
        default=env("TTCS_USERNAME"),
        help="broker user; the password is read from env TTCS_PASSWORD",
    )
    conn.add_argument("--prefix", default=env("TTCS_PREFIX", "ttcs/v1"), help="topic prefix")
    signer = argparse.ArgumentParser(add_help=False)
    signer.add_argument(
        "--key",
        type=Path,
        default=Path(env("TTCS_SIGNING_KEY", "control.key")),
        help="signing key file from keygen (env TTCS_SIGNING_KEY)",
    )

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("keygen", help="create an Ed25519 signing key")
    p.add_argument("--kid", required=True, help="key id, e.g. hcm-2026")
    p.add_argument("--out", type=Path, required=True, help="where to write the private key")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("provision", parents=[conn, signer], help="write a device configuration")
    p.add_argument("device", help="device id, e.g. q10-p12-bang-01")
    p.add_argument("--group", action="append", default=[], help="a group (repeatable)")
    p.add_argument("--state-dir", default="/var/lib/ttcs-agent")
    p.add_argument("--cache-dir", default="/var/cache/ttcs-agent")
    p.add_argument("--out", type=Path, help="file to write (default: stdout)")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("send", parents=[conn, signer], help="send a signed command, await acks")
    p.add_argument("target", help="dev:DEVICE or grp:GROUP")
    p.add_argument("type", choices=COMMAND_TYPES)
    p.add_argument("--body", help="the body as JSON (default {})")
    p.add_argument("--body-file", help="read the body from a JSON file")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for acks")
    p.add_argument("--expect", type=int, help="final acks to wait for (default 1 for dev:)")
    p.add_argument(
        "--sync-wait",
        type=float,
        help="play.now with play_at: seconds after play_at to wait for each device's start "
        "(default: the speech's estimated length + 20 s)",
    )
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("program", help="programs")
    psub = p.add_subparsers(dest="program_command", required=True, metavar="ACTION")
    p = psub.add_parser("push", parents=[conn, signer], help="sign and publish a program")
    p.add_argument("file", help="program body as JSON ({version, bulletins, ticker, ...})")
    p.add_argument("--to", dest="target", required=True, help="dev:DEVICE or grp:GROUP")
    p.add_argument("--version", type=int, help="override the body's version")
    p.add_argument("--ttl", type=int, default=None, help="seconds until it expires (optional)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the ack")
    p.set_defaults(func=cmd_program_push)

    p = sub.add_parser("fleet", parents=[conn], help="a table of every device's state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fleet)

    p = sub.add_parser("watch", parents=[conn], help="print acks, events and playlogs")
    p.add_argument("--duration", type=float, default=0.0, help="stop after N seconds")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("collect", parents=[conn], help="append the devices' playlogs to a file")
    p.add_argument("--out", type=Path, required=True, help="JSON-lines file to append to")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after N seconds (default: at Ctrl-C)"
    )
    p.add_argument(
        "--client-id",
        default=COLLECTOR_ID,
        help="client id of the persistent session that keeps messages between runs",
    )
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("report", help="plays per ward, device, bulletin and day, as CSV")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="files written by collect")
    p.add_argument("--out", type=Path, help="CSV file to write (default: stdout)")
    p.add_argument("--tz", default="Asia/Ho_Chi_Minh", help="time zone of the days")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ControlError as exc:
        print(f"ttcs-control: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
