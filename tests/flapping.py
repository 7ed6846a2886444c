"""The flapping-link scenario: an agent reaches its broker only through ``tests/proxy.py``,
which delays (3G-like), stalls, drops, refuses and goes half-open at seeded random moments,
while commands keep arriving. Shared by the integration test (2 minutes) and ``make soak``
(30 minutes); it returns what happened, the callers judge and print it.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.control_socket import request
from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_errors,
    command,
    program,
    provision,
    wait_for,
)
from tests.proxy import Connection, FlakyProxy

DEV = "q10-p12-bang-01"
KEEPALIVE_S = 10  # the configuration's minimum
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 8.0
SCREEN = 'enabled = true\ndriver = "headless"\nwidth = 320\nheight = 180\nward_name = "Phường 12"'


@dataclass
class FlapResult:
    """What the scenario saw; ``problems`` lists every broken promise (empty: all kept)."""

    seed: int
    wall_s: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    sent: dict[str, str] = field(default_factory=dict)  # command id -> type
    bulletins: dict[str, str] = field(default_factory=dict)  # play.now id -> its bulletin
    acks_raw: int = 0
    acks_unique: int = 0
    duplicate_acks: int = 0  # the agent's answer to a command it had already run
    ack_redeliveries: int = 0  # the same (id, status) again: QoS 1 at-least-once, harmless
    playlog_raw: int = 0
    playlog_unique: int = 0
    playlog_redeliveries: int = 0
    screen_samples: int = 0
    screen_blank: int = 0
    reconnect_gaps_s: list[float] = field(default_factory=list)
    refused_runs: list[list[float]] = field(default_factory=list)
    half_open_detect_s: list[float] = field(default_factory=list)
    link_reconnects: int = 0
    problems: list[str] = field(default_factory=list)

    def table(self) -> str:
        def figs(values: list[float]) -> str:
            if not values:
                return "none"
            return (
                f"n={len(values)} min={min(values):.2f} median={statistics.median(values):.2f} "
                f"max={max(values):.2f}"
            )

        runs = "; ".join(" ".join(f"{d:.2f}" for d in run) for run in self.refused_runs[:6])
        rows = [
            ("wall time", f"{self.wall_s:.0f} s (seed {self.seed})"),
            ("faults", ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))),
            ("commands sent", f"{len(self.sent)} ({Counter(self.sent.values())})"),
            (
                "acks",
                f"{self.acks_unique} distinct, {self.ack_redeliveries} redelivered, "
                f"{self.duplicate_acks} 'duplicate'",
            ),
            (
                "playlog entries",
                f"{self.playlog_unique} distinct, {self.playlog_redeliveries} again",
            ),
            ("screen samples", f"{self.screen_samples}, blank {self.screen_blank}"),
            ("agent reconnects", str(self.link_reconnects)),
            ("gap before reconnect (s)", figs(self.reconnect_gaps_s)),
            ("refused in a row (s)", runs or "none"),
            (f"half-open detected (s, keepalive {KEEPALIVE_S})", figs(self.half_open_detect_s)),
            ("problems", "; ".join(self.problems[:10]) or "none"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _bulletin(ident: str, text: str, duration_ms: int = 2000) -> dict[str, Any]:
    return {
        "id": ident,
        "title": text,
        "screen": {"kind": "text", "text": text, "duration_ms": duration_ms},
    }


class _Scenario:
    def __init__(self, tmp: Path, key: SigningKey, duration_s: float, seed: int) -> None:
        self.tmp, self.key, self.duration_s = tmp, key, duration_s
        self.rng = random.Random(seed)
        self.result = FlapResult(seed)
        self.done = threading.Event()
        self.broker = Broker(tmp / "broker").start()
        self.proxy = FlakyProxy(self.broker.port, seed).start()
        self.device = self._provision()
        self.agent = AgentProcess(self.device)

    def _provision(self) -> Device:
        device = provision(
            self.tmp,
            self.broker,
            self.key,
            mqtt_url=f"mqtt://127.0.0.1:{self.proxy.port}",
            screen=SCREEN,
        )
        text = device.config.read_text()
        text = text.replace("keepalive_s = 10", f"keepalive_s = {KEEPALIVE_S}")
        text = text.replace("reconnect_min_s = 0.2", f"reconnect_min_s = {RECONNECT_MIN_S}")
        text = text.replace("reconnect_max_s = 1.0", f"reconnect_max_s = {RECONNECT_MAX_S}")
        device.config.write_text(text)
        return device

    # ------------------------------------------------------------------ the three threads

    def faults(self) -> None:
        """Break the link again and again; a 3G delay most of the time."""
        proxy, rng = self.proxy, self.rng
        deck: list[str] = []
        while not self.done.wait(rng.uniform(4, 10)):
            proxy.delay(0.3, 1.5) if rng.random() < 0.8 else proxy.delay(None)
            if not deck:  # every kind in each round of six, in a random order
                deck = ["half_open", "stall", "drop", "refuse", "stall", "drop"]
                rng.shuffle(deck)
            kind = deck.pop()
            self.result.faults[kind] += 1
            if kind == "stall":
                proxy.stall(rng.uniform(1, 6))
            elif kind == "drop":
                proxy.drop()
            elif kind == "refuse":
                proxy.refuse(rng.uniform(3, 10))
                proxy.drop()
            else:
                affected = proxy.half_open()
                # Wait for the agent to notice (its keepalive), at most three keepalives.
                deadline = time.monotonic() + 3 * KEEPALIVE_S
                while time.monotonic() < deadline and any(c.closed_at is None for c in affected):
                    time.sleep(0.1)
                proxy.heal()

    def commands(self, listener: Listener) -> None:
        """A play.now or a ping every 1.5–3 s, straight to the broker (never through the proxy)."""
        n = 0
        while not self.done.wait(self.rng.uniform(1.5, 3.0)):
            n += 1
            if n % 2:
                bulletin = _bulletin(f"pn-{n:05d}", f"Thông báo khẩn số {n}", 1000)
                topic, payload, doc = command(self.key, "play.now", body={"bulletin": bulletin})
            else:
                topic, payload, doc = command(self.key, "ping")
            self.result.sent[doc["id"]] = doc["type"]
            if doc["type"] == "play.now":
                self.result.bulletins[doc["id"]] = doc["body"]["bulletin"]["id"]
            listener.publish(topic, payload)

    def screen(self) -> None:
        """What the screen shows, from the agent's own status, twice a second."""
        while not self.done.wait(0.5):
            try:
                answer = request(self.device.socket, "status")
            except OSError:
                continue
            if not answer.get("ok"):
                continue
            self.result.screen_samples += 1
            if not answer["status"]["now"].get("screen"):
                self.result.screen_blank += 1

    # ------------------------------------------------------------------ run and judge

    def run(self) -> FlapResult:
        started = time.monotonic()
        subs = [f"{PREFIX}/dev/{DEV}/ack", f"{PREFIX}/dev/{DEV}/playlog"]
        with Listener(self.broker, subs, persistent=True, client_id="soak-listener") as listener:
            bulletins = [_bulletin(f"rot-{n}", f"Lịch tiêm chủng đợt {n}") for n in range(3)]
            topic, payload, doc = program(self.key, 1, bulletins)
            listener.publish(topic, payload, retain=True)
            self.agent.start(wait_online=True)
            listener.wait_ack(doc["id"], "done", 30)
            threads = [
                threading.Thread(target=self.faults, daemon=True),
                threading.Thread(target=self.commands, args=(listener,), daemon=True),
                threading.Thread(target=self.screen, daemon=True),
            ]
            for thread in threads:
                thread.start()
            self.done.wait(self.duration_s)
            self.done.set()
            for thread in threads:
                thread.join(4 * KEEPALIVE_S)
            self.proxy.heal()
            self.proxy.delay(None)
            self._settle(listener)
            status = request(self.device.socket, "status")["status"]
            self.result.link_reconnects = int(status["link"]["reconnects"])
        self.result.wall_s = time.monotonic() - started
        self._judge_link(self.proxy.connections)
        self.result.problems += [f"agent log: {line}" for line in agent_errors(self.agent)[:5]]
        return self.result

    def _settle(self, listener: Listener) -> None:
        """Wait until every command has its final ack and every play.now its playlog entry."""
        plays = {i for i, t in self.result.sent.items() if t == "play.now"}

        def complete() -> bool:
            finals = {a["cmd"] for a in listener.acks() if a["status"] in ("done", "failed")}
            logged = {e["bulletin"] for e in self._entries(listener)}
            return set(self.result.sent) <= finals and len(logged & self._pn_bulletins()) >= len(
                plays
            )

        try:
            wait_for(complete, 120, "every final ack and playlog entry")
        except AssertionError as exc:
            self.result.problems.append(str(exc))
        self._judge_messages(listener)

    def _pn_bulletins(self) -> set[str]:
        return set(self.result.bulletins.values())

    @staticmethod
    def _entries(listener: Listener) -> list[dict[str, Any]]:
        return [e for batch in listener.json_on("/playlog") for e in batch["entries"]]

    def _judge_messages(self, listener: Listener) -> None:
        r = self.result
        acks = listener.acks()
        keys = Counter((a["cmd"], a["status"]) for a in acks)
        r.acks_raw, r.acks_unique = len(acks), len(keys)
        r.ack_redeliveries = r.acks_raw - r.acks_unique
        for cmd_id, kind in r.sent.items():
            # "accepted" may come before "done"; "duplicate" answers a redelivered command
            # (the broker's at-least-once) without running it again: the playlog shows that.
            statuses = sorted({s for (c, s) in keys if c == cmd_id} - {"duplicate"})
            r.duplicate_acks += keys[(cmd_id, "duplicate")]
            if statuses not in (["done"], ["accepted", "done"]):
                r.problems.append(f"{kind} {cmd_id}: acks {statuses}, expected a single done")
        entries = self._entries(listener)
        by_id = {e["id"]: e for e in entries}
        r.playlog_raw, r.playlog_unique = len(entries), len(by_id)
        r.playlog_redeliveries = r.playlog_raw - r.playlog_unique
        plays = Counter(e["bulletin"] for e in by_id.values() if e["bulletin"].startswith("pn-"))
        for bulletin in sorted(self._pn_bulletins()):
            if plays[bulletin] != 1:
                r.problems.append(f"{bulletin} played {plays[bulletin]} times, expected once")
        if r.screen_blank:
            r.problems.append(f"the screen showed nothing in {r.screen_blank} samples")

    def _judge_link(self, connections: list[Connection]) -> None:
        r = self.result
        run: list[float] = []
        for before, after in itertools.pairwise(connections):
            if before.closed_at is None:
                continue
            gap = after.accepted_at - before.closed_at
            r.reconnect_gaps_s.append(gap)
            if before.refused:
                run.append(gap)
            elif run:
                r.refused_runs.append(run)
                run = []
        if run:
            r.refused_runs.append(run)
        for conn in connections:
            if conn.half_open_at is None or conn.closed_at is None:
                continue
            if conn.closed_by == "client":
                r.half_open_detect_s.append(conn.closed_at - conn.half_open_at)
            else:
                r.problems.append(f"half-open connection {conn.number} never noticed by the agent")
        limit = 1.5 * KEEPALIVE_S
        late = [d for d in r.half_open_detect_s if d > limit]
        if late:
            r.problems.append(f"half-open noticed later than {limit:.0f} s: {late}")

    def close(self) -> None:
        self.agent.stop()
        self.proxy.stop()
        self.broker.stop()


def run_flapping(tmp: Path, key: SigningKey, duration_s: float, seed: int) -> FlapResult:
    """Run the scenario for ``duration_s`` of faults, then let everything arrive; return it."""
    scenario = _Scenario(tmp, key, duration_s, seed)
    try:
        return scenario.run()
    finally:
        scenario.close()
