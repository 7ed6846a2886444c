"""agent.arbiter.decide() on a fake clock: tables of (world, cursor, now) → decision.

Every expected instant below is worked out by hand from the rules in the module docstring
(and PROTOCOL.md), not read back from the implementation. Hồ Chí Minh City is UTC+7 all year,
so 06:00 local on a Monday is 23:00 UTC on the Sunday before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.arbiter import Cursor, Decision, Emergency, Entry, PlayNow, World, decide
from protocol import Bulletin, Level, Schedule, ScreenHours, ScreenPart, SpeakerPart

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # Thursday, 10:00 in Hồ Chí Minh City


def at(seconds: float) -> datetime:
    """NOW moved by some seconds."""
    return NOW + timedelta(seconds=seconds)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wall(text: str, tz: ZoneInfo = HCM) -> datetime:
    """A local wall-clock time (unambiguous) as a UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(UTC)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bulletin(
    bid: str,
    level: str = "normal",
    *,
    screen_ms: int | None = 15000,
    speaker: bool = False,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    times: list[str] | None = None,
    weekdays: list[int] | None = None,
) -> Bulletin:
    schedule = None
    if times is not None:
        schedule = Schedule(times=times, weekdays=weekdays or [1, 2, 3, 4, 5, 6, 7])
    return Bulletin(
        id=bid,
        title=f"Bản tin {bid}",
        level=Level(level),
        screen=ScreenPart(kind="text", text="Nội dung", duration_ms=screen_ms)
        if screen_ms is not None
        else None,
        speaker=SpeakerPart(kind="tts", text="Thông báo") if speaker else None,
        valid_from=z(valid_from) if valid_from else None,
        valid_until=z(valid_until) if valid_until else None,
        schedule=schedule,
    )


def entries(*items: Bulletin | tuple[Bulletin, int]) -> tuple[Entry, ...]:
    """Program entries in merge order; a bare bulletin comes from the device's own topic."""
    out = []
    for order, item in enumerate(items):
        b, rank = item if isinstance(item, tuple) else (item, 0)
        out.append(Entry(b, rank, f"topic-{rank}", order))
    return tuple(out)


def emergency(
    eid: str,
    started: datetime,
    expires: datetime | None = None,
    *,
    rank: int = 0,
    every: int | None = None,
    screen: bool = True,
    speaker: bool = True,
) -> Emergency:
    b = bulletin(f"b-{eid}", "emergency", screen_ms=60000 if screen else None, speaker=speaker)
    return Emergency(eid, b, rank, started, expires, every)


def play_now(
    pid: str,
    play_at: datetime,
    *,
    level: str = "normal",
    rank: int = 0,
    issued: datetime | None = None,
    repeat: int = 1,
    screen_ms: int | None = 10000,
    speaker: bool = True,
) -> PlayNow:
    b = bulletin(f"b-{pid}", level, screen_ms=screen_ms, speaker=speaker)
    return PlayNow(pid, b, rank, issued or play_at, play_at, repeat)


# The rotation used throughout: P (priority, 5 s) goes before A (10 s) and B (20 s), although
# it comes last in the program. One cycle is 35 s.
A = bulletin("a", screen_ms=10000)
B = bulletin("b", screen_ms=20000)
P = bulletin("p", "priority", screen_ms=5000)
ROT = entries(A, B, P)

ANY: Literal["any"] = "any"


@dataclass(frozen=True)
class Row:
    """One table row: the inputs and what the decision must say."""

    world: World
    cursor: Cursor
    now: datetime
    screen: str | None  # bulletin id on screen
    origin: str | None
    queue: tuple[str, ...]  # announcement keys, in play order
    next_change: datetime | None
    screen_on: bool = True
    until: datetime | Literal["any"] | None = ANY
    cursor_after: Cursor | None = None  # checked when given


def row(
    desc: str,
    *,
    world: World,
    cursor: Cursor,
    now: datetime,
    screen: str | None,
    origin: str | None,
    queue: tuple[str, ...],
    next_change: datetime | None,
    screen_on: bool = True,
    until: datetime | Literal["any"] | None = ANY,
    cursor_after: Cursor | None = None,
) -> object:
    """A table row named by its description."""
    r = Row(world, cursor, now, screen, origin, queue, next_change, screen_on, until, cursor_after)
    return pytest.param(r, id=desc)


def check(r: Row) -> Decision:
    d = decide(r.world, r.cursor, r.now)
    assert (d.screen.bulletin.id if d.screen else None) == r.screen
    assert (d.screen.origin if d.screen else None) == r.origin
    assert tuple(a.key for a in d.speaker_queue) == r.queue
    assert d.next_change == r.next_change
    assert d.screen_on is r.screen_on
    if r.until != ANY:
        assert d.screen is not None and d.screen.until == r.until
    if r.cursor_after is not None:
        assert d.cursor == r.cursor_after
    return d


# --------------------------------------------------------------------------- rotation

ROTATION = [
    row(
        "empty cursor starts with the priority item",
        world=World(entries=ROT),
        cursor=Cursor(),
        now=NOW,
        screen="p",
        origin="rotation",
        queue=(),
        next_change=at(5),
        until=at(5),
        cursor_after=Cursor("p", 5000, NOW),
    ),
    row(
        "item still showing keeps its end",
        world=World(entries=ROT),
        cursor=Cursor("p", 5000, at(-2)),
        now=NOW,
        screen="p",
        origin="rotation",
        queue=(),
        next_change=at(3),
        cursor_after=Cursor("p", 5000, at(-2)),
    ),
    row(
        "item ending exactly now gives way to the next",
        world=World(entries=ROT),
        cursor=Cursor("p", 5000, at(-5)),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(10),
        cursor_after=Cursor("a", 10000, NOW),
    ),
    row(
        "next item started a second ago",
        world=World(entries=ROT),
        cursor=Cursor("p", 5000, at(-6)),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(9),
        cursor_after=Cursor("a", 10000, at(-1)),
    ),
    row(
        "each item shows for its own duration",
        world=World(entries=ROT),
        cursor=Cursor("a", 10000, at(-12)),
        now=NOW,
        screen="b",
        origin="rotation",
        queue=(),
        next_change=at(18),
        cursor_after=Cursor("b", 20000, at(-2)),
    ),
    row(
        "last item wraps round to the priority item",
        world=World(entries=ROT),
        cursor=Cursor("b", 20000, at(-21)),
        now=NOW,
        screen="p",
        origin="rotation",
        queue=(),
        next_change=at(4),
        cursor_after=Cursor("p", 5000, at(-1)),
    ),
    row(
        # P ends at -3595, A at -3585, B at -3565; 101 whole cycles (3535 s) reach -30;
        # then P -30..-25, A -25..-15, B -15..+5.
        "an hour's gap skips whole cycles",
        world=World(entries=ROT),
        cursor=Cursor("p", 5000, at(-3600)),
        now=NOW,
        screen="b",
        origin="rotation",
        queue=(),
        next_change=at(5),
        cursor_after=Cursor("b", 20000, at(-15)),
    ),
    row(
        "a cursor on a bulletin that is gone starts over at now",
        world=World(entries=ROT),
        cursor=Cursor("gone", 3000, at(-1)),
        now=NOW,
        screen="p",
        origin="rotation",
        queue=(),
        next_change=at(5),
        cursor_after=Cursor("p", 5000, NOW),
    ),
    row(
        "a paused cursor resumes with its remaining time",
        world=World(entries=ROT),
        cursor=Cursor("a", 4000, None),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(4),
        cursor_after=Cursor("a", 4000, NOW),
    ),
    row(
        "a paused cursor with nothing left moves on",
        world=World(entries=ROT),
        cursor=Cursor("a", 0, None),
        now=NOW,
        screen="b",
        origin="rotation",
        queue=(),
        next_change=at(20),
        cursor_after=Cursor("b", 20000, NOW),
    ),
    row(
        "remaining time never exceeds the item's duration",
        world=World(entries=ROT),
        cursor=Cursor("a", 999_999, None),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(10),
    ),
    row(
        "a single item repeats itself",
        world=World(entries=entries(A)),
        cursor=Cursor("a", 10000, at(-25)),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(5),
        cursor_after=Cursor("a", 10000, at(-5)),
    ),
    row(
        "no rotation items: idle screen, nothing will change",
        world=World(),
        cursor=Cursor("a", 3000, at(-1)),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
        cursor_after=Cursor(),
    ),
    row(
        "within a level, the device's own program before the ward's",
        world=World(entries=entries((A, 2), (B, 0))),
        cursor=Cursor(),
        now=NOW,
        screen="b",
        origin="rotation",
        queue=(),
        next_change=at(20),
    ),
    row(
        "priority from 'all' before normal from the device",
        world=World(entries=entries((A, 0), (P, 3))),
        cursor=Cursor(),
        now=NOW,
        screen="p",
        origin="rotation",
        queue=(),
        next_change=at(5),
    ),
    row(
        "scheduled and speaker-only bulletins stay out of the rotation",
        world=World(
            entries=entries(
                bulletin("s", times=["12:00"]), bulletin("v", screen_ms=None, speaker=True), A
            )
        ),
        cursor=Cursor(),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(10),
    ),
    row(
        "an item's validity cuts its slot short",
        world=World(entries=entries(bulletin("a", screen_ms=10000, valid_until=at(4)), B)),
        cursor=Cursor("a", 10000, NOW),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(4),
        until=at(4),
    ),
    row(
        "an item no longer valid leaves; the rotation starts over",
        world=World(entries=entries(bulletin("a", screen_ms=10000, valid_until=at(4)), B, P)),
        cursor=Cursor("a", 10000, NOW),
        now=at(4),
        screen="p",
        origin="rotation",
        queue=(),
        next_change=at(9),
    ),
    row(
        "a bulletin not yet valid is not shown, but its start is a change",
        world=World(entries=entries(A, bulletin("c", valid_from=at(3)))),
        cursor=Cursor(),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(3),
    ),
    row(
        "a duplicate bulletin id: the device's copy wins",
        world=World(entries=entries((bulletin("a", screen_ms=7000), 0), (A, 1))),
        cursor=Cursor(),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(7),
    ),
]

# --------------------------------------------------------------------------- emergencies

EMERGENCY = [
    row(
        "emergency takes over; the rotation pauses with its remaining time",
        world=World(entries=ROT, emergencies=(emergency("em-1", NOW, at(3600)),)),
        cursor=Cursor("a", 10000, at(-4)),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=("em-1@2026-11-26T03:00:00Z",),
        next_change=at(600),  # its announcement's grace runs out before it expires
        until=at(3600),
        cursor_after=Cursor("a", 6000, None),
    ),
    row(
        "decided a second late: paused where the emergency began",
        world=World(entries=ROT, emergencies=(emergency("em-1", at(-1), at(3600)),)),
        cursor=Cursor("a", 10000, at(-4)),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=("em-1@2026-11-26T02:59:59Z",),
        next_change=at(599),
        cursor_after=Cursor("a", 7000, None),
    ),
    row(
        "a cursor already paused stays as it is",
        world=World(entries=ROT, emergencies=(emergency("em-1", at(-30), at(3600)),)),
        cursor=Cursor("a", 6000, None),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=("em-1@2026-11-26T02:59:30Z",),
        next_change=at(570),
        cursor_after=Cursor("a", 6000, None),
    ),
    row(
        "emergency expired: the rotation resumes where it was",
        world=World(entries=ROT, emergencies=(emergency("em-1", at(-3600), NOW),)),
        cursor=Cursor("a", 6000, None),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(6),
        cursor_after=Cursor("a", 6000, NOW),
    ),
    row(
        "emergency not started yet: its start is the next change",
        world=World(entries=ROT, emergencies=(emergency("em-1", at(3)),)),
        cursor=Cursor("p", 5000, NOW),
        now=NOW,
        screen="p",
        origin="rotation",
        queue=(),
        next_change=at(3),
    ),
    row(
        # Started 1400 s ago, every 900 s: occurrences at -1400 and -500; only -500 is queued.
        "repeat: only the latest occurrence, next repeat after its grace",
        world=World(emergencies=(emergency("em-1", at(-1400), every=900),)),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=("em-1@2026-11-26T02:51:40Z",),
        next_change=at(100),
        until=None,
    ),
    row(
        "repeat: latest occurrence played, waits for the next",
        world=World(
            emergencies=(emergency("em-1", at(-1400), every=900),),
            played=frozenset({"em-1@2026-11-26T02:51:40Z"}),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=(),
        next_change=at(400),
    ),
    row(
        "repeat: no repeat after the expiry",
        world=World(
            emergencies=(emergency("em-1", at(-1400), at(200), every=900),),
            played=frozenset({"em-1@2026-11-26T02:51:40Z"}),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=(),
        next_change=at(200),
    ),
    row(
        "repeat: a new occurrence is due at once",
        world=World(emergencies=(emergency("em-1", at(-900), every=900),)),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=("em-1@2026-11-26T03:00:00Z",),
        next_change=at(600),
    ),
    row(
        "emergency announcement beyond grace: screen only, nothing ever changes",
        world=World(entries=ROT, emergencies=(emergency("em-1", at(-1200)),)),
        cursor=Cursor("a", 6000, None),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=(),
        next_change=None,
    ),
    row(
        "emergency announcement already played",
        world=World(
            emergencies=(emergency("em-1", NOW),),
            played=frozenset({"em-1@2026-11-26T03:00:00Z"}),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=(),
        next_change=None,
    ),
    row(
        "the device's emergency beats a later one from the district",
        world=World(
            emergencies=(
                emergency("em-dist", at(-10), rank=2),
                emergency("em-dev", at(-60), rank=0),
            )
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-dev",
        origin="emergency",
        queue=("em-dev@2026-11-26T02:59:00Z",),
        next_change=at(540),
    ),
    row(
        "device over ward over district over all",
        world=World(
            emergencies=(
                emergency("em-all", at(-10), rank=3),
                emergency("em-district", at(-20), rank=2),
                emergency("em-ward", at(-30), rank=1),
                emergency("em-device", at(-40), rank=0),
            )
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-device",
        origin="emergency",
        queue=("em-device@2026-11-26T02:59:20Z",),
        next_change=at(560),
    ),
    row(
        "same source: the most recent emergency wins",
        world=World(
            emergencies=(emergency("em-old", at(-60), rank=1), emergency("em-new", at(-10), rank=1))
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-new",
        origin="emergency",
        queue=("em-new@2026-11-26T02:59:50Z",),
        next_change=at(590),
    ),
    row(
        "an emergency-level program bulletin is an emergency from its start",
        world=World(
            entries=(
                *ROT,
                Entry(
                    bulletin(
                        "x", "emergency", speaker=True, valid_from=at(-120), valid_until=at(3600)
                    ),
                    1,
                    "topic-1",
                    3,
                ),
            ),
            went_live_at=at(-600),
        ),
        cursor=Cursor("p", 5000, at(-140)),
        now=NOW,
        screen="x",
        origin="emergency",
        queue=("x@2026-11-26T02:58:00Z",),
        next_change=at(480),
        until=at(3600),
        # At -120 the rotation was at B (P -140..-135, A -135..-125, B -125..), 5 s into it.
        cursor_after=Cursor("b", 15000, None),
    ),
    row(
        "a device program's emergency beats a ward's emergency.start",
        world=World(
            entries=entries(bulletin("x", "emergency", speaker=True)),
            emergencies=(emergency("em-ward", at(-10), rank=1),),
            went_live_at=at(-60),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="x",
        origin="emergency",
        queue=("x@2026-11-26T02:59:00Z",),
        next_change=at(540),
    ),
    row(
        "per channel: a screen-only winner leaves the speaker to the next emergency",
        world=World(
            emergencies=(
                emergency("em-dev", at(-10), rank=0, speaker=False),
                emergency("em-dist", at(-20), rank=2, screen=False),
            )
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-dev",
        origin="emergency",
        queue=("em-dist@2026-11-26T02:59:40Z",),
        next_change=at(580),
    ),
    row(
        "a speaker-only emergency still takes the screen (its title)",
        world=World(entries=ROT, emergencies=(emergency("em-1", NOW, screen=False),)),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=("em-1@2026-11-26T03:00:00Z",),
        next_change=at(600),
        cursor_after=Cursor("p", 5000, None),
    ),
    row(
        "other announcements wait while an emergency is in force",
        world=World(
            entries=entries(bulletin("s", screen_ms=None, speaker=True, times=["10:00"])),
            emergencies=(emergency("em-1", at(-5), at(60), speaker=False),),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=(),
        next_change=at(60),
    ),
    row(
        "…and are due again when it ends, within their grace",
        world=World(
            entries=entries(bulletin("s", screen_ms=None, speaker=True, times=["10:00"])),
            emergencies=(emergency("em-1", at(-5), at(60), speaker=False),),
        ),
        cursor=Cursor(),
        now=at(60),
        screen=None,
        origin=None,
        queue=("s@2026-11-26T03:00:00Z",),
        next_change=at(600),
    ),
    row(
        "play.now waits behind an emergency",
        world=World(
            emergencies=(emergency("em-1", at(-5), at(60)),),
            play_now=(play_now("pn-00000001", NOW),),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-em-1",
        origin="emergency",
        queue=("em-1@2026-11-26T02:59:55Z",),
        next_change=at(10),  # the play.now slot's end (a harmless extra wake-up)
    ),
    row(
        "an emergency powers the screen outside screen hours",
        world=World(
            emergencies=(emergency("em-1", wall("2026-11-26T23:00"), every=600),),
            screen_hours=ScreenHours(on="06:00", off="22:00"),
        ),
        cursor=Cursor(),
        now=wall("2026-11-26T23:00"),
        screen="b-em-1",
        origin="emergency",
        queue=("em-1@2026-11-26T16:00:00Z",),
        next_change=wall("2026-11-26T23:10"),
        screen_on=True,
    ),
]

# --------------------------------------------------------------------------- play.now

PLAY_NOW = [
    row(
        "play.now now, twice: slot for both showings, two announcements",
        world=World(
            entries=ROT,
            play_now=(play_now("pn-00000001", at(-2), repeat=2),),
            showing="pn-00000001",
            showing_since=at(-2),
        ),
        cursor=Cursor("a", 10000, at(-4)),
        now=NOW,
        screen="b-pn-00000001",
        origin="play_now",
        queue=("pn-00000001#1", "pn-00000001#2"),
        next_change=at(18),
        until=at(18),
        cursor_after=Cursor("a", 8000, None),
    ),
    row(
        "play.now at a future play_at is a change, not a slot",
        world=World(entries=ROT, play_now=(play_now("pn-00000001", at(5), repeat=3),)),
        cursor=Cursor("a", 10000, NOW),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(5),
    ),
    row(
        "play.now at its play_at",
        world=World(entries=ROT, play_now=(play_now("pn-00000001", at(5), repeat=3),)),
        cursor=Cursor("a", 10000, NOW),
        now=at(5),
        screen="b-pn-00000001",
        origin="play_now",
        queue=("pn-00000001#1", "pn-00000001#2", "pn-00000001#3"),
        next_change=at(35),
        until=at(35),
        cursor_after=Cursor("a", 5000, None),
    ),
    row(
        "after its screen slot, the rotation resumes; the speaker part is still due",
        world=World(
            entries=ROT,
            play_now=(play_now("pn-00000001", at(-60), repeat=2),),
            shown={"pn-00000001": 20000},
        ),
        cursor=Cursor("a", 6000, None),
        now=NOW,
        screen="a",
        origin="rotation",
        queue=("pn-00000001#1", "pn-00000001#2"),
        next_change=at(6),
    ),
    row(
        "a played repeat is not queued again",
        world=World(
            play_now=(play_now("pn-00000001", at(-60), repeat=2),),
            played=frozenset({"pn-00000001#1"}),
            shown={"pn-00000001": 20000},
        ),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=("pn-00000001#2",),
        next_change=at(540),
    ),
    row(
        "play.now beyond grace is not announced",
        world=World(play_now=(play_now("pn-00000001", at(-700)),)),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
    ),
    row(
        "several play.now: priority level first, on screen and speaker",
        world=World(
            play_now=(
                play_now("pn-normal-0", at(-1), rank=0),
                play_now("pn-prio-3", at(-2), level="priority", rank=3),
            ),
            showing="pn-prio-3",
            showing_since=at(-2),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-pn-prio-3",
        origin="play_now",
        queue=("pn-prio-3#1", "pn-normal-0#1"),
        next_change=at(8),
    ),
    row(
        "several play.now, same level, none showing yet: the device's first, from now",
        world=World(
            play_now=(play_now("pn-ward-1", at(-1), rank=1), play_now("pn-dev-0", at(-2), rank=0))
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-pn-dev-0",
        origin="play_now",
        queue=("pn-dev-0#1", "pn-ward-1#1"),
        next_change=at(10),
        until=at(10),
    ),
    row(
        "several play.now, same level and source: the first to start, whoever was issued last",
        world=World(
            play_now=(
                play_now("pn-older1", at(-1), rank=1, issued=at(-100)),
                play_now("pn-newer1", at(-2), rank=1, issued=at(-50)),
            )
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-pn-newer1",
        origin="play_now",
        queue=("pn-newer1#1", "pn-older1#1"),  # queue: due ascending
        next_change=at(10),
    ),
    row(
        "a play.now that came first keeps a scheduled screen part of its level waiting",
        world=World(
            entries=entries(bulletin("s", times=["10:00"], screen_ms=60000)),
            play_now=(play_now("pn-00000001", at(-1), speaker=False),),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-pn-00000001",
        origin="play_now",
        queue=(),
        next_change=at(10),
    ),
    row(
        "the play.now showing keeps the screen against one of its level that came later",
        world=World(
            play_now=(play_now("pn-first-1", at(-4)), play_now("pn-later-1", at(-1), rank=0)),
            showing="pn-first-1",
            showing_since=at(-4),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-pn-first-1",
        origin="play_now",
        queue=("pn-first-1#1", "pn-later-1#1"),
        next_change=at(6),
        until=at(6),
    ),
    row(
        "a priority play.now interrupts the normal one showing",
        world=World(
            play_now=(
                play_now("pn-normal-1", at(-4)),
                play_now("pn-prio-01", at(0), level="priority", speaker=False),
            ),
            showing="pn-normal-1",
            showing_since=at(-4),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-pn-prio-01",
        origin="play_now",
        queue=("pn-normal-1#1",),
        next_change=at(6),  # (the normal one's end, were it still showing)
        until=at(10),
    ),
    row(
        "an interrupted play.now resumes with the rest of its time",
        world=World(
            play_now=(play_now("pn-normal-1", at(-30), speaker=False),),
            shown={"pn-normal-1": 4000},
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-pn-normal-1",
        origin="play_now",
        queue=(),
        next_change=at(6),
        until=at(6),
    ),
    row(
        "an interrupted play.now resumes even after its first grace",
        world=World(
            play_now=(play_now("pn-normal-1", at(-900), speaker=False),),
            shown={"pn-normal-1": 4000},
        ),
        cursor=Cursor(),
        now=NOW,
        screen="b-pn-normal-1",
        origin="play_now",
        queue=(),
        next_change=at(6),
        until=at(6),
    ),
    row(
        "a play.now that never got the screen within grace of its play_at no longer takes it",
        world=World(play_now=(play_now("pn-waited-1", at(-600), speaker=False),)),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
    ),
    row(
        "a play.now never shows after its command expired",
        world=World(
            play_now=(replace(play_now("pn-expired", at(-5), speaker=False), expires_at=at(-1)),),
            shown={"pn-expired": 2000},
        ),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
    ),
    row(
        "a priority scheduled screen part interrupts a normal play.now",
        world=World(
            entries=entries(bulletin("s", "priority", times=["10:00"], screen_ms=60000)),
            play_now=(play_now("pn-00000001", at(-1), speaker=False),),
            showing="pn-00000001",
            showing_since=at(-1),
        ),
        cursor=Cursor(),
        now=NOW,
        screen="s",
        origin="scheduled",
        queue=(),
        next_change=at(9),
        until=at(60),
    ),
]

# --------------------------------------------------------------------------- schedules

MON_0600 = bulletin("mon-0600", screen_ms=None, speaker=True, times=["06:00"], weekdays=[1])
NIGHT = bulletin("night", screen_ms=None, speaker=True, times=["23:59", "00:01"])
SUN_2359 = bulletin("sun-2359", screen_ms=None, speaker=True, times=["23:59"], weekdays=[7])
MON_2359 = bulletin("mon-2359", screen_ms=None, speaker=True, times=["23:59"], weekdays=[1])
B0230 = bulletin("b0230", screen_ms=None, speaker=True, times=["02:30"])
B0600 = bulletin("b0600", screen_ms=None, speaker=True, times=["06:00"])

SCHEDULES = [
    row(
        "Monday 06:00 in HCM is Sunday 23:00 UTC",
        world=World(entries=entries(MON_0600)),
        cursor=Cursor(),
        now=utc("2026-11-22T23:00:30Z"),
        screen=None,
        origin=None,
        queue=("mon-0600@2026-11-22T23:00:00Z",),
        next_change=utc("2026-11-22T23:10:00Z"),
    ),
    row(
        "Monday 06:00 UTC is 13:00 local: nothing due, next is Sunday 23:00 UTC",
        world=World(entries=entries(MON_0600)),
        cursor=Cursor(),
        now=utc("2026-11-23T06:00:30Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-11-29T23:00:00Z"),
    ),
    row(
        "Tuesday 06:00 local (Monday 23:00 UTC) is not a Monday",
        world=World(entries=entries(MON_0600)),
        cursor=Cursor(),
        now=utc("2026-11-23T23:00:30Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-11-29T23:00:00Z"),
    ),
    row(
        "missed beyond grace: not queued",
        world=World(entries=entries(MON_0600)),
        cursor=Cursor(),
        now=utc("2026-11-22T23:10:00Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-11-29T23:00:00Z"),
    ),
    row(
        "a shorter grace",
        world=World(entries=entries(MON_0600), grace_s=60),
        cursor=Cursor(),
        now=utc("2026-11-22T23:01:30Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-11-29T23:00:00Z"),
    ),
    row(
        "played: not queued again",
        world=World(entries=entries(MON_0600), played=frozenset({"mon-0600@2026-11-22T23:00:00Z"})),
        cursor=Cursor(),
        now=utc("2026-11-22T23:00:30Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-11-29T23:00:00Z"),
    ),
    row(
        "23:59 local is due; 00:01 is next",
        world=World(entries=entries(NIGHT)),
        cursor=Cursor(),
        now=wall("2026-11-26T23:59:30"),
        screen=None,
        origin=None,
        queue=("night@2026-11-26T16:59:00Z",),
        next_change=wall("2026-11-27T00:01"),
    ),
    row(
        "just past midnight: yesterday's 23:59 is still due",
        world=World(entries=entries(NIGHT)),
        cursor=Cursor(),
        now=wall("2026-11-27T00:00:30"),
        screen=None,
        origin=None,
        queue=("night@2026-11-26T16:59:00Z",),
        next_change=wall("2026-11-27T00:01"),
    ),
    row(
        "00:01 local supersedes 23:59 (no backlog of one bulletin)",
        world=World(entries=entries(NIGHT)),
        cursor=Cursor(),
        now=wall("2026-11-27T00:01:30"),
        screen=None,
        origin=None,
        queue=("night@2026-11-26T17:01:00Z",),
        next_change=wall("2026-11-27T00:11"),
    ),
    row(
        "Sunday 23:59 still due early on Monday",
        world=World(entries=entries(SUN_2359)),
        cursor=Cursor(),
        now=wall("2026-11-23T00:05"),
        screen=None,
        origin=None,
        queue=("sun-2359@2026-11-22T16:59:00Z",),
        next_change=wall("2026-11-23T00:09"),
    ),
    row(
        "a Monday 23:59 bulletin is not due after Sunday 23:59",
        world=World(entries=entries(MON_2359)),
        cursor=Cursor(),
        now=wall("2026-11-23T00:05"),
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-23T23:59"),
    ),
    row(
        "scheduled screen part preempts the rotation for its duration",
        world=World(entries=(*ROT, *entries(bulletin("s", times=["10:00"], screen_ms=30000)))),
        cursor=Cursor("a", 10000, at(-4)),
        now=at(10),
        screen="s",
        origin="scheduled",
        queue=(),
        next_change=at(30),
        until=at(30),
        cursor_after=Cursor("a", 6000, None),
    ),
    row(
        "after the scheduled screen part, the rotation resumes",
        world=World(entries=(*ROT, *entries(bulletin("s", times=["10:00"], screen_ms=30000)))),
        cursor=Cursor("a", 6000, None),
        now=at(30),
        screen="a",
        origin="rotation",
        queue=(),
        next_change=at(36),
    ),
    row(
        "scheduled screen and speaker together",
        world=World(entries=entries(bulletin("s", times=["10:00"], speaker=True))),
        cursor=Cursor(),
        now=at(1),
        screen="s",
        origin="scheduled",
        queue=("s@2026-11-26T03:00:00Z",),
        next_change=at(15),
    ),
    row(
        "two scheduled screens at once: priority first",
        world=World(
            entries=entries(
                bulletin("s-norm", times=["10:00"]), bulletin("s-prio", "priority", times=["10:00"])
            )
        ),
        cursor=Cursor(),
        now=NOW,
        screen="s-prio",
        origin="scheduled",
        queue=(),
        next_change=at(15),
    ),
    row(
        "an occurrence before valid_from does not count",
        world=World(
            entries=entries(
                bulletin("v", screen_ms=None, speaker=True, times=["10:00"], valid_from=at(60))
            )
        ),
        cursor=Cursor(),
        now=at(61),
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-27T10:00"),
    ),
    row(
        "not yet valid: the validity start is the next change",
        world=World(
            entries=entries(
                bulletin("v", screen_ms=None, speaker=True, times=["10:00"], valid_from=at(60))
            )
        ),
        cursor=Cursor(),
        now=at(10),
        screen=None,
        origin=None,
        queue=(),
        next_change=at(60),
    ),
    row(
        "no longer valid: never again",
        world=World(
            entries=entries(
                bulletin("v", screen_ms=None, speaker=True, times=["10:00"], valid_until=at(-1))
            )
        ),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
    ),
    row(
        "last occurrence inside the window, then nothing",
        world=World(
            entries=entries(
                bulletin("v", screen_ms=None, speaker=True, times=["10:00"], valid_until=at(3600))
            )
        ),
        cursor=Cursor(),
        now=at(30),
        screen=None,
        origin=None,
        queue=("v@2026-11-26T03:00:00Z",),
        next_change=at(600),
    ),
    row(
        "the device's time zone decides: 10:00 in UTC",
        world=World(
            entries=entries(bulletin("ten", screen_ms=None, speaker=True, times=["10:00"])),
            tz=ZoneInfo("UTC"),
        ),
        cursor=Cursor(),
        now=at(30),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-11-26T10:00:00Z"),
    ),
    row(
        "Berlin, clocks forward: 02:30 does not exist, it falls at the jump",
        world=World(entries=entries(B0230), tz=BERLIN),
        cursor=Cursor(),
        now=utc("2026-03-29T01:00:30Z"),
        screen=None,
        origin=None,
        queue=("b0230@2026-03-29T01:00:00Z",),
        next_change=utc("2026-03-29T01:10:00Z"),
    ),
    row(
        "Berlin, clocks back: 02:30 happens once",
        world=World(
            entries=entries(B0230), tz=BERLIN, played=frozenset({"b0230@2026-10-25T00:30:00Z"})
        ),
        cursor=Cursor(),
        now=utc("2026-10-25T00:45:00Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-10-26T01:30:00Z"),
    ),
    row(
        "Berlin: 06:00 is 05:00 UTC the day before the change…",
        world=World(entries=entries(B0600), tz=BERLIN),
        cursor=Cursor(),
        now=utc("2026-03-28T04:30:00Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-03-28T05:00:00Z"),
    ),
    row(
        "…and 04:00 UTC on the day",
        world=World(entries=entries(B0600), tz=BERLIN),
        cursor=Cursor(),
        now=utc("2026-03-29T03:59:00Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-03-29T04:00:00Z"),
    ),
]

# --------------------------------------------------------------------------- going live

LIVE = bulletin("live", screen_ms=None, speaker=True)

GOING_LIVE = [
    row(
        "an unscheduled speaker part is announced when the program goes live",
        world=World(entries=entries(LIVE), went_live_at=at(-60)),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=("live@live:2026-11-26T02:59:00Z",),
        next_change=at(540),
    ),
    row(
        "went live too long ago",
        world=World(entries=entries(LIVE), went_live_at=at(-700)),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
    ),
    row(
        "already announced",
        world=World(
            entries=entries(LIVE),
            went_live_at=at(-60),
            played=frozenset({"live@live:2026-11-26T02:59:00Z"}),
        ),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
    ),
    row(
        "valid only later: announced when it becomes valid",
        world=World(
            entries=entries(bulletin("live", screen_ms=None, speaker=True, valid_from=at(-30))),
            went_live_at=at(-3600),
        ),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=("live@live:2026-11-26T02:00:00Z",),
        next_change=at(570),
    ),
    row(
        "a bulletin with both parts rotates and is announced",
        world=World(
            entries=entries(bulletin("both", screen_ms=10000, speaker=True)), went_live_at=NOW
        ),
        cursor=Cursor(),
        now=NOW,
        screen="both",
        origin="rotation",
        queue=("both@live:2026-11-26T03:00:00Z",),
        next_change=at(10),
    ),
]

# --------------------------------------------------------------------------- queue order

QUEUE = [
    row(
        "level first, then source, then due",
        world=World(
            entries=entries(
                (bulletin("sn", screen_ms=None, speaker=True, times=["10:00"]), 0),
                (bulletin("sp", "priority", screen_ms=None, speaker=True, times=["10:00"]), 3),
                (LIVE, 0),
            ),
            play_now=(play_now("pn-00000002", at(-10), rank=2, screen_ms=None),),
            went_live_at=at(-60),
        ),
        cursor=Cursor(),
        now=at(1),
        screen=None,
        origin=None,
        queue=(
            "sp@2026-11-26T03:00:00Z",
            "live@live:2026-11-26T02:59:00Z",
            "sn@2026-11-26T03:00:00Z",
            "pn-00000002#1",
        ),
        next_change=at(540),
    ),
    row(
        "same level and time: device over ward over district over all",
        world=World(
            entries=entries(
                (bulletin("s-all", screen_ms=None, speaker=True, times=["10:00"]), 3),
                (bulletin("s-dev", screen_ms=None, speaker=True, times=["10:00"]), 0),
                (bulletin("s-dist", screen_ms=None, speaker=True, times=["10:00"]), 2),
                (bulletin("s-ward", screen_ms=None, speaker=True, times=["10:00"]), 1),
            )
        ),
        cursor=Cursor(),
        now=at(1),
        screen=None,
        origin=None,
        queue=(
            "s-dev@2026-11-26T03:00:00Z",
            "s-ward@2026-11-26T03:00:00Z",
            "s-dist@2026-11-26T03:00:00Z",
            "s-all@2026-11-26T03:00:00Z",
        ),
        next_change=at(600),
    ),
    row(
        "same level and source: program order",
        world=World(
            entries=entries(
                bulletin("s-1", screen_ms=None, speaker=True, times=["10:00"]),
                bulletin("s-0", screen_ms=None, speaker=True, times=["10:00"]),
            )
        ),
        cursor=Cursor(),
        now=at(1),
        screen=None,
        origin=None,
        queue=("s-1@2026-11-26T03:00:00Z", "s-0@2026-11-26T03:00:00Z"),
        next_change=at(600),
    ),
]

# --------------------------------------------------------------------------- screen hours

DAY = ScreenHours(on="06:00", off="22:00")
NIGHT_HOURS = ScreenHours(on="22:00", off="06:00")

SCREEN_HOURS = [
    row(
        "no screen hours: always on",
        world=World(),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
        screen_on=True,
    ),
    row(
        "day hours, 10:00: on until 22:00",
        world=World(screen_hours=DAY),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-26T22:00"),
        screen_on=True,
    ),
    row(
        "day hours, 23:00: off until 06:00",
        world=World(screen_hours=DAY),
        cursor=Cursor(),
        now=wall("2026-11-26T23:00"),
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-27T06:00"),
        screen_on=False,
    ),
    row(
        "day hours, exactly 06:00: on",
        world=World(screen_hours=DAY),
        cursor=Cursor(),
        now=wall("2026-11-26T06:00"),
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-26T22:00"),
        screen_on=True,
    ),
    row(
        "day hours, exactly 22:00: off",
        world=World(screen_hours=DAY),
        cursor=Cursor(),
        now=wall("2026-11-26T22:00"),
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-27T06:00"),
        screen_on=False,
    ),
    row(
        "overnight hours, 23:00: on",
        world=World(screen_hours=NIGHT_HOURS),
        cursor=Cursor(),
        now=wall("2026-11-26T23:00"),
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-27T06:00"),
        screen_on=True,
    ),
    row(
        "overnight hours, 03:00: on",
        world=World(screen_hours=NIGHT_HOURS),
        cursor=Cursor(),
        now=wall("2026-11-27T03:00"),
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-27T06:00"),
        screen_on=True,
    ),
    row(
        "overnight hours, 10:00: off",
        world=World(screen_hours=NIGHT_HOURS),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=wall("2026-11-26T22:00"),
        screen_on=False,
    ),
    row(
        "on equals off: always on",
        world=World(screen_hours=ScreenHours(on="06:00", off="06:00")),
        cursor=Cursor(),
        now=NOW,
        screen=None,
        origin=None,
        queue=(),
        next_change=None,
        screen_on=True,
    ),
    row(
        "screen hours in the device's zone (Berlin, winter)",
        world=World(screen_hours=DAY, tz=BERLIN),
        cursor=Cursor(),
        now=NOW,  # 04:00 in Berlin
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-11-26T05:00:00Z"),
        screen_on=False,
    ),
    row(
        "Berlin, clocks forward over 'on' 02:30: still off just before the jump",
        world=World(screen_hours=ScreenHours(on="02:30", off="22:00"), tz=BERLIN),
        cursor=Cursor(),
        now=utc("2026-03-29T00:59:59Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-03-29T01:00:00Z"),
        screen_on=False,
    ),
    row(
        "Berlin, clocks forward: on at the jump, off at 22:00 summer time",
        world=World(screen_hours=ScreenHours(on="02:30", off="22:00"), tz=BERLIN),
        cursor=Cursor(),
        now=utc("2026-03-29T01:00:00Z"),
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-03-29T20:00:00Z"),
        screen_on=True,
    ),
    row(
        "Berlin, clocks back: off at the first 02:30 stays off through the second",
        world=World(screen_hours=ScreenHours(on="01:00", off="02:30"), tz=BERLIN),
        cursor=Cursor(),
        now=utc("2026-10-25T01:15:00Z"),  # 02:15 winter time, the second time round
        screen=None,
        origin=None,
        queue=(),
        next_change=utc("2026-10-26T00:00:00Z"),
        screen_on=False,
    ),
    row(
        "the rotation keeps its place while the screen is off",
        world=World(entries=ROT, screen_hours=DAY),
        cursor=Cursor("a", 10000, wall("2026-11-26T23:00")),
        now=wall("2026-11-26T23:00:05"),
        screen="a",
        origin="rotation",
        queue=(),
        next_change=wall("2026-11-26T23:00:10"),
        screen_on=False,
    ),
]


@pytest.mark.parametrize(
    "r", [*ROTATION, *EMERGENCY, *PLAY_NOW, *SCHEDULES, *GOING_LIVE, *QUEUE, *SCREEN_HOURS]
)
def test_table(r: Row) -> None:
    d = check(r)
    # Deciding again with the cursor it returned, at the same instant, changes nothing.
    assert decide(r.world, d.cursor, r.now) == d


# --------------------------------------------------------------------------- scenarios


def test_emergency_takeover_and_resume_where_it_was() -> None:
    world = World(entries=ROT)
    first = decide(world, Cursor(), NOW)  # P from 0 to 5
    second = decide(world, first.cursor, at(7))  # A from 5, 8 s left at 7
    assert second.screen is not None and second.screen.bulletin.id == "a"

    stormy = replace(world, emergencies=(emergency("em-1", at(7), at(67)),))
    during = decide(stormy, second.cursor, at(7))
    assert during.screen is not None and during.screen.origin == "emergency"
    assert during.cursor == Cursor("a", 8000, None)
    assert decide(stormy, during.cursor, at(40)).cursor == during.cursor

    after = decide(stormy, during.cursor, at(67))  # expired, not yet removed from the world
    assert after.screen is not None and after.screen.bulletin.id == "a"
    assert after.screen.until == at(75)
    assert after.next_change == at(75)
    following = decide(stormy, after.cursor, at(75))
    assert following.screen is not None and following.screen.bulletin.id == "b"


def test_walking_next_change_plays_each_announcement_once_on_time() -> None:
    """Follow next_change for two days, playing the queue head as a stage would."""
    long_a, long_p = (
        bulletin("a", screen_ms=3_000_000),
        bulletin("p", "priority", screen_ms=600_000),
    )
    world = World(
        entries=entries(
            long_a, long_p, NIGHT, MON_0600, bulletin("s", times=["10:00"], speaker=True)
        ),
        screen_hours=DAY,
    )
    cursor, now = Cursor(), utc("2026-11-22T00:05:00Z")  # 07:05 local, Sunday
    played: dict[str, datetime] = {}
    shown: list[tuple[datetime, str]] = []
    while now < utc("2026-11-24T00:00:00Z"):
        d = decide(replace(world, played=frozenset(played)), cursor, now)
        cursor = d.cursor
        if d.screen is not None and (not shown or shown[-1][1] != d.screen.bulletin.id):
            shown.append((now, d.screen.bulletin.id))
        if d.speaker_queue:
            played[d.speaker_queue[0].key] = now
            continue  # decide again at once, as the stage does after each play
        assert d.next_change is not None and d.next_change > now
        now = d.next_change
    assert set(played) == {
        "s@2026-11-22T03:00:00Z",
        "night@2026-11-22T16:59:00Z",
        "night@2026-11-22T17:01:00Z",
        "mon-0600@2026-11-22T23:00:00Z",
        "s@2026-11-23T03:00:00Z",
        "night@2026-11-23T16:59:00Z",
        "night@2026-11-23T17:01:00Z",
    }
    for key, moment in played.items():
        assert moment == utc(key.split("@")[1])  # played the instant it fell due
    # Hourly cycles from 00:05: A shows 02:15-03:05 when the scheduled screen part takes 15 s
    # at 03:00; A then resumes for its last 5 minutes, and P follows.
    ten = utc("2026-11-22T03:00:00Z")
    index = shown.index((ten, "s"))
    assert shown[index - 1] == (utc("2026-11-22T02:15:00Z"), "a")
    assert shown[index + 1] == (ten + timedelta(seconds=15), "a")
    assert shown[index + 2] == (ten + timedelta(minutes=5, seconds=15), "p")


# --------------------------------------------------------------------------- properties

IDS = ["a", "b", "c", "d", "e"]
ZONES = [HCM, BERLIN, ZoneInfo("UTC"), ZoneInfo("Australia/Lord_Howe")]  # Lord Howe: 30 min DST
DAYS = [NOW.date(), date(2026, 3, 29), date(2026, 10, 25), date(2026, 4, 5)]  # DST changes
# Few distinct wall times, so that "now" often meets a schedule or a screen-hours boundary.
HOURS = st.sampled_from([0, 2, 6, 22, 23])
MINUTES = st.sampled_from([0, 1, 30, 59])
CLOCKS = st.builds(lambda h, m: f"{h:02d}:{m:02d}", HOURS, MINUTES)
LEVELS = st.sampled_from([Level.NORMAL, Level.NORMAL, Level.PRIORITY, Level.EMERGENCY])


def near(now: datetime) -> st.SearchStrategy[datetime]:
    """An instant close to ``now`` (seconds) or anywhere within three days."""
    seconds = st.integers(-900, 900) | st.integers(-3 * 86400, 3 * 86400)
    return seconds.map(lambda s: now + timedelta(seconds=s))


@st.composite
def bulletins(
    draw: st.DrawFn, now: datetime, clock: str = "06:00", level: Level | None = None
) -> Bulletin:
    has_screen = draw(st.booleans())
    has_speaker = (not has_screen) or draw(st.booleans())
    valid_from = draw(st.none() | near(now))
    valid_until = draw(st.none() | near(now))
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        valid_until = valid_from + timedelta(seconds=1)
    schedule = None
    if draw(st.integers(0, 2)) == 0:
        every_day = st.just([1, 2, 3, 4, 5, 6, 7])
        schedule = Schedule(
            weekdays=draw(every_day | st.lists(st.integers(1, 7), max_size=7, unique=True)),
            times=draw(st.lists(CLOCKS | st.just(clock), min_size=1, max_size=3)),
        )
    return Bulletin(
        id=draw(st.sampled_from(IDS)),
        title="Bản tin",
        level=level or draw(LEVELS),
        screen=ScreenPart(
            kind="text",
            text="Nội dung",
            duration_ms=draw(st.sampled_from([1000, 5000, 15000, 60000])),
        )
        if has_screen
        else None,
        speaker=SpeakerPart(kind="tts", text="Thông báo") if has_speaker else None,
        valid_from=z(valid_from) if valid_from else None,
        valid_until=z(valid_until) if valid_until else None,
        schedule=schedule,
    )


@st.composite
def scenes(draw: st.DrawFn) -> tuple[World, Cursor, datetime]:
    tz = draw(st.sampled_from(ZONES))
    day = draw(st.sampled_from(DAYS)) + timedelta(days=draw(st.integers(-2, 2)))
    local = datetime.combine(day, time(draw(HOURS), draw(MINUTES)))
    now = local.replace(tzinfo=tz).astimezone(UTC) + timedelta(seconds=draw(st.integers(0, 90)))
    clock = now.astimezone(tz).strftime("%H:%M")  # a schedule time that may be due now
    items = draw(st.lists(st.tuples(bulletins(now, clock), st.integers(0, 3)), max_size=6))
    emergencies = tuple(
        Emergency(
            f"em-{i:08d}",
            draw(bulletins(now, clock, Level.EMERGENCY)),
            draw(st.integers(0, 3)),
            draw(near(now)),
            draw(st.none() | near(now)),
            draw(st.none() | st.sampled_from([10, 60, 600, 3600])),
        )
        for i in range(draw(st.sampled_from([0, 0, 0, 1, 2])))
    )
    plays = tuple(
        PlayNow(
            f"pn-{i:08d}",
            draw(bulletins(now, clock)),
            draw(st.integers(0, 3)),
            draw(near(now)),
            draw(near(now)),
            draw(st.integers(1, 4)),
        )
        for i in range(draw(st.integers(0, 2)))
    )
    hours = None
    if draw(st.booleans()):
        hours = ScreenHours(on=draw(CLOCKS), off=draw(CLOCKS))
    world = World(
        entries=entries(*items),
        screen_hours=hours,
        emergencies=emergencies,
        play_now=plays,
        went_live_at=draw(st.none() | near(now)),
        tz=tz,
        grace_s=draw(st.sampled_from([0, 60, 600, 3600])),
    )
    cursor = Cursor(
        draw(st.none() | st.sampled_from([*IDS, "gone"])),
        draw(st.integers(-1000, 70000)),
        draw(st.none() | near(now)),
    )
    return world, cursor, now


def _same(x: Decision, y: Decision) -> None:
    assert x.screen == y.screen
    assert x.speaker_queue == y.speaker_queue
    assert x.screen_on == y.screen_on
    assert x.cursor == y.cursor


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes(), st.floats(0.0, 1.0, exclude_max=True))
def test_decide_properties(scene: tuple[World, Cursor, datetime], fraction: float) -> None:
    world, cursor, now = scene
    d = decide(world, cursor, now)

    assert d.next_change is None or d.next_change > now
    if d.screen is not None:
        slot = d.screen
        assert slot.until is None or slot.until > now
        if slot.origin in ("rotation", "scheduled"):
            valid_from, valid_until = slot.bulletin.valid_from, slot.bulletin.valid_until
            assert valid_from is None or utc(valid_from) <= now
            assert valid_until is None or now < utc(valid_until)
        if slot.origin == "emergency":
            assert d.screen_on
    keys = [a.key for a in d.speaker_queue]
    assert len(keys) == len(set(keys))
    assert all(a.due <= now and a.key not in world.played for a in d.speaker_queue)

    # The same answer again, with the cursor it returned and the screen's turn recorded as the
    # stage records it, until the next change.
    if d.screen is not None and d.screen.key and world.showing != d.screen.key:
        world = replace(world, showing=d.screen.key, showing_since=now)
        d = decide(world, cursor, now)
    assert decide(world, d.cursor, now) == d
    horizon = d.next_change or now + timedelta(days=2)
    for later in (now + (horizon - now) * fraction, horizon - timedelta(microseconds=1)):
        if now < later < horizon:
            _same(decide(world, d.cursor, later), d)

    # What has been played is not queued again.
    if keys:
        again = decide(replace(world, played=world.played | set(keys)), d.cursor, now)
        assert not set(keys) & {a.key for a in again.speaker_queue}
