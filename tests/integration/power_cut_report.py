"""The figures of the power cuts (``power_cuts``): duplicates by id, and the table of outcomes."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import Listener

SCENARIOS = ("program", "emergency", "settings", "playlog", "migration")
REPORTS: list[list[str]] = []  # tables printed at the end of the run (tests/conftest.py)


@dataclass
class Outcome:
    """What the rounds of one scenario showed."""

    rounds: int = 0
    link_cut: int = 0  # rounds where the broker went away before the kill
    integrity_failures: int = 0
    misplaced: int = 0
    boot_s: list[float] = field(default_factory=list)


def duplicates(listener: Listener) -> tuple[int, int, int, int]:
    """(acks executed twice, acks redelivered, entries twice, entries redelivered)."""
    acks: dict[tuple[str, str], Counter[bytes]] = defaultdict(Counter)
    for topic, payload, _ in listener.drain():
        if topic.endswith("/ack"):
            doc = json.loads(payload)
            if doc.get("cmd"):
                acks[(doc["cmd"], doc["status"])][payload] += 1
    entries: dict[str, Counter[str]] = defaultdict(Counter)
    for message in listener.json_on("/playlog"):
        for entry in message["entries"]:
            entries[entry["id"]][json.dumps(entry, sort_keys=True)] += 1
    return (
        sum(1 for c in acks.values() if len(c) > 1),
        sum(sum(c.values()) - len(c) for c in acks.values()),
        sum(1 for c in entries.values() if len(c) > 1),
        sum(sum(c.values()) - len(c) for c in entries.values()),
    )


def table(figures: dict[str, Any]) -> list[str]:
    """The outcomes as Markdown: a row per scenario, then the delivery figures."""
    lines = [
        f"power cuts: {figures['rounds']} SIGKILL rounds, seed {figures['seed']}",
        "| scenario | rounds | broker down first | integrity_check failures "
        "| half-written files visible | boot to screen p50 s | p95 s | max s | ≤ 1.5 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    every: list[float] = []
    outcomes: dict[str, Outcome] = figures["outcomes"]
    for name in SCENARIOS:
        o = outcomes.get(name) or Outcome()
        every += o.boot_s
        lines.append(_row(name, o, o.boot_s))
    total = Outcome(
        rounds=figures["rounds"],
        link_cut=sum(o.link_cut for o in outcomes.values()),
        integrity_failures=sum(o.integrity_failures for o in outcomes.values()),
        misplaced=sum(o.misplaced for o in outcomes.values()),
    )
    lines.append(_row("all", total, every))
    lines += [
        "",
        f"held on the device at a kill and checked by id: {figures['acks_noted']} acks, "
        f"{figures['entries_noted']} playlog entries",
        f"acks noted on the device and lost: {_count(figures['acks_lost'])}; "
        f"executed twice: {figures['acks_executed_twice']}; "
        f"redelivered identical: {figures['acks_redelivered']}",
        f"playlog entries received: {figures['entries']}; noted and lost: "
        f"{_count(figures['entries_lost'])}; two contents under one id: "
        f"{figures['entries_twice']}; "
        f"redelivered identical: {figures['entries_redelivered']}",
        f"left on the device at the end (outbox, pending, open plays): {figures['left_on_device']}",
    ]
    return lines


def _count(value: Any) -> Any:
    return len(value) if isinstance(value, list) else value


def _row(name: str, o: Outcome, boots: list[float]) -> str:
    head = f"| {name} | {o.rounds} | {o.link_cut} | {o.integrity_failures} | {o.misplaced} "
    if not boots:
        return head + "| – | – | – | – |"
    ordered = sorted(boots)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    within = sum(1 for b in boots if b <= 1.5)
    return head + (
        f"| {statistics.median(boots):.2f} | {p95:.2f} | {max(boots):.2f} | {within}/{len(boots)} |"
    )
