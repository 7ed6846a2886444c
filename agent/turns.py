"""Turns on the loudspeakers: what happens when announcements meet (pure).

The loudspeakers play one announcement at a time. ``Turns`` is the state (what speaks, what
waits); ``step`` applies the rules at one instant and returns what to do (start, stop, prepare,
skip); ``finish`` applies a player's report that an announcement ended. Neither reads a clock,
a store or a player: the stage (``agent/stage.py``) feeds them and carries out their actions,
and the table tests drive them with a fake clock.

The rules (``docs/protocol.md`` §24 holds them as a table, generated from ``interrupts``):

1. A higher level interrupts a lower one. An ``emergency.start`` counts as ``emergency`` whatever
   its bulletin's level.
2. An equal or lower level waits behind the one speaking, except that a synchronized
   announcement (a ``play.now`` with ``play_at``) interrupts a non-synchronized one of its own or
   a lower level, ``lead`` before its time, so that every loudspeaker of a group starts together.
3. A technician's ``say`` neither waits nor interrupts: it starts only on idle loudspeakers, and
   any announcement interrupts it.
4. While an emergency is in force (between its repeats too) nothing of a lower level starts, and
   what speaks below it is cut. A live relay of level L holds back what is below L, cuts it, and
   pauses for what is L or above (it is live: it resumes where the broadcast is, not replayed).
5. An announcement interrupted before its end waits to be played again from its start, if its
   level is one of ``replay_levels`` (default normal and priority), within ``replay_within`` of
   the interruption and before its own expiry; an emergency's announcement is always played
   again while its emergency is in force. Its turn comes by precedence, like any other.
6. What waits has a deadline to start: ``grace`` after it was due, or for a synchronized one
   ``tolerance`` after its ``play_at``; past it, it is skipped. At most ``queue_max`` wait: the
   last in precedence falls off. A newer occurrence of a scheduled announcement, or of an
   emergency's repeat, supersedes an older one still waiting.
7. Precedence among those waiting: level, then source, then due time, then program order.

Every call that enters ends in exactly one final outcome: ``completed``, ``failed``,
``interrupted`` without a replay, or ``skipped`` with a reason; an ``interrupted`` with a replay
is followed by the replay's own outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from protocol import Bulletin, Level, format_time, parse_time

EMERGENCY = Level.EMERGENCY.rank
TECHNICIAN = "technician"

SkipReason = Literal[
    "expired_in_queue",
    "superseded",
    "queue_full",
    "late_for_play_at",
    "amplifier_off",
    "cancelled",
]


@dataclass(frozen=True)
class Call:
    """One announcement (one occurrence, one attempt) that wants the loudspeakers."""

    key: str  # unique per occurrence; a replay keeps it
    bulletin: Bulletin
    origin: str  # rotation (a go-live announcement), scheduled, play_now, emergency, technician
    ref: str  # the program topic, or the command id
    level: int  # Level.rank; an emergency.start's is EMERGENCY whatever its bulletin says
    rank: int  # source precedence: 0 = the device's own topic, then its groups
    due: datetime
    start_by: datetime  # it must start before this, or it is skipped
    expires: datetime | None = None  # its own end (command expiry, valid_until)
    play_at: datetime | None = None  # a synchronized start
    order: int = 0  # program order
    seq: int = 0  # repeat number
    attempt: int = 1
    series: str | None = None  # a newer occurrence of the same series supersedes this one

    @property
    def synchronized(self) -> bool:
        return self.play_at is not None

    @property
    def precedence(self) -> tuple[int, int, datetime, int, int, int]:
        # Last, a replay before a first attempt due at the same instant: it was there first.
        return (-self.level, self.rank, self.due, self.order, self.seq, -self.attempt)


@dataclass(frozen=True)
class Policy:
    """The tunable parts of the rules (``[speaker]`` in the configuration)."""

    queue_max: int = 50
    replay_levels: frozenset[int] = frozenset({0, 1})
    replay_within: timedelta = timedelta(hours=1)
    tolerance: timedelta = timedelta(milliseconds=200)
    prepare: timedelta = timedelta(seconds=10)  # a synchronized call is made ready this early
    lead: timedelta = timedelta(seconds=2)  # … and cuts what it interrupts this early


@dataclass(frozen=True)
class Floor:
    """The conditions at an instant, as the stage sees them."""

    emergency: bool = False  # an emergency is in force
    relay_level: int | None = None  # a live relay is wanted, at this level
    amplifier_off: bool = False  # power.set amplifier off: nobody would hear it
    gone: frozenset[str] = frozenset()  # keys whose source ended (an emergency stopped)
    superseded: frozenset[str] = frozenset()  # keys whose bulletin a new program changed

    @property
    def blocked_below(self) -> int | None:
        """Calls below this level neither start nor keep speaking."""
        levels = [EMERGENCY] if self.emergency else []
        if self.relay_level is not None:
            levels.append(self.relay_level)
        return max(levels, default=None)


@dataclass(frozen=True)
class Start:
    call: Call


@dataclass(frozen=True)
class Stop:
    call: Call
    why: str


@dataclass(frozen=True)
class Prepare:
    call: Call


@dataclass(frozen=True)
class Skip:
    call: Call
    reason: SkipReason
    start_error_ms: int | None = None


Action = Start | Stop | Prepare | Skip


@dataclass(frozen=True)
class Turns:
    """Who speaks and who waits."""

    speaking: Call | None = None
    sounded: bool = False  # the speaking call's first sound left (a synchronized one waits first)
    stopping: bool = False  # the speaker was asked to stop it; its end is awaited
    waiting: tuple[Call, ...] = ()
    prepared: frozenset[str] = field(default_factory=frozenset)

    def taken(self) -> set[str]:
        """The keys of the calls speaking or waiting."""
        keys = {c.key for c in self.waiting}
        if self.speaking is not None:
            keys.add(self.speaking.key)
        return keys


@dataclass(frozen=True)
class Ended:
    """How a call that spoke (or was handed over) ended; ``replayed``: it waits again."""

    call: Call
    outcome: Literal["completed", "interrupted", "failed", "skipped"]
    replayed: bool | None = None
    reason: str | None = None
    start_error_ms: int | None = None
    sounded: bool = True  # False: it never made a sound (a synchronized one before its time)


# --------------------------------------------------------------------------- the rules


def interrupts(incoming: Call, current: Call) -> bool:
    """Whether ``incoming`` cuts ``current`` (rules 1–3); otherwise it waits its turn."""
    if incoming.origin == TECHNICIAN:
        return False
    if current.origin == TECHNICIAN or incoming.level > current.level:
        return True
    return incoming.synchronized and not current.synchronized and incoming.level >= current.level


def _blocked(call: Call, floor: Floor) -> bool:
    below = floor.blocked_below
    return below is not None and call.level < below


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


def _may_start(call: Call, now: datetime, policy: Policy) -> bool:
    """Due now; a synchronized call from ``prepare`` before its time (it waits in the player)."""
    if call.play_at is not None:
        return now >= call.play_at - policy.prepare
    return call.due <= now


def _may_cut(call: Call, now: datetime, policy: Policy) -> bool:
    """Due now; a synchronized call cuts what it interrupts only ``lead`` before its time."""
    if call.play_at is not None:
        return now >= call.play_at - policy.lead
    return call.due <= now


@dataclass(frozen=True)
class StepResult:
    turns: Turns
    actions: tuple[Action, ...]
    wake: datetime | None  # when to step again at the latest (None: only on a change)


def step(
    turns: Turns,
    now: datetime,
    arrivals: Iterable[Call],
    floor: Floor,
    policy: Policy,
) -> StepResult:
    """Apply the rules at ``now``, with ``arrivals`` (calls that just became due) added."""
    actions: list[Action] = []
    waiting = list(turns.waiting)
    for call in sorted(arrivals, key=lambda c: c.precedence):
        if call.key in turns.taken() or any(w.key == call.key for w in waiting):
            continue  # already here: the stage may offer a call twice
        if call.series is not None:
            for older in [w for w in waiting if w.series == call.series and w.due < call.due]:
                waiting.remove(older)
                actions.append(Skip(older, "superseded"))
        waiting.append(call)

    for call in list(waiting):
        reason: SkipReason | None = None
        error: int | None = None
        if call.key in floor.gone:
            reason = "cancelled"
        elif call.key in floor.superseded:
            reason = "superseded"
        elif now >= call.start_by or (call.expires is not None and now >= call.expires):
            if call.play_at is not None:
                reason, error = "late_for_play_at", _ms(now - call.play_at)
            else:
                reason = "expired_in_queue"
        if reason is not None:
            waiting.remove(call)
            actions.append(Skip(call, reason, error))

    waiting.sort(key=lambda c: c.precedence)
    speaking, sounded, stopping = turns.speaking, turns.sounded, turns.stopping
    prepared = {k for k in turns.prepared if any(w.key == k for w in waiting)}
    if speaking is not None and not stopping:
        why = _why_stop(speaking, waiting, now, floor, policy)
        if why is not None:
            stopping = True
            actions.append(Stop(speaking, why))
        else:
            for call in waiting:
                if (
                    call.play_at is not None
                    and call.key not in prepared
                    and now >= call.play_at - policy.prepare
                    and not _blocked(call, floor)
                    and interrupts(call, speaking)
                ):
                    prepared.add(call.key)
                    actions.append(Prepare(call))

    if speaking is None:
        while (chosen := _choose(waiting, now, floor, policy)) is not None:
            waiting.remove(chosen)
            if floor.amplifier_off:
                actions.append(Skip(chosen, "amplifier_off"))
                continue
            speaking, sounded, stopping = chosen, False, False
            actions.append(Start(chosen))
            break

    # The bound counts what waits, once the next has been chosen.
    while len(waiting) > policy.queue_max:
        actions.append(Skip(waiting.pop(), "queue_full"))
    prepared &= {c.key for c in waiting}
    new = Turns(speaking, sounded, stopping, tuple(waiting), frozenset(prepared))
    return StepResult(new, tuple(actions), _wake(waiting, now, policy))


def _why_stop(
    speaking: Call, waiting: list[Call], now: datetime, floor: Floor, policy: Policy
) -> str | None:
    if speaking.key in floor.gone:
        return "its source ended"
    if speaking.key in floor.superseded:
        return "a new program withdrew or changed it"
    if floor.amplifier_off:
        return "the amplifier was forced off"
    if _blocked(speaking, floor):
        return "an emergency is in force" if floor.emergency else "a live relay of a higher level"
    for call in waiting:
        if not _blocked(call, floor) and _may_cut(call, now, policy) and interrupts(call, speaking):
            return f"interrupted by {call.key}"
    return None


def _choose(waiting: list[Call], now: datetime, floor: Floor, policy: Policy) -> Call | None:
    """The next to start: the first by precedence, unless a synchronized call that would cut
    it is about to start (it is handed over instead, to be ready on time)."""
    ready = [c for c in waiting if not _blocked(c, floor) and _may_start(c, now, policy)]
    if not ready:
        return None
    best = min(ready, key=lambda c: c.precedence)
    synchronized = [(c.play_at, c) for c in ready if c.play_at is not None]
    for _, sync in sorted(synchronized, key=lambda pair: pair[0]):
        if sync is best or interrupts(sync, best):
            return sync
    return best


def _wake(waiting: list[Call], now: datetime, policy: Policy) -> datetime | None:
    times: list[datetime] = []
    for call in waiting:
        times.append(call.start_by)
        if call.expires is not None:
            times.append(call.expires)
        if call.play_at is not None:
            times += [call.play_at - policy.prepare, call.play_at - policy.lead]
        times.append(call.due)
    return min((t for t in times if t > now), default=None)


def started(turns: Turns, key: str) -> Turns:
    """The speaking call's first sound left."""
    if turns.speaking is None or turns.speaking.key != key:
        return turns
    return replace(turns, sounded=True)


def finish(
    turns: Turns,
    key: str,
    outcome: Literal["completed", "interrupted", "failed", "skipped"],
    now: datetime,
    floor: Floor,
    policy: Policy,
    reason: str | None = None,
    start_error_ms: int | None = None,
) -> tuple[Turns, Ended | None]:
    """The speaker reports that ``key`` ended; returns the new turns and how it ended."""
    call = turns.speaking
    if call is None or call.key != key:
        return turns, None
    rest = replace(turns, speaking=None, sounded=False, stopping=False)
    sounded = turns.sounded or call.play_at is None
    if outcome == "interrupted" and not sounded:
        # A synchronized call stopped while it waited for its time: it was not played; it
        # waits again (and is skipped if it can no longer start on time).
        return replace(rest, waiting=(*rest.waiting, call)), Ended(call, outcome, sounded=False)
    if outcome != "interrupted":
        return rest, Ended(call, outcome, None, reason, start_error_ms, sounded)
    again = replayable(call, now, floor, policy)
    if again is None:
        return rest, Ended(call, "interrupted", False, reason, start_error_ms)
    waiting = (*rest.waiting, again)
    return replace(rest, waiting=waiting), Ended(call, "interrupted", True, reason, start_error_ms)


def replayable(call: Call, now: datetime, floor: Floor, policy: Policy) -> Call | None:
    """The replay of an interrupted call (rule 5), or None when it is not replayed."""
    replays = call.level in policy.replay_levels or call.origin == "emergency"
    if (
        not replays
        or call.origin == TECHNICIAN
        or call.key in floor.gone
        or call.key in floor.superseded
        or (call.expires is not None and call.expires <= now)
    ):
        return None
    start_by = now + policy.replay_within
    if call.expires is not None:
        start_by = min(start_by, call.expires)
    # A replay is not synchronized: its time has passed.
    return replace(call, attempt=call.attempt + 1, play_at=None, start_by=start_by)


def offer(turns: Turns, call: Call, now: datetime, floor: Floor, policy: Policy) -> str | None:
    """Why a technician's ``call`` cannot start now (None: it may, with ``Start``)."""
    if turns.speaking is not None:
        return f"the loudspeakers are playing {turns.speaking.bulletin.id}"
    if any(not _blocked(c, floor) and _may_start(c, now, policy) for c in turns.waiting):
        return "announcements are waiting for the loudspeakers"
    if floor.emergency:
        return "an emergency is in force"
    if _blocked(call, floor):
        return "a live relay of a higher level is on"
    if floor.amplifier_off:
        return "the amplifier is forced off (power.set)"
    return None


# --------------------------------------------------------------------------- persistence


def call_to_json(call: Call) -> dict[str, Any]:
    """A call as JSON (kept in the store so that what waits survives a restart)."""
    return {
        "key": call.key,
        "bulletin": call.bulletin.model_dump(mode="json", exclude_none=True),
        "origin": call.origin,
        "ref": call.ref,
        "level": call.level,
        "rank": call.rank,
        "due": _time(call.due),
        "start_by": _time(call.start_by),
        "expires": _time(call.expires),
        "play_at": _time(call.play_at),
        "order": call.order,
        "seq": call.seq,
        "attempt": call.attempt,
        "series": call.series,
    }


def call_from_json(data: Mapping[str, Any]) -> Call:
    """The inverse of ``call_to_json``; raises ValueError (or KeyError, TypeError) if damaged."""
    return Call(
        key=str(data["key"]),
        bulletin=Bulletin.model_validate(data["bulletin"]),
        origin=str(data["origin"]),
        ref=str(data["ref"]),
        level=int(data["level"]),
        rank=int(data["rank"]),
        due=parse_time(data["due"]),
        start_by=parse_time(data["start_by"]),
        expires=_parse(data.get("expires")),
        play_at=_parse(data.get("play_at")),
        order=int(data.get("order", 0)),
        seq=int(data.get("seq", 0)),
        attempt=int(data.get("attempt", 1)),
        series=None if data.get("series") is None else str(data["series"]),
    )


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # Milliseconds kept: a play_at is compared to the millisecond.
    text = format_time(moment)
    return f"{text[:-1]}.{moment.microsecond // 1000:03d}Z" if moment.microsecond else text


def _parse(value: Any) -> datetime | None:
    return None if value is None else parse_time(str(value))
