"""The compressed week's mix and what the play log must hold, computed from the plan alone.

Times are the agent's (fake) clock. Each local day (Asia/Ho_Chi_Minh, UTC+7) has: a new
program at 05:00 (its daypart item valid 06:00–11:00), emergencies 09:30–09:40, 14:00–14:10
and 20:00–20:10, the screen forced off at 12:30 and back to `auto` at 13:00, the scheduled
item at 07:00 and 17:00, screen hours 06:00–22:00. `play.now` commands (every fifth a go-live
at a `play_at` 30 s ahead) are spread evenly, except in quiet windows around the events above,
so that none of them is cut, delayed or skipped and each must be shown exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

LOCAL = timedelta(hours=7)
MARGIN = timedelta(minutes=5)
SCHEDULED = ("07:00", "17:00")
EMERGENCIES = (("09:30", "09:40"), ("14:00", "14:10"), ("20:00", "20:10"))
POWER_OFF = ("12:30", "13:00")
SCREEN_HOURS = {"on": "06:00", "off": "22:00"}
PROGRAM_AT = "05:00"
DAYPART = ("06:00", "11:00")


@dataclass(frozen=True)
class Event:
    at: datetime  # UTC, the agent's clock
    kind: str  # program, emergency.start, emergency.stop, power.off, power.auto, play.now
    ident: str  # bulletin id (program: its version)
    play_at: datetime | None = None


@dataclass
class Plan:
    events: list[Event] = field(default_factory=list)
    quiet: list[tuple[datetime, datetime]] = field(default_factory=list)

    def sent(self, until: datetime) -> list[Event]:
        return [e for e in self.events if e.at <= until]

    def expected(self, start: datetime, end: datetime) -> dict[str, int]:
        """Screen entries per bulletin id the play log must hold for what was sent by ``end``
        (scheduled items counted between ``start`` and ``end`` only)."""
        out: dict[str, int] = {}
        for e in self.events:
            if e.at <= end and e.kind in ("play.now", "emergency.start"):
                out[e.ident] = 1
        out["sch"] = sum(1 for t in scheduled_times(start, end))
        return out


def local_at(day: datetime, hhmm: str) -> datetime:
    """The UTC moment of local ``hhmm`` on the local date of ``day`` (a UTC datetime)."""
    midnight = (day + LOCAL).replace(hour=0, minute=0, second=0, microsecond=0) - LOCAL
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return midnight + timedelta(hours=hours, minutes=minutes)


def _days(start: datetime, end: datetime) -> list[datetime]:
    first = local_at(start, "00:00")
    return [first + timedelta(days=d) for d in range((end - first).days + 2)]


def scheduled_times(start: datetime, end: datetime) -> list[datetime]:
    """The scheduled item's times between ``start`` and ``end``, the screen on at each."""
    times = [local_at(d, hhmm) for d in _days(start, end) for hhmm in SCHEDULED]
    return [t for t in times if start <= t <= end]


def make_plan(start: datetime, end: datetime, play_nows: int) -> Plan:
    """Every command of the run from ``start`` to ``end`` (UTC, the agent's clock)."""
    plan = Plan()
    for n, day in enumerate(_days(start, end)):
        date = (day + LOCAL).strftime("%m%d")
        plan.events.append(Event(local_at(day, PROGRAM_AT), "program", str(n + 2)))
        for k, (on, off) in enumerate(EMERGENCIES):
            ident = f"em-{date}-{k}"
            plan.events.append(Event(local_at(day, on), "emergency.start", ident))
            plan.events.append(Event(local_at(day, off), "emergency.stop", ident))
            plan.quiet.append((local_at(day, on) - MARGIN, local_at(day, off) + MARGIN))
        plan.events.append(Event(local_at(day, POWER_OFF[0]), "power.off", ""))
        plan.events.append(Event(local_at(day, POWER_OFF[1]), "power.auto", ""))
        plan.quiet.append(
            (local_at(day, POWER_OFF[0]) - MARGIN, local_at(day, POWER_OFF[1]) + MARGIN)
        )
        plan.quiet.append(
            (
                local_at(day, SCREEN_HOURS["off"]) - MARGIN,
                local_at(day, SCREEN_HOURS["on"]) + timedelta(days=1) + MARGIN,
            )
        )
        for hhmm in SCHEDULED:
            plan.quiet.append((local_at(day, hhmm) - MARGIN, local_at(day, hhmm) + MARGIN))
    step = (end - start) / max(1, play_nows)
    for i in range(play_nows):
        at = start + step * (i + 0.5)
        if any(a <= at <= b for a, b in plan.quiet):
            continue
        go_live = at + timedelta(seconds=30) if i % 5 == 4 else None
        plan.events.append(Event(at, "play.now", f"pn-{i + 1:04d}", go_live))
    kept = [e for e in plan.events if start <= e.at <= end]
    stopped = {e.ident for e in kept if e.kind == "emergency.stop"}
    started = {e.ident for e in kept if e.kind == "emergency.start"}
    plan.events = sorted(
        (e for e in kept if not e.kind.startswith("emergency") or e.ident in stopped & started),
        key=lambda e: e.at,
    )
    return plan


def bulletin(ident: str, words: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "title": words,
        "screen": {"kind": "text", "text": words, "duration_ms": 15000},
        **extra,
    }


def program_bulletins(day: datetime, fmt: Any) -> list[dict[str, Any]]:
    """A day's program: two rotation items, a daypart item, the scheduled item."""
    return [
        bulletin("rot-a", "Lịch tiếp dân"),
        bulletin("rot-b", "Tiêm chủng"),
        bulletin(
            "daypart",
            "Buổi sáng: thu gom rác",
            valid_from=fmt(local_at(day, DAYPART[0])),
            valid_until=fmt(local_at(day, DAYPART[1])),
        ),
        bulletin(
            "sch",
            "Nhắc giờ họp",
            schedule={"weekdays": [1, 2, 3, 4, 5, 6, 7], "times": list(SCHEDULED)},
        ),
    ]


def screen_expected(at: datetime, plan: Plan) -> bool | None:
    """Whether the screen must show something at ``at``; None within a margin of a change."""
    for e in plan.events:
        if e.kind != "play.now" and abs(e.at - at) < MARGIN:
            return None
    for hhmm in (SCREEN_HOURS["on"], SCREEN_HOURS["off"], *POWER_OFF):
        if abs(local_at(at, hhmm) - at) < MARGIN:
            return None
    starts = {e.ident: e.at for e in plan.events if e.kind == "emergency.start"}
    for e in plan.events:
        if e.kind == "emergency.stop" and starts.get(e.ident, e.at) <= at < e.at:
            return True
    hhmm = (at + LOCAL).strftime("%H:%M")
    return SCREEN_HOURS["on"] <= hhmm < SCREEN_HOURS["off"] and not (
        POWER_OFF[0] <= hhmm < POWER_OFF[1]
    )
