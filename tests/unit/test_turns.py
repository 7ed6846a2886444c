"""The loudspeakers' turns (agent/turns.py): the rules when announcements meet, as tables.

``meeting_table()`` runs the real state machine on every pair of what plays and what arrives,
and docs/protocol.md §24 must hold exactly that table (``python -m tests.unit.test_turns``
prints it). A Hypothesis property drives random sequences of arrivals, interruptions, ends and
conditions, and checks that every call that entered ends in exactly one final outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.turns import (
    EMERGENCY,
    TECHNICIAN,
    Call,
    Ended,
    Floor,
    Policy,
    Prepare,
    Skip,
    Start,
    Stop,
    Turns,
    call_from_json,
    call_to_json,
    finish,
    offer,
    replayable,
    started,
    step,
)
from protocol import Bulletin, Level, SpeakerPart

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
POLICY = Policy()
DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def call(
    key: str,
    level: str = "normal",
    *,
    origin: str = "play_now",
    due: float = 0,
    play_at: float | None = None,
    rank: int = 0,
    grace: float = 600,
    expires: float | None = None,
    series: str | None = None,
    order: int = 0,
) -> Call:
    bulletin = Bulletin(
        id=f"b-{key}",
        title=f"Loa {key}",
        level=Level(level),
        speaker=SpeakerPart(kind="tts", text=f"Thông báo {key}"),
    )
    lvl = EMERGENCY if origin == "emergency" else Level(level).rank
    due_at = at(play_at) if play_at is not None else at(due)
    start_by = (
        at(play_at) + POLICY.tolerance if play_at is not None else due_at + timedelta(seconds=grace)
    )
    return Call(
        key=key,
        bulletin=bulletin,
        origin=origin,
        ref=f"ref-{key}",
        level=lvl,
        rank=rank,
        due=due_at,
        start_by=start_by,
        expires=at(expires) if expires is not None else None,
        play_at=at(play_at) if play_at is not None else None,
        order=order,
        series=series,
    )


def speaking(c: Call, sounded: bool = True) -> Turns:
    return Turns(speaking=c, sounded=sounded)


def kinds(actions: tuple[object, ...]) -> list[tuple[str, str]]:
    out = []
    for a in actions:
        if isinstance(a, Skip):
            out.append(("skip", f"{a.call.key}:{a.reason}"))
        elif isinstance(a, (Start, Stop, Prepare)):
            out.append((type(a).__name__.lower(), a.call.key))
    return out


# --------------------------------------------------------------------------- single rules


def test_a_higher_level_interrupts_and_the_interrupted_one_is_replayed_after() -> None:
    normal = call("n")
    prio = call("p", "priority")
    r = step(speaking(normal), NOW, [prio], Floor(), POLICY)
    assert kinds(r.actions) == [("stop", "n")]
    turns, ended = finish(r.turns, "n", "interrupted", at(1), Floor(), POLICY)
    assert ended is not None and (ended.outcome, ended.replayed) == ("interrupted", True)
    r = step(turns, at(1), [], Floor(), POLICY)
    assert kinds(r.actions) == [("start", "p")]
    turns, _ = finish(r.turns, "p", "completed", at(9), Floor(), POLICY)
    r = step(turns, at(9), [], Floor(), POLICY)
    assert kinds(r.actions) == [("start", "n")]
    assert r.turns.speaking is not None and r.turns.speaking.attempt == 2


def test_an_equal_level_waits_its_turn() -> None:
    r = step(speaking(call("a")), at(1), [call("b", due=1)], Floor(), POLICY)
    assert kinds(r.actions) == []
    assert [c.key for c in r.turns.waiting] == ["b"]
    assert r.wake == at(601)  # its deadline


def test_a_synchronized_call_cuts_a_non_synchronized_one_of_its_level_lead_before_its_time() -> (
    None
):
    sync = call("s", play_at=8)
    r = step(speaking(call("a")), NOW, [sync], Floor(), POLICY)
    assert kinds(r.actions) == [("prepare", "s")]  # within prepare: synthesized ahead
    assert r.wake == at(6)  # play_at - lead
    r = step(r.turns, at(6), [], Floor(), POLICY)
    assert kinds(r.actions) == [("stop", "a")]
    turns, ended = finish(r.turns, "a", "interrupted", at(6), Floor(), POLICY)
    assert ended is not None and ended.replayed is True
    r = step(turns, at(6), [], Floor(), POLICY)
    assert kinds(r.actions) == [("start", "s")]


def test_a_synchronized_call_waits_behind_a_higher_level_and_is_skipped_late() -> None:
    sync = call("s", play_at=5)
    r = step(speaking(call("p", "priority")), NOW, [sync], Floor(), POLICY)
    assert kinds(r.actions) == []
    r = step(r.turns, at(5.2), [], Floor(), POLICY)  # tolerance is 200 ms: still in time
    assert kinds(r.actions) == [("skip", "s:late_for_play_at")]
    [skip] = r.actions
    assert isinstance(skip, Skip) and skip.start_error_ms == 200


def test_a_synchronized_call_does_not_cut_another_synchronized_one() -> None:
    first = call("s1", play_at=0)
    second = call("s2", play_at=3)
    r = step(speaking(first), NOW, [second], Floor(), POLICY)
    r = step(r.turns, at(1), [], Floor(), POLICY)
    assert kinds(r.actions) == []


def test_nothing_starts_that_a_synchronized_call_about_to_start_would_cut() -> None:
    sync = call("s", play_at=8)
    r = step(Turns(), NOW, [sync, call("a")], Floor(), POLICY)
    assert kinds(r.actions) == [("start", "s")]  # handed over now, it waits for its time
    assert [c.key for c in r.turns.waiting] == ["a"]


def test_a_higher_level_starts_before_a_synchronized_call_it_would_not_yield_to() -> None:
    sync = call("s", play_at=8)
    r = step(Turns(), NOW, [sync, call("p", "priority")], Floor(), POLICY)
    assert kinds(r.actions) == [("start", "p")]


def test_an_emergency_start_counts_as_emergency_whatever_its_bulletin_says() -> None:
    alert = call("e", "normal", origin="emergency")
    r = step(speaking(call("p", "priority")), NOW, [alert], Floor(emergency=True), POLICY)
    assert kinds(r.actions) == [("stop", "p")]


def test_while_an_emergency_is_in_force_nothing_lower_starts_and_it_expires_in_the_queue() -> None:
    held = call("n", grace=600)
    r = step(Turns(), NOW, [held], Floor(emergency=True), POLICY)
    assert kinds(r.actions) == []
    r = step(r.turns, at(600), [], Floor(emergency=True), POLICY)
    assert kinds(r.actions) == [("skip", "n:expired_in_queue")]


def test_an_emergency_in_force_cuts_what_speaks_below_it_even_between_its_repeats() -> None:
    r = step(speaking(call("n")), NOW, [], Floor(emergency=True), POLICY)
    assert kinds(r.actions) == [("stop", "n")]


def test_a_stopped_emergency_stops_at_once_and_is_not_replayed() -> None:
    alert = call("e", origin="emergency")
    floor = Floor(gone=frozenset({"e"}))
    r = step(speaking(alert), NOW, [], floor, POLICY)
    assert kinds(r.actions) == [("stop", "e")]
    _, ended = finish(r.turns, "e", "interrupted", NOW, floor, POLICY)
    assert ended is not None and ended.replayed is False


def test_a_waiting_call_whose_source_ended_is_cancelled() -> None:
    turns = Turns(speaking=call("x", "emergency", origin="emergency"), waiting=(call("e2"),))
    r = step(turns, NOW, [], Floor(gone=frozenset({"e2"})), POLICY)
    assert kinds(r.actions) == [("skip", "e2:cancelled")]


def test_replay_levels_and_the_replay_window_and_expiry() -> None:
    prio_off = replace(POLICY, replay_levels=frozenset({0}))
    assert replayable(call("p", "priority"), NOW, Floor(), prio_off) is None
    assert replayable(call("e", "emergency"), NOW, Floor(), POLICY) is None  # default: off
    assert replayable(call("x", expires=-1), NOW, Floor(), POLICY) is None  # expired
    again = replayable(call("n", expires=100), NOW, Floor(), POLICY)
    assert again is not None and again.start_by == at(100)  # never beyond its expiry
    again = replayable(call("n"), NOW, Floor(), POLICY)
    assert again is not None and again.start_by == at(3600)
    sync = replayable(call("s", play_at=0), NOW, Floor(), POLICY)
    assert sync is not None and sync.play_at is None  # a replay is not synchronized


def test_a_replay_that_waits_too_long_is_skipped() -> None:
    turns, _ = finish(speaking(call("n")), "n", "interrupted", NOW, Floor(), POLICY)
    r = step(turns, at(3600), [], Floor(emergency=True), POLICY)
    assert kinds(r.actions) == [("skip", "n:expired_in_queue")]


def test_the_queue_has_a_bound_and_the_last_in_precedence_falls_off() -> None:
    small = replace(POLICY, queue_max=2)
    calls = [call("n1", due=0), call("p1", "priority", due=1), call("n2", due=2)]
    r = step(speaking(call("busy", "priority")), at(2), calls, Floor(), small)
    assert kinds(r.actions) == [("skip", "n2:queue_full")]
    assert [c.key for c in r.turns.waiting] == ["p1", "n1"]


def test_precedence_level_then_source_then_due() -> None:
    calls = [
        call("late", due=0, rank=0),
        call("ward", due=-5, rank=1),
        call("dev", due=-1, rank=0),
        call("prio", "priority", due=0, rank=2),
    ]
    turns = Turns(speaking=call("busy", "emergency", origin="emergency"))
    r = step(turns, NOW, calls, Floor(), POLICY)
    assert [c.key for c in r.turns.waiting] == ["prio", "dev", "late", "ward"]


def test_a_newer_occurrence_supersedes_an_older_one_still_waiting() -> None:
    old = call("sched-0600", due=-60, series="scheduled|t|b")
    new = call("sched-0601", due=0, series="scheduled|t|b")
    turns = Turns(speaking=call("busy", "priority"), waiting=(old,))
    r = step(turns, NOW, [new], Floor(), POLICY)
    assert kinds(r.actions) == [("skip", "sched-0600:superseded")]
    r = step(r.turns, NOW, [], Floor(superseded=frozenset({"sched-0601"})), POLICY)
    assert kinds(r.actions) == [("skip", "sched-0601:superseded")]


def test_amplifier_forced_off_skips_what_would_start() -> None:
    r = step(Turns(), NOW, [call("a"), call("b", due=0)], Floor(amplifier_off=True), POLICY)
    assert kinds(r.actions) == [("skip", "a:amplifier_off"), ("skip", "b:amplifier_off")]


def test_a_priority_relay_holds_normal_calls_and_yields_to_its_level() -> None:
    relay = Floor(relay_level=Level.PRIORITY.rank)
    r = step(Turns(), NOW, [call("n")], relay, POLICY)
    assert kinds(r.actions) == []
    r = step(r.turns, NOW, [call("p", "priority")], relay, POLICY)
    assert kinds(r.actions) == [("start", "p")]
    # And a priority relay that starts cuts a normal call speaking.
    r = step(speaking(call("n2")), NOW, [], relay, POLICY)
    assert kinds(r.actions) == [("stop", "n2")]


def test_a_normal_relay_yields_to_every_announcement() -> None:
    r = step(Turns(), NOW, [call("n")], Floor(relay_level=0), POLICY)
    assert kinds(r.actions) == [("start", "n")]


def test_say_starts_only_on_free_loudspeakers_and_anything_cuts_it() -> None:
    say = replace(call("say"), origin=TECHNICIAN)
    assert offer(Turns(), say, NOW, Floor(), POLICY) is None
    assert "playing" in (offer(speaking(call("a")), say, NOW, Floor(), POLICY) or "")
    assert "waiting" in (offer(Turns(waiting=(call("w"),)), say, NOW, Floor(), POLICY) or "")
    assert "emergency" in (offer(Turns(), say, NOW, Floor(emergency=True), POLICY) or "")
    assert "amplifier" in (offer(Turns(), say, NOW, Floor(amplifier_off=True), POLICY) or "")
    r = step(speaking(say), NOW, [call("n")], Floor(), POLICY)
    assert kinds(r.actions) == [("stop", "say")]
    _, ended = finish(r.turns, "say", "interrupted", NOW, Floor(), POLICY)
    assert ended is not None and ended.replayed is False  # a test is never replayed


def test_a_synchronized_call_stopped_before_its_time_waits_again() -> None:
    sync = call("s", play_at=5)
    turns = speaking(sync, sounded=False)
    turns, ended = finish(turns, "s", "interrupted", at(1), Floor(), POLICY)
    assert ended is not None and ended.sounded is False
    assert [c.key for c in turns.waiting] == ["s"]
    turns = started(Turns(speaking=sync), "s")
    assert turns.sounded


def test_a_call_offered_twice_is_taken_once() -> None:
    c = call("a")
    r = step(speaking(call("busy", "priority")), NOW, [c, c], Floor(), POLICY)
    r = step(r.turns, NOW, [c], Floor(), POLICY)
    assert [w.key for w in r.turns.waiting] == ["a"]


def test_a_call_survives_json() -> None:
    c = call("s", "priority", play_at=1.25, expires=90, series="x")
    assert call_from_json(call_to_json(c)) == c


# --------------------------------------------------------------------------- the pair table

Kind = tuple[
    str, str
]  # (what, level): what in program, play.now, play_at, stream, emergency.start, say
KINDS: list[Kind] = [
    *[("program", lvl) for lvl in ("normal", "priority", "emergency")],
    *[("play.now", lvl) for lvl in ("normal", "priority", "emergency")],
    *[("play_at", lvl) for lvl in ("normal", "priority", "emergency")],
    *[("stream", lvl) for lvl in ("normal", "priority", "emergency")],
    ("emergency.start", "emergency"),
    ("say", "-"),
]
SHORT = {"normal": "N", "priority": "P", "emergency": "E", "-": ""}


def _label(kind: Kind) -> str:
    what, level = kind
    return f"{what} {SHORT[level]}".strip()


def _as_call(kind: Kind, key: str, play_at: float | None = None) -> Call:
    what, level = kind
    if what == "say":
        return replace(call(key), origin=TECHNICIAN)
    if what == "emergency.start":
        return call(key, "normal", origin="emergency")
    if what == "program":
        origin = "emergency" if level == "emergency" else "scheduled"
        return call(key, level, origin=origin)
    if what == "play_at":
        return call(key, level, play_at=play_at if play_at is not None else 8)
    return call(key, level)


def meeting(playing: Kind, arriving: Kind) -> str:
    """What happens when ``arriving`` comes while ``playing`` plays, by running the rules."""
    relay_of = {lvl: Level(lvl).rank for lvl in ("normal", "priority", "emergency")}
    if playing[0] == "stream":
        floor = Floor(relay_level=relay_of[playing[1]])
        if arriving[0] == "stream":
            return "replaces it"
        incoming = _as_call(arriving, "in", play_at=0)
        if arriving[0] == "say":
            return "refused" if offer(Turns(), incoming, NOW, floor, POLICY) else "relay pauses"
        r = step(Turns(), NOW, [incoming], floor, POLICY)
        started_now = any(isinstance(a, Start) for a in r.actions)
        return "relay pauses" if started_now else "held back"
    current = _as_call(playing, "cur", play_at=0)
    turns = Turns(speaking=current, sounded=True)
    if arriving[0] == "stream":
        floor = Floor(relay_level=relay_of[arriving[1]])
        r = step(turns, NOW, [], floor, POLICY)
        return "cuts" if any(isinstance(a, Stop) for a in r.actions) else "waits"
    incoming = _as_call(arriving, "in")
    if arriving[0] == "say":
        return "refused" if offer(turns, incoming, NOW, Floor(), POLICY) else "starts"
    # An emergency (an emergency.start, a program's emergency bulletin) is in force while its
    # announcement plays or comes.
    floor = Floor(emergency="emergency" in (incoming.origin, current.origin))
    when = at(8) - POLICY.lead if incoming.play_at is not None else NOW
    r = step(turns, when, [incoming], floor, POLICY)
    if any(isinstance(a, Stop) for a in r.actions):
        return "cuts at play_at − 2 s" if incoming.play_at is not None else "cuts"
    blocked = floor.blocked_below is not None and incoming.level < floor.blocked_below
    return "held back" if blocked else "waits"


def meeting_table() -> str:
    """The Markdown table of docs/protocol.md §24: rows play, columns arrive."""
    head = "| playing ↓ / arriving → | " + " | ".join(_label(k) for k in KINDS) + " |"
    rule = "|" + "---|" * (len(KINDS) + 1)
    rows = [
        f"| **{_label(p)}** | " + " | ".join(meeting(p, a) for a in KINDS) + " |" for p in KINDS
    ]
    return "\n".join([head, rule, *rows])


def test_the_pair_table_follows_the_written_rules() -> None:
    for playing in KINDS:
        for arriving in KINDS:
            got = meeting(playing, arriving)
            if playing[0] == "stream" or arriving[0] in ("stream", "say"):
                continue  # checked below
            p = _as_call(playing, "p")
            a = _as_call(arriving, "a")
            cuts = (
                playing[0] == "say"
                or a.level > p.level
                or (a.synchronized and not p.synchronized and a.level >= p.level)
            )
            expected = "cuts at play_at − 2 s" if a.synchronized else "cuts"
            held = p.origin == "emergency" and a.level < EMERGENCY
            assert got == (expected if cuts else "held back" if held else "waits"), (
                playing,
                arriving,
            )
    assert meeting(("stream", "normal"), ("play.now", "normal")) == "relay pauses"
    assert meeting(("stream", "priority"), ("play.now", "normal")) == "held back"
    assert meeting(("stream", "priority"), ("play.now", "priority")) == "relay pauses"
    assert meeting(("play.now", "normal"), ("stream", "priority")) == "cuts"
    assert meeting(("play.now", "priority"), ("stream", "priority")) == "waits"
    assert meeting(("say", "-"), ("say", "-")) == "refused"
    assert meeting(("stream", "normal"), ("say", "-")) == "relay pauses"
    assert meeting(("stream", "priority"), ("say", "-")) == "refused"


def test_docs_hold_the_table() -> None:
    assert meeting_table() in DOCS.read_text(encoding="utf-8"), (
        "docs/protocol.md §24 is out of date: paste `python -m tests.unit.test_turns`"
    )


# --------------------------------------------------------------------------- property


@dataclass(frozen=True)
class Op:
    what: Literal["arrive", "end", "tick", "flip"]
    seconds: float
    level: int = 0
    sync: bool = False
    outcome: Literal["completed", "interrupted", "failed", "skipped"] = "completed"


ops = st.lists(
    st.one_of(
        st.builds(
            Op,
            st.just("arrive"),
            st.floats(0, 30),
            st.integers(0, 2),
            st.booleans(),
        ),
        st.builds(
            Op,
            st.just("end"),
            st.floats(0, 30),
            outcome=st.sampled_from(["completed", "interrupted", "failed", "skipped"]),
        ),
        st.builds(Op, st.just("tick"), st.floats(0, 900)),
        st.builds(Op, st.just("flip"), st.floats(0, 30), st.integers(0, 4)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.integers(1, 5))
def test_every_call_ends_in_exactly_one_final_outcome(script: list[Op], queue_max: int) -> None:
    policy = replace(POLICY, queue_max=queue_max, replay_within=timedelta(seconds=120))
    turns, now, floor = Turns(), NOW, Floor()
    finals: dict[str, list[str]] = {}
    entered: set[str] = set()

    def note(key: str, outcome: str) -> None:
        finals.setdefault(key, []).append(outcome)

    def apply(actions: tuple[object, ...]) -> None:
        for a in actions:
            if isinstance(a, Skip):
                note(a.call.key, f"skipped:{a.reason}")

    def ended(e: Ended | None) -> None:
        if e is None or (e.outcome == "interrupted" and not e.sounded):
            return  # not a play: it waits again
        replay = e.outcome == "interrupted" and e.replayed
        note(e.call.key, "interrupted+replay" if replay else e.outcome)

    for n, op in enumerate(script):
        now += timedelta(seconds=op.seconds)
        arrivals: list[Call] = []
        if op.what == "arrive":
            key = f"c{n}"
            entered.add(key)
            level = ("normal", "priority", "emergency")[op.level]
            c = call(key, level, play_at=None, due=0)
            c = replace(
                c,
                due=now,
                start_by=now + timedelta(seconds=60),
                play_at=now + timedelta(seconds=5) if op.sync else None,
            )
            if op.sync:
                c = replace(c, start_by=c.play_at + policy.tolerance if c.play_at else now)
            arrivals.append(c)
        elif op.what == "flip":
            floor = Floor(
                emergency=op.level == 1,
                relay_level=1 if op.level == 2 else None,
                amplifier_off=op.level == 3,
            )
        elif op.what == "end" and turns.speaking is not None:
            key = turns.speaking.key
            outcome = op.outcome
            if outcome == "skipped" and turns.speaking.play_at is None:
                outcome = "completed"  # only a synchronized call is skipped by the speaker
            if outcome == "skipped":
                turns = replace(turns, sounded=False)
            turns, result = finish(turns, key, outcome, now, floor, policy, "late_for_play_at")
            ended(result)
        r = step(turns, now, arrivals, floor, policy)
        apply(r.actions)
        turns = r.turns
        current = turns.speaking
        if current is not None and current.play_at is not None and now >= current.play_at:
            turns = started(turns, current.key)  # a synchronized call sounds at its time

    # Let everything run out: the emergency ends, whatever speaks ends, time passes.
    floor = Floor()
    for _ in range(200):
        current = turns.speaking
        if current is not None:
            turns = started(turns, current.key)
            turns, result = finish(turns, current.key, "completed", now, floor, policy)
            ended(result)
        now += timedelta(seconds=30)
        r = step(turns, now, [], floor, policy)
        apply(r.actions)
        turns = r.turns
        if turns.speaking is None and not turns.waiting:
            break
    assert turns.speaking is None and not turns.waiting

    final_outcomes = {"completed", "failed", "interrupted", "skipped"}
    for key in entered:
        history = finals.get(key, [])
        assert history, f"{key} vanished"
        *before, last = history
        assert all(h == "interrupted+replay" for h in before), (key, history)
        assert last.split(":")[0] in final_outcomes, (key, history)


if __name__ == "__main__":
    print(meeting_table())
