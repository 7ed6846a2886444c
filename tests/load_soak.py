"""The long-run soak: a real agent fed a steady mix of 1,000 commands (programs with dayparts,
go-live announcements at a ``play_at``, emergencies and their stop, screen off/on cycles,
volume, pings) while its memory, file descriptors and threads are sampled from /proc.

It runs on the wall clock: the agent process has no way yet to take a sped-up clock (its
daemon builds the director, the verifier and APScheduler on real time), so a simulated week
needs a seam there first; the mix and the sampling are ready for it. ``make soak`` prints the
curve; the callers judge it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import proc_figures

from controlplane.keys import SigningKey
from protocol import format_time
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Listener,
    agent_errors,
    command,
    program,
    provision,
    wait_for,
)

DEV = "q10-p12-bang-01"
SCREEN = 'enabled = true\ndriver = "headless"\nwidth = 320\nheight = 180\nward_name = "Phường 12"'


@dataclass
class Sample:
    at_s: float
    commands: int
    rss_kb: int
    fds: int
    threads: int


@dataclass
class SoakResult:
    wall_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    finals: int = 0
    expected_entries: int = 0
    entries: int = 0
    replays: int = 0
    problems: list[str] = field(default_factory=list)

    def growth_kb_per_hour(self) -> float:
        """Resident memory growth after the first tenth of the run (warm-up), per hour."""
        if len(self.samples) < 3:
            return 0.0
        warm = self.samples[max(1, len(self.samples) // 10)]
        last = self.samples[-1]
        hours = (last.at_s - warm.at_s) / 3600
        return (last.rss_kb - warm.rss_kb) / hours if hours > 0 else 0.0

    def table(self, rows: int = 12) -> str:
        step = max(1, len(self.samples) // rows)
        picked = self.samples[::step]
        if self.samples and picked[-1] is not self.samples[-1]:
            picked.append(self.samples[-1])
        lines = [f"{'t (s)':>7} {'commands':>8} {'RSS (MB)':>9} {'fds':>5} {'threads':>7}"]
        lines += [
            f"{s.at_s:7.0f} {s.commands:8d} {s.rss_kb / 1024:9.1f} {s.fds:5d} {s.threads:7d}"
            for s in picked
        ]
        fds = [s.fds for s in self.samples] or [0]
        threads = [s.threads for s in self.samples] or [0]
        lines += [
            "",
            f"wall time {self.wall_s:.0f} s; commands {sum(self.sent.values())} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.sent.items()))}); "
            f"final acks {self.finals}",
            f"playlog entries of announcements and emergencies: {self.entries} "
            f"(expected {self.expected_entries}; {self.replays} interrupted and replayed)",
            f"RSS growth after warm-up: {self.growth_kb_per_hour() / 1024:.2f} MB/hour; fds "
            f"{min(fds)}–{max(fds)}; threads {min(threads)}–{max(threads)}",
            f"problems: {'; '.join(self.problems[:10]) or 'none'}",
        ]
        return "\n".join(lines)


def _text(ident: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "title": text,
        "screen": {"kind": "text", "text": text, "duration_ms": 1000},
        **extra,
    }


def _daypart_program(key: SigningKey, version: int) -> tuple[str, bytes, dict[str, Any]]:
    """A rotation of three items, one of them only in a daypart (its valid window), and one
    scheduled announcement at the next minute (local time)."""
    now = datetime.now(UTC)
    local = now + timedelta(hours=7, minutes=1)  # Asia/Ho_Chi_Minh, no summer time
    bulletins = [
        _text(f"rot-{version}-a", f"Lịch tiếp dân, bản {version}"),
        _text(
            f"rot-{version}-b",
            "Buổi sáng: tiêm chủng",
            valid_from=format_time(now),
            valid_until=format_time(now + timedelta(minutes=2)),
        ),
        _text(
            f"sch-{version}",
            "Nhắc giờ họp tổ dân phố",
            schedule={"weekdays": [1, 2, 3, 4, 5, 6, 7], "times": [local.strftime("%H:%M")]},
        ),
    ]
    return program(key, version, bulletins, ticker=[f"Bản tin số {version}"])


def run_load_soak(
    tmp: Path, key: SigningKey, duration_s: float, commands: int = 1000, sample_s: float = 10.0
) -> SoakResult:
    """Send ``commands`` evenly over ``duration_s`` to a real agent; sample it meanwhile."""
    result = SoakResult()
    broker = Broker(tmp / "broker").start()
    device = provision(tmp, broker, key, screen=SCREEN)
    agent = AgentProcess(device)
    subs = [f"{PREFIX}/dev/{DEV}/ack", f"{PREFIX}/dev/{DEV}/playlog"]
    expected: set[str] = set()  # bulletins that must have exactly one screen entry
    finals: dict[str, str] = {}  # command id -> type, waiting for done
    stop = threading.Event()
    started = time.monotonic()
    try:
        with Listener(broker, subs, persistent=True, client_id="soak-load") as listener:
            topic, payload, doc = _daypart_program(key, 1)
            listener.publish(topic, payload, retain=True)
            agent.start(wait_online=True)
            assert agent.proc is not None
            pid = agent.proc.pid
            listener.wait_ack(doc["id"], "done", 30)
            sent = 0

            def sampler() -> None:
                while not stop.wait(sample_s):
                    rss, fds, threads = proc_figures(pid)
                    at = time.monotonic() - started
                    result.samples.append(Sample(at, sent, rss, fds, threads))

            thread = threading.Thread(target=sampler, daemon=True)
            thread.start()
            emergency: str | None = None
            version = 1
            interval = duration_s / commands
            for n in range(1, commands + 1):
                due = started + n * interval
                time.sleep(max(0.0, due - time.monotonic()))
                kind: str = "ping"
                body: dict[str, Any] = {}
                if emergency is not None:
                    kind, body, emergency = "emergency.stop", {"ref": emergency}, None
                elif n % 100 == 50:
                    version += 1
                    topic, payload, doc = _daypart_program(key, version)
                    listener.publish(topic, payload, retain=True)
                    finals[doc["id"]] = "program"
                    result.sent["program"] += 1
                    sent += 1
                    continue
                elif n % 50 == 25:
                    bulletin = _text(f"em-{n:04d}", f"Cảnh báo khẩn số {n}", level="emergency")
                    kind, body = "emergency.start", {"bulletin": bulletin}
                    expected.add(bulletin["id"])
                elif n % 30 == 15:
                    at = format_time(datetime.now(UTC) + timedelta(seconds=3))
                    bulletin = _text(f"gl-{n:04d}", f"Phát đồng loạt số {n}")
                    kind, body = "play.now", {"bulletin": bulletin, "play_at": at}
                    expected.add(bulletin["id"])
                elif n % 10 == 0:
                    bulletin = _text(f"pn-{n:04d}", f"Thông báo số {n}")
                    kind, body = "play.now", {"bulletin": bulletin}
                    expected.add(bulletin["id"])
                elif n % 20 == 5:
                    kind, body = "power.set", {"screen": "off"}
                elif n % 20 == 8:
                    kind, body = "power.set", {"screen": "auto"}
                elif n % 2:
                    kind, body = "volume.set", {"percent": 40 + n % 50}
                topic, payload, doc = command(key, kind, body=body)
                if kind == "emergency.start":
                    emergency = doc["id"]
                listener.publish(topic, payload)
                finals[doc["id"]] = kind
                result.sent[kind] += 1
                sent += 1

            def settled() -> bool:
                done = {a["cmd"] for a in listener.acks() if a["status"] in ("done", "failed")}
                shown = {e["bulletin"] for b in listener.json_on("/playlog") for e in b["entries"]}
                return set(finals) <= done and expected <= shown

            try:
                wait_for(settled, 120, "every final ack and playlog entry")
            except AssertionError as exc:
                result.problems.append(str(exc))
            time.sleep(8)  # a late duplicate would show now
            stop.set()
            thread.join(sample_s + 5)
            _judge(result, listener, finals, expected)
    finally:
        stop.set()
        agent.stop()
        broker.stop()
    result.wall_s = time.monotonic() - started
    result.problems += [f"agent log: {line}" for line in agent_errors(agent)[:5]]
    return result


def _judge(
    result: SoakResult, listener: Listener, finals: dict[str, str], expected: set[str]
) -> None:
    acks = listener.acks()
    final = Counter(a["cmd"] for a in acks if a["status"] in ("done", "failed"))
    result.finals = sum(1 for cmd in finals if final[cmd] >= 1)
    failed = [a for a in acks if a["status"] in ("failed", "rejected")]
    for ack in failed[:5]:
        result.problems.append(f"{finals.get(ack['cmd'])} {ack['cmd']}: {ack['status']}")
    entries = {e["id"]: e for b in listener.json_on("/playlog") for e in b["entries"]}
    # An interrupted play marked ``replayed`` is shown again: its final entry is the one counted.
    screen = [e for e in entries.values() if e["bulletin"] in expected and e["channel"] == "screen"]
    replays = [e for e in screen if e["outcome"] == "interrupted" and e.get("replayed")]
    result.replays = len(replays)
    mine = Counter(e["bulletin"] for e in screen if e not in replays)
    result.expected_entries = len(expected)
    result.entries = sum(mine.values())
    for bulletin in sorted(expected):
        if mine[bulletin] != 1:
            result.problems.append(f"{bulletin}: {mine[bulletin]} screen entries, expected 1")
