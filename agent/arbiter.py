"""Arbitration: what the screen shows and what the speaker plays, as a pure function of time.

``decide(world, cursor, now)`` looks only at its arguments (the merged live programs, the
active overrides, the rotation's place, the clock) and returns a ``Decision`` with the time of
the next change. The director calls it whenever something happens and at each ``next_change``;
tests drive it with a fake clock.

The rules, where PROTOCOL.md leaves a choice:

- An entry is valid while ``valid_from`` ≤ now < ``valid_until``. Several entries with one
  bulletin id (the same bulletin in two programs) count once: the most specific source's.
- Emergencies: the ``emergency.start`` commands in force (``started_at`` ≤ now <
  ``expires_at``) and the valid program entries of level ``emergency`` (whatever their
  schedule), which start at max(``valid_from``, ``went_live_at``). The winner is the most
  specific source, then the most recently started; it is chosen per channel among those that
  have that part (a speaker-only emergency still takes the screen if none has a screen part).
  Only the speaker winner's announcement is queued: its latest occurrence (``started_at``, then
  every ``repeat_every_s``), within grace, never a backlog.
- Screen, by precedence: emergency, then the ``play.now`` screen parts and scheduled occurrences'
  screen parts, then the rotation. Among the middle two the highest level shows; at an equal
  level the one already showing (``World.showing``) keeps the screen and the others wait their
  turn (source, then the earliest start). A ``play.now`` shows for ``duration_ms`` × ``repeat``
  in all (``World.shown`` counts what it has shown, so an interrupted one resumes with the rest);
  it must first show within grace of its ``play_at`` and never after its command expires. A
  scheduled part shows from its due time for its duration (its window does not move). While any
  of them shows, the rotation's cursor is paused where the rotation was when it began. Command
  bulletins ignore their validity windows.
- Announcements: each scheduled bulletin's latest occurrence (local wall time in ``world.tz``,
  ISO weekday of the local date) if within grace; each ``play.now`` with a speaker part,
  ``repeat`` times; each unscheduled speaker part once, due at max(``went_live_at``,
  ``valid_from``). Ordered by level, source, due time, program order. While an emergency is in
  force, only its announcement is in the queue; the others due are reported as ``held`` (the
  stage keeps them waiting, and reports what cannot wait any longer).
- A wall time skipped by a clock change happens at the jump; a repeated one, the first time.
  Screen hours switch at those instants, so a night when clocks go back switches only once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from protocol import Bulletin, Level, ScreenHours, parse_time

Origin = Literal["rotation", "scheduled", "play_now", "emergency"]


@dataclass(frozen=True)
class Entry:
    """A bulletin of a live program, with where it came from."""

    bulletin: Bulletin
    rank: int  # source precedence: 0 = the device's own topic, then its groups in config order
    ref: str  # the program topic it came from
    order: int  # its position in the merged programs (stable tie-break)
    went_live_at: datetime | None = None  # its own program's go-live (default: the world's)


@dataclass(frozen=True)
class Emergency:
    """An ``emergency.start`` in force."""

    id: str
    bulletin: Bulletin
    rank: int
    started_at: datetime
    expires_at: datetime | None
    repeat_every_s: int | None = None


@dataclass(frozen=True)
class PlayNow:
    """A ``play.now``: one bulletin, now or at ``play_at``, ``repeat`` times."""

    id: str
    bulletin: Bulletin
    rank: int
    issued_at: datetime
    play_at: datetime
    repeat: int = 1
    expires_at: datetime | None = None  # the command's own expiry
    synchronized: bool = False  # it came with a ``play_at``


@dataclass(frozen=True)
class World:
    """Everything arbitration depends on, apart from the clock and the rotation's place."""

    entries: tuple[Entry, ...] = ()
    screen_hours: ScreenHours | None = None
    emergencies: tuple[Emergency, ...] = ()
    play_now: tuple[PlayNow, ...] = ()
    went_live_at: datetime | None = None  # when the current merged programs went live
    played: frozenset[str] = frozenset()  # announcement keys already taken in by the stage
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    grace_s: int = 600  # how late a scheduled announcement may still start
    # The screen's turn: ms each play.now has shown so far (its total once it is finished or
    # given up), and the screen slot showing now with the instant it began.
    shown: Mapping[str, int] = field(default_factory=dict)
    showing: str | None = None  # a play.now id, or a scheduled occurrence's key
    showing_since: datetime | None = None


@dataclass(frozen=True)
class Cursor:
    """The screen rotation's place, so that it resumes where it was after an interruption."""

    bulletin_id: str | None = None
    remaining_ms: int = 0  # of the current item, from ``since`` (or at the pause)
    since: datetime | None = None  # when the item (re)started; None while paused


@dataclass(frozen=True)
class ScreenSlot:
    """What the screen shows now."""

    bulletin: Bulletin
    origin: Origin
    ref: str  # program topic, or the command id of a play.now / emergency
    until: datetime | None  # when it ends, if known
    key: str = ""  # play.now id or scheduled occurrence key (``World.showing``)


@dataclass(frozen=True)
class Announcement:
    """One occurrence of a speaker part that is due."""

    bulletin: Bulletin
    origin: Origin
    ref: str
    due: datetime
    key: str  # unique per occurrence: what goes into ``World.played`` once taken in
    rank: int = 0
    order: int = 0
    seq: int = 0
    expires: datetime | None = None  # its own end: the command's expiry, or ``valid_until``


@dataclass(frozen=True)
class Decision:
    """The outcome of arbitration at one instant."""

    screen: ScreenSlot | None
    screen_on: bool
    speaker_queue: tuple[Announcement, ...]  # due now, first = to play next
    cursor: Cursor
    next_change: datetime | None
    held: tuple[Announcement, ...] = ()  # due, but held back by an emergency in force
    emergency: bool = False  # an emergency is in force


# --------------------------------------------------------------------------- decide

SCHEDULE_HORIZON = timedelta(days=8)  # every weekly schedule has an occurrence within it
_MS = timedelta(milliseconds=1)
_ZERO = timedelta(0)


def decide(world: World, cursor: Cursor, now: datetime) -> Decision:
    """What the screen shows and the speaker plays at ``now`` (aware, UTC), and until when.

    Pure: reads only its arguments. The screen shows, by precedence, an emergency, a
    ``play.now``, a scheduled bulletin's screen part, or the rotation; while any of the first
    three shows, the rotation's cursor is paused. The speaker queue holds the announcements due
    now, in play order. ``next_change`` is the earliest instant after ``now`` at which the
    decision may differ (``None``: never, unless the world changes).
    """
    entries = _dedupe(world.entries)
    grace = timedelta(seconds=max(0, world.grace_s))
    changes: list[datetime] = []
    for entry in entries:
        changes.extend(b for b in _bounds(entry.bulletin) if b is not None)
    valid = [e for e in entries if is_valid(e.bulletin, now)]

    alerts = _alerts(world, valid, now, changes)
    play_slots, play_queue = _play_now(world, now, grace, changes)
    sched_slots, sched_queue = _scheduled(world, valid, now, grace, changes)
    live_queue = _live(world, valid, now, grace, changes)
    others = [*play_queue, *sched_queue, *live_queue]
    held: list[_Due] = []

    if alerts:
        screen_alert = next((a for a in alerts if a.bulletin.screen is not None), alerts[0])
        preempt: tuple[ScreenSlot, datetime | None] | None = (
            ScreenSlot(
                screen_alert.bulletin, "emergency", screen_alert.ref, screen_alert.expires_at
            ),
            screen_alert.started_at,
        )
        speaker_alert = next((a for a in alerts if a.bulletin.speaker is not None), None)
        queue = _alert_queue(speaker_alert, now, grace, world.played, changes)
        held = others
    else:
        preempt = _screen_turn(world, [*play_slots, *sched_slots])
        queue = others

    queue.sort(key=lambda d: d.order)
    held.sort(key=lambda d: d.order)
    changes.extend(d.announcement.due + grace for d in (*queue, *held))

    rotation = _rotation_items(valid)
    if preempt is not None:
        slot: ScreenSlot | None = preempt[0]
        new_cursor = _pause(rotation, cursor, preempt[1], now)
    else:
        slot, new_cursor = _rotate(rotation, cursor, now, changes)

    if alerts:
        screen_on = True
    else:
        screen_on, boundary = _screen_power(world.screen_hours, world.tz, now)
        if boundary is not None:
            changes.append(boundary)

    later = [c for c in changes if c > now]
    return Decision(
        screen=slot,
        screen_on=screen_on,
        speaker_queue=tuple(d.announcement for d in queue),
        cursor=new_cursor,
        next_change=min(later, default=None),
        held=tuple(d.announcement for d in held),
        emergency=bool(alerts),
    )


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Alert:
    """An emergency in force, from an ``emergency.start`` or from a program."""

    bulletin: Bulletin
    rank: int
    ref: str  # command id, or program topic
    key_id: str  # what announcement keys start with
    started_at: datetime | None  # None: a program emergency with no known start
    expires_at: datetime | None
    repeat_every_s: int | None


@dataclass(frozen=True)
class _Due:
    """An announcement with its place in the speaker queue."""

    announcement: Announcement
    order: tuple[int, int, datetime, int, int]  # -level, rank, due, entry order, repeat number


def _due(
    bulletin: Bulletin,
    origin: Origin,
    ref: str,
    due: datetime,
    key: str,
    rank: int,
    order: int,
    seq: int = 0,
    expires: datetime | None = None,
) -> _Due:
    return _Due(
        Announcement(bulletin, origin, ref, due, key, rank, order, seq, expires),
        (-bulletin.level.rank, rank, due, order, seq),
    )


@dataclass(frozen=True)
class _ScreenTurn:
    """A ``play.now`` or scheduled screen part that wants the screen now."""

    slot: ScreenSlot
    level: int
    rank: int
    start: datetime  # its play_at or due time: who came first waits least
    preempted_at: datetime  # where the rotation is paused from


def _iso(moment: datetime) -> str:
    """RFC 3339 UTC with ``Z``, keeping microseconds when there are any (keys stay unique)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _bounds(bulletin: Bulletin) -> tuple[datetime | None, datetime | None]:
    start = parse_time(bulletin.valid_from) if bulletin.valid_from else None
    end = parse_time(bulletin.valid_until) if bulletin.valid_until else None
    return start, end


def is_valid(bulletin: Bulletin, moment: datetime) -> bool:
    """``valid_from`` ≤ moment < ``valid_until``; an absent bound is open."""
    start, end = _bounds(bulletin)
    return (start is None or start <= moment) and (end is None or moment < end)


def _dedupe(entries: Iterable[Entry]) -> list[Entry]:
    """One entry per bulletin id: the one from the most specific source (then program order)."""
    best: dict[str, Entry] = {}
    for entry in entries:
        held = best.get(entry.bulletin.id)
        if held is None or (entry.rank, entry.order) < (held.rank, held.order):
            best[entry.bulletin.id] = entry
    return sorted(best.values(), key=lambda e: (e.rank, e.order))


def _duration(bulletin: Bulletin) -> timedelta:
    screen = bulletin.screen
    return timedelta(milliseconds=max(1, screen.duration_ms)) if screen is not None else _ZERO


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _wall_to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The instant at which the local wall clock of ``tz`` reaches ``clock`` on ``day``.

    An ambiguous time (clocks set back) is its first occurrence; a time that does not exist
    (clocks set forward over it) is the instant of the jump, when the wall clock passes it.
    """
    naive = datetime.combine(day, clock)
    instant = naive.replace(tzinfo=tz).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == naive:
        return instant
    # In the gap: fold=1 gives an instant before the jump, fold=0 one after it.
    lo = math.floor(naive.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    hi = math.ceil(instant.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        local = datetime.fromtimestamp(mid, UTC).astimezone(tz).replace(tzinfo=None)
        if local >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


# --------------------------------------------------------------------------- emergencies


def _alerts(
    world: World, valid: list[Entry], now: datetime, changes: list[datetime]
) -> list[_Alert]:
    """The emergencies in force at ``now``, the winner first (source, then the most recent)."""
    alerts: list[_Alert] = []
    for em in world.emergencies:
        if em.started_at > now:
            changes.append(em.started_at)
        elif em.expires_at is None or now < em.expires_at:
            if em.expires_at is not None:
                changes.append(em.expires_at)
            alerts.append(
                _Alert(
                    em.bulletin,
                    em.rank,
                    em.id,
                    em.id,
                    em.started_at,
                    em.expires_at,
                    em.repeat_every_s,
                )
            )
    for entry in valid:
        bulletin = entry.bulletin
        if bulletin.level != Level.EMERGENCY:
            continue
        start, end = _bounds(bulletin)
        known = [t for t in (start, entry.went_live_at or world.went_live_at) if t is not None]
        alerts.append(
            _Alert(
                bulletin, entry.rank, entry.ref, bulletin.id, max(known, default=None), end, None
            )
        )

    def precedence(alert: _Alert) -> tuple[int, float, str]:
        started = alert.started_at.timestamp() if alert.started_at is not None else -math.inf
        return alert.rank, -started, alert.key_id

    return sorted(alerts, key=precedence)


def _alert_queue(
    alert: _Alert | None,
    now: datetime,
    grace: timedelta,
    played: frozenset[str],
    changes: list[datetime],
) -> list[_Due]:
    """The speaker winner's latest occurrence, if due; never a backlog of repeats."""
    if alert is None or alert.started_at is None:
        return []
    due = alert.started_at
    if due > now:  # a program that went live "later" (a clock step): wait for it
        changes.append(due)
        return []
    if alert.repeat_every_s is not None and alert.repeat_every_s > 0:
        every = timedelta(seconds=alert.repeat_every_s)
        due += every * ((now - alert.started_at) // every)
        following = due + every
        if alert.expires_at is None or following < alert.expires_at:
            changes.append(following)
    key = f"{alert.key_id}@{_iso(due)}"
    if due <= now < due + grace and key not in played:
        return [
            _due(
                alert.bulletin,
                "emergency",
                alert.ref,
                due,
                key,
                alert.rank,
                -1,
                0,
                alert.expires_at,
            )
        ]
    return []


# --------------------------------------------------------------------------- play.now


def play_now_remaining(item: PlayNow, world: World, now: datetime) -> timedelta:
    """How much of a ``play.now``'s screen time is left to show (zero: finished or given up)."""
    total = _duration(item.bulletin) * max(1, item.repeat)
    shown = _MS * world.shown.get(item.id, 0)
    if world.showing == item.id and world.showing_since is not None:
        shown += max(_ZERO, now - world.showing_since)
    return max(_ZERO, total - shown)


def play_now_screen_open(item: PlayNow, world: World, now: datetime, grace: timedelta) -> bool:
    """Whether a ``play.now``'s screen part may still take the screen: it must first show
    within grace of its ``play_at``, and never after its command expires."""
    if item.expires_at is not None and now >= item.expires_at:
        return False
    started = item.id in world.shown or world.showing == item.id
    return started or now < item.play_at + grace


def _play_now(
    world: World, now: datetime, grace: timedelta, changes: list[datetime]
) -> tuple[list[_ScreenTurn], list[_Due]]:
    """The ``play.now`` screen parts that want the screen, and the due announcements."""
    turns: list[_ScreenTurn] = []
    queue: list[_Due] = []
    for item in world.play_now:
        bulletin = item.bulletin
        if item.play_at > now:
            changes.append(item.play_at)
            continue
        if bulletin.screen is not None:
            left = play_now_remaining(item, world, now)
            if left > _ZERO and play_now_screen_open(item, world, now, grace):
                showing = world.showing == item.id and world.showing_since is not None
                since = world.showing_since if showing and world.showing_since else now
                end = since + play_now_remaining(item, world, since)
                changes.append(end if showing else now + left)
                if item.id not in world.shown and not showing:
                    changes.append(item.play_at + grace)
                if item.expires_at is not None:
                    changes.append(item.expires_at)
                slot = ScreenSlot(bulletin, "play_now", item.id, end, item.id)
                start = item.play_at if item.id not in world.shown else since
                turns.append(_ScreenTurn(slot, bulletin.level.rank, item.rank, item.play_at, start))
        if bulletin.speaker is not None and now < item.play_at + grace:
            for seq in range(1, max(1, item.repeat) + 1):
                key = f"{item.id}#{seq}"
                if key not in world.played:
                    queue.append(
                        _due(
                            bulletin,
                            "play_now",
                            item.id,
                            item.play_at,
                            key,
                            item.rank,
                            -1,
                            seq,
                            item.expires_at,
                        )
                    )
    return turns, queue


def _screen_turn(
    world: World, turns: list[_ScreenTurn]
) -> tuple[ScreenSlot, datetime | None] | None:
    """Whose turn it is on the screen: the highest level; at an equal level, the one showing
    keeps it, and the others wait by source, then by who came first."""
    if not turns:
        return None
    top = max(t.level for t in turns)
    best = [t for t in turns if t.level == top]
    holder = next((t for t in best if t.slot.key == world.showing), None)
    chosen = holder or min(best, key=lambda t: (t.rank, t.start, t.slot.key))
    return chosen.slot, chosen.preempted_at


# --------------------------------------------------------------------------- schedules


def _occurrences(
    bulletin: Bulletin, tz: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """The scheduled instants in [start, end) that fall inside the validity window."""
    schedule = bulletin.schedule
    if schedule is None or not schedule.weekdays:
        return []
    valid_from, valid_until = _bounds(bulletin)
    clocks = sorted({_clock(t) for t in schedule.times})
    weekdays = set(schedule.weekdays)
    found: set[datetime] = set()
    day = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        if day.isoweekday() in weekdays:  # the local date's ISO weekday
            for clock in clocks:
                instant = _wall_to_utc(day, clock, tz)
                if (
                    start <= instant < end
                    and (valid_from is None or valid_from <= instant)
                    and (valid_until is None or instant < valid_until)
                ):
                    found.add(instant)
        day += timedelta(days=1)
    return sorted(found)


def _scheduled(
    world: World, valid: list[Entry], now: datetime, grace: timedelta, changes: list[datetime]
) -> tuple[list[_ScreenTurn], list[_Due]]:
    """Scheduled bulletins: the latest occurrence of each, on screen and speaker while due."""
    turns: list[_ScreenTurn] = []
    queue: list[_Due] = []
    for entry in valid:
        bulletin = entry.bulletin
        if bulletin.schedule is None or bulletin.level == Level.EMERGENCY:
            continue
        length = _duration(bulletin)
        lookback = max(grace, length)
        times = _occurrences(bulletin, world.tz, now - lookback, now + SCHEDULE_HORIZON)
        past = [t for t in times if t <= now]
        changes.extend(t for t in times[len(past) : len(past) + 1])  # the next one
        if not past:
            continue
        due = past[-1]
        key = f"{bulletin.id}@{_iso(due)}"
        _, valid_until = _bounds(bulletin)
        if bulletin.screen is not None and now < due + length:
            end = due + length if valid_until is None else min(due + length, valid_until)
            changes.append(end)
            slot = ScreenSlot(bulletin, "scheduled", entry.ref, end, key)
            turns.append(_ScreenTurn(slot, bulletin.level.rank, entry.rank, due, due))
        if bulletin.speaker is not None and now < due + grace and key not in world.played:
            queue.append(
                _due(
                    bulletin,
                    "scheduled",
                    entry.ref,
                    due,
                    key,
                    entry.rank,
                    entry.order,
                    0,
                    valid_until,
                )
            )
    return turns, queue


def _live(
    world: World, valid: list[Entry], now: datetime, grace: timedelta, changes: list[datetime]
) -> list[_Due]:
    """Unscheduled speaker parts: announced once when the program goes live (or later, when
    the bulletin becomes valid)."""
    queue: list[_Due] = []
    for entry in valid:
        bulletin = entry.bulletin
        if bulletin.speaker is None or bulletin.schedule is not None:
            continue
        if bulletin.level == Level.EMERGENCY:
            continue
        # Its own program's go-live: a district update does not replay the ward's items.
        live = entry.went_live_at or world.went_live_at
        if live is None:
            continue
        valid_from, _ = _bounds(bulletin)
        due = live if valid_from is None else max(live, valid_from)
        key = f"{bulletin.id}@live:{_iso(live)}"
        if due > now:
            changes.append(due)
        if due <= now < due + grace and key not in world.played:
            _, valid_until = _bounds(bulletin)
            queue.append(
                _due(
                    bulletin,
                    "rotation",
                    entry.ref,
                    due,
                    key,
                    entry.rank,
                    entry.order,
                    0,
                    valid_until,
                )
            )
    return queue


# --------------------------------------------------------------------------- rotation


def _rotation_items(valid: list[Entry]) -> list[Entry]:
    """Unscheduled, non-emergency screen parts: priority first, then source, then order."""
    items = [
        e
        for e in valid
        if e.bulletin.screen is not None
        and e.bulletin.schedule is None
        and e.bulletin.level != Level.EMERGENCY
    ]
    return sorted(items, key=lambda e: (-e.bulletin.level.rank, e.rank, e.order))


def _index(items: list[Entry], bulletin_id: str | None) -> int | None:
    return next((i for i, e in enumerate(items) if e.bulletin.id == bulletin_id), None)


def _remaining(cursor: Cursor, entry: Entry) -> timedelta:
    """The cursor's remaining time, within [0, the item's duration]."""
    return min(max(_ZERO, _MS * cursor.remaining_ms), _duration(entry.bulletin))


def _advance(
    items: list[Entry], index: int, start: datetime, end: datetime, at: datetime
) -> tuple[int, datetime, datetime]:
    """The item showing at ``at``, given that ``items[index]`` shows over [start, end)."""
    if at < end:
        return index, start, end
    moment = end
    index += 1
    while index < len(items) and moment + _duration(items[index].bulletin) <= at:
        moment += _duration(items[index].bulletin)
        index += 1
    if index == len(items):
        # Whole cycles are skipped at once; each cycle restarts with the priority items.
        cycle = sum((_duration(e.bulletin) for e in items), _ZERO)
        moment += cycle * ((at - moment) // cycle)
        index = 0
        while moment + _duration(items[index].bulletin) <= at:
            moment += _duration(items[index].bulletin)
            index += 1
    return index, moment, moment + _duration(items[index].bulletin)


def _rotate(
    items: list[Entry], cursor: Cursor, now: datetime, changes: list[datetime]
) -> tuple[ScreenSlot | None, Cursor]:
    """The rotation's item at ``now``, moving the cursor along (or resuming it)."""
    if not items:
        return None, Cursor()
    index = _index(items, cursor.bulletin_id)
    if index is None:
        index, start = 0, now
        end = now + _duration(items[0].bulletin)
    else:
        start = now if cursor.since is None else min(cursor.since, now)
        end = start + _remaining(cursor, items[index])
    found, start2, end2 = _advance(items, index, start, end, now)
    entry = items[found]
    new_cursor = Cursor(entry.bulletin.id, (end2 - start2) // _MS, start2)
    changes.append(end2)
    _, valid_until = _bounds(entry.bulletin)
    until = end2 if valid_until is None else min(end2, valid_until)
    return ScreenSlot(entry.bulletin, "rotation", entry.ref, until), new_cursor


def _pause(
    items: list[Entry], cursor: Cursor, preempted_at: datetime | None, now: datetime
) -> Cursor:
    """The cursor held where the rotation was when something else took the screen."""
    if not items:
        return Cursor()
    index = _index(items, cursor.bulletin_id)
    if index is None:
        first = items[0]
        return Cursor(first.bulletin.id, _duration(first.bulletin) // _MS, None)
    if cursor.since is None:
        return Cursor(cursor.bulletin_id, _remaining(cursor, items[index]) // _MS, None)
    since = min(cursor.since, now)
    # Where it was when the preemption began (the director may only be asked a little later).
    at = now if preempted_at is None else min(max(since, preempted_at), now)
    found, _, end = _advance(items, index, since, since + _remaining(cursor, items[index]), at)
    return Cursor(items[found].bulletin.id, (end - at) // _MS, None)


# --------------------------------------------------------------------------- screen power


def _screen_power(
    hours: ScreenHours | None, tz: ZoneInfo, now: datetime
) -> tuple[bool, datetime | None]:
    """Whether the screen is powered at ``now``, and the next switching instant.

    Follows the switching instants (each day's ``on`` and ``off`` wall times), so a night on
    which clocks are set back does not switch the screen twice.
    """
    if hours is None or hours.on == hours.off:
        return True, None
    today = now.astimezone(tz).date()
    kinds: dict[datetime, set[bool]] = {}
    for offset in range(-2, 3):
        day = today + timedelta(days=offset)
        kinds.setdefault(_wall_to_utc(day, _clock(hours.on), tz), set()).add(True)
        kinds.setdefault(_wall_to_utc(day, _clock(hours.off), tz), set()).add(False)
    # On and off at the same instant (both inside one clock jump) cancel out.
    switches = sorted((t, next(iter(k))) for t, k in kinds.items() if len(k) == 1)
    state = next((on for t, on in reversed(switches) if t <= now), False)
    upcoming = next((t for t, _ in switches if t > now), None)
    return state, upcoming
