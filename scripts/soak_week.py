#!/usr/bin/env python3
"""A week compressed: the unmodified agent under libfaketime, its clock sped up.

    python scripts/soak_week.py [--wall-s 3600] [--speed 168] [--commands 1000] [--sample-s 2]

The agent runs as ``ttcs-agent run`` with ``LD_PRELOAD`` of libfaketime plus
``scripts/faketime_semwait.c`` (built here with ``cc``; libfaketime 0.9.10 does not wrap the
``sem_clockwait`` under every timed wait of CPython 3.11). The broker is outside the fake
clock, so the agent's keepalive is the largest allowed (1,200 s of fake time) and commands are
signed in the agent's fake time (read from its status). The mix and the expected play log come
from ``scripts/soak_week_plan.py``. Prints RSS, fds, threads, play-log entries against the
expected ones and the screen per quarter of a simulated day; exit 1 when memory grows more than
1 MB per simulated day, fds or threads grow, the play log differs from the plan or the screen
is blank (or lit) when it should not be.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from harness import proc_figures  # noqa: E402
from soak_week_plan import (  # noqa: E402
    MARGIN,
    SCREEN_HOURS,
    Event,
    Plan,
    bulletin,
    make_plan,
    program_bulletins,
    screen_expected,
)

from agent.control_socket import AgentNotRunning, request  # noqa: E402
from controlplane.keys import SigningKey, make_document  # noqa: E402
from protocol import Topics, format_time, parse_time  # noqa: E402
from tests.helpers import PREFIX, Broker, Listener, program, provision  # noqa: E402

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
START = "2026-12-07 05:00:00"  # UTC: Monday 12:00 in Asia/Ho_Chi_Minh
DEV = "q10-p12-bang-01"


def build_shim(out: Path) -> Path:
    so = out / "faketime_semwait.so"
    src = ROOT / "scripts" / "faketime_semwait.c"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(so), str(src), "-ldl"], check=True)
    return so


@dataclass
class Sample:
    at: datetime  # the agent's clock
    rss_mb: float
    fds: int
    threads: int
    sent: int
    screen: str | None


class PlayLog:
    """Screen entries received, counted once per entry id."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.entries: dict[str, dict[str, Any]] = {}

    def update(self) -> dict[str, dict[str, Any]]:
        for batch in self.listener.json_on("/playlog"):
            for e in batch["entries"]:
                if e["channel"] == "screen":
                    self.entries[e["id"]] = e
        return self.entries

    def counts(self, start: datetime, end: datetime) -> Counter[str]:
        """Entries per planned bulletin started by ``end`` (the scheduled item's from ``start``)."""
        out: Counter[str] = Counter()
        for e in self.update().values():
            b = e["bulletin"]
            at = parse_time(e["started_at"])
            if at <= end and (b.startswith(("pn-", "em-")) or (b == "sch" and start <= at)):
                out[b] += 1
        return out


def document(key: SigningKey, e: Event, now: datetime, ids: dict[str, str]) -> tuple[str, bytes]:
    """The topic and signed payload of one planned event (``ids``: emergency command ids)."""
    target = f"dev:{DEV}"
    signed = now - timedelta(seconds=60)
    kind, body = e.kind, {}
    ttl_s: int | None = 3600
    if kind == "program":
        bulletins = program_bulletins(e.at, format_time)
        body = {"version": int(e.ident), "bulletins": bulletins, "screen_hours": SCREEN_HOURS}
        ttl_s = None
    elif kind in ("play.now", "emergency.start"):
        words = f"Thông báo {e.ident}" if kind == "play.now" else "Cảnh báo ngập"
        body = {"bulletin": bulletin(e.ident, words)}
        if e.play_at:
            body["play_at"] = format_time(e.play_at)
    elif kind == "emergency.stop":
        body = {"ref": ids[e.ident]}
    else:
        kind, body = "power.set", {"screen": "off" if e.kind == "power.off" else "auto"}
    doc = make_document(key, kind, target, body, ttl_s=ttl_s, now=signed)
    if kind == "emergency.start":
        ids[e.ident] = doc["id"]
    topic = Topics(PREFIX).for_target(target, "program" if kind == "program" else "cmd")
    return topic, json.dumps(doc, ensure_ascii=False).encode()


def report(
    samples: list[Sample], plan: Plan, origin: datetime, start: datetime, log: PlayLog
) -> list[str]:
    """Print the table per quarter of a simulated day since ``origin`` (the agent online);
    return the goals missed. Play-log counts start at ``start``."""
    print("sim h  RSS MB  fds threads  entries expected  sent  screen shown (samples)")
    buckets: dict[int, list[Sample]] = {}
    for s in samples:
        buckets.setdefault(int((s.at - origin).total_seconds() // 21600), []).append(s)
    sent_events = 0
    for _, group in sorted(buckets.items()):
        last = group[-1]
        got = sum(log.counts(start, last.at).values())
        want = sum(plan.expected(start, last.at).values())
        sent_events = last.sent
        shown = sum(1 for s in group if s.screen)
        print(
            f"{(last.at - origin).total_seconds() / 3600:5.1f} {last.rss_mb:7.1f} {last.fds:4d} "
            f"{last.threads:7d} {got:8d} {want:8d} {last.sent:5d}  {shown} of {len(group)}"
        )
    problems: list[str] = []
    warm, last = samples[len(samples) // 10], samples[-1]
    days = (last.at - warm.at).total_seconds() / 86400
    growth = (last.rss_mb - warm.rss_mb) / days if days > 0 else 0.0
    fds = [s.fds for s in samples[len(samples) // 10 :]]
    threads = [s.threads for s in samples[len(samples) // 10 :]]
    kinds = Counter(e.kind for e in plan.sent(last.at))
    print(
        f"RSS growth after warm-up: {growth:.2f} MB per simulated day; fds {min(fds)}-{max(fds)}; "
        f"threads {min(threads)}-{max(threads)}; events sent {sent_events} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})"
    )
    if growth > 1.0:
        problems.append(f"memory grows {growth:.2f} MB per simulated day")
    if last.fds > warm.fds or last.threads > warm.threads:
        problems.append(f"fds {warm.fds}->{last.fds}, threads {warm.threads}->{last.threads}")
    want_by = plan.expected(start, last.at)
    got_by = log.counts(start, last.at)
    wrong = {b: (got_by[b], n) for b, n in want_by.items() if got_by[b] != n}
    wrong.update({b: (n, 0) for b, n in got_by.items() if b not in want_by})
    if wrong:
        problems.append(f"play log differs (got, expected): {dict(list(wrong.items())[:8])}")
    print(f"play log: {sum(got_by.values())} entries, expected {sum(want_by.values())}")
    blank = [s for s in samples if screen_expected(s.at, plan) is True and not s.screen]
    lit = [s for s in samples if screen_expected(s.at, plan) is False and s.screen]
    if blank or lit:
        problems.append(f"screen blank in {len(blank)} samples, lit in {len(lit)} when off")
    return problems


def run(args: argparse.Namespace, tmp: Path) -> int:
    key = SigningKey.generate("hcm-2026")
    shim = build_shim(tmp)
    broker = Broker(tmp / "broker").start()
    dev = provision(
        tmp, broker, key, screen='enabled = true\ndriver = "headless"\nwidth = 320\nheight = 180'
    )
    cfg = dev.config.read_text().replace("keepalive_s = 10", "keepalive_s = 1200")
    dev.config.write_text(cfg.replace("status_interval_s = 5", "status_interval_s = 600"))
    env = {
        **os.environ,
        "LD_PRELOAD": f"{LIBFAKETIME}:{shim}",
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME": f"@{START} x{args.speed}",
        "PYTHONPATH": str(ROOT),
    }
    start_at = parse_time(START.replace(" ", "T") + "Z")
    subs = [f"{PREFIX}/dev/{DEV}/ack", f"{PREFIX}/dev/{DEV}/playlog"]
    samples: list[Sample] = []
    with Listener(broker, subs, persistent=True, client_id="soak-week") as listener:
        topic, payload, _ = program(
            key, 1, program_bulletins(start_at, format_time), screen_hours=SCREEN_HOURS
        )
        listener.publish(topic, payload, retain=True)
        log = PlayLog(listener)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(dev.config)],
            env=env,
            cwd=ROOT,
            stdout=(tmp / "agent.out").open("wb"),
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        try:
            st: dict[str, Any] = {}
            while not st.get("link", {}).get("connected"):
                if time.monotonic() - started > 120 or proc.poll() is not None:
                    print("error: the agent did not come online", file=sys.stderr)
                    return 2
                time.sleep(0.2)
                try:
                    st = request(dev.socket, "status").get("status", {})
                except (OSError, AgentNotRunning):
                    st = {}
            t0, at0 = time.monotonic(), parse_time(st["at"])

            def fake_now() -> datetime:
                return at0 + timedelta(seconds=(time.monotonic() - t0) * args.speed)

            end = at0 + timedelta(seconds=(args.wall_s - (t0 - started)) * args.speed)
            plan = make_plan(at0 + MARGIN, end - 4 * MARGIN, args.commands)
            pending = list(plan.events)
            next_sample = 0.0
            sent = 0
            ids: dict[str, str] = {}
            while time.monotonic() - started < args.wall_s + args.drain_s:
                time.sleep(0.02)
                now = fake_now()
                while pending and pending[0].at <= now:
                    topic, raw = document(key, pending.pop(0), now, ids)
                    listener.publish(topic, raw, retain=topic.endswith("/program"))
                    sent += 1
                if time.monotonic() >= next_sample:
                    next_sample = time.monotonic() + args.sample_s
                    rss_kib, fds, threads = proc_figures(proc.pid)
                    try:
                        st = request(dev.socket, "status").get("status", {})
                    except (OSError, AgentNotRunning):
                        continue
                    if "at" not in st:
                        print(f"no status: {st}"[:300], flush=True)
                        continue
                    screen = (st.get("now") or {}).get("screen")
                    samples.append(
                        Sample(parse_time(st["at"]), rss_kib / 1024, fds, threads, sent, screen)
                    )
                    log.update()
        finally:
            proc.terminate()
            proc.wait(30)
            broker.stop()
        problems = report(samples, plan, at0, at0 + MARGIN, log)
        print(f"problems: {'; '.join(problems) or 'none'}")
        print((tmp / "agent.out").read_text()[-1500:])
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wall-s", type=float, default=float(os.environ.get("SOAK_WALL_S", 3600)))
    parser.add_argument("--drain-s", type=float, default=5.0, help="after the last command")
    parser.add_argument("--speed", type=int, default=168)
    parser.add_argument("--commands", type=int, default=1000, help="play.now planned")
    parser.add_argument("--sample-s", type=float, default=2.0)
    args = parser.parse_args()
    if not LIBFAKETIME.exists():
        print(f"error: {LIBFAKETIME} missing (scripts/setup --soak)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ttcs-week-") as t:
        return run(args, Path(t))


if __name__ == "__main__":
    sys.exit(main())
