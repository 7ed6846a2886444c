"""agent.playlog: plays become durable entries, batched into outbox messages, recovered at boot.

Every test uses a real Store in tmp_path; a "restart" closes it and opens the same file again
with a new recorder, as the next agent process would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.playlog import FLUSH_AT_PENDING, MAX_ENTRIES, PlaylogRecorder
from agent.store import Store
from protocol import Playlog, PlaylogEntry, Topics

DEVICE = "q10-p12-bang-01"
TOPIC = f"ttcs/v1/dev/{DEVICE}/playlog"
T0 = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)


class Clock:
    """A wall clock that moves only when told to. (Not tests.unit.fakes.FakeClock: importing
    that module imports the director, which these tests do not need.)"""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "agent.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store(db)
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def recorder(store: Store, clock: Clock) -> PlaylogRecorder:
    return PlaylogRecorder(store, DEVICE, Topics("ttcs/v1"), clock)


def boot(store: Store, clock: Clock) -> tuple[PlaylogRecorder, int]:
    """A recorder as the agent makes it at boot, and how many plays it recovered."""
    rec = recorder(store, clock)
    return rec, rec.recover()


def restart(store: Store, db: Path) -> Store:
    store.close()
    return Store(db)


def pending(store: Store) -> list[dict[str, Any]]:
    return [json.loads(e) for e in store.playlog_pending()]


def messages(store: Store) -> list[Playlog]:
    items = store.pending(limit=100_000)
    assert all((i.kind, i.topic, i.qos) == ("playlog", TOPIC, 1) for i in items)
    return [Playlog.model_validate_json(i.payload) for i in items]


def play(rec: PlaylogRecorder, clock: Clock, seconds: float = 15, bulletin: str = "tb-01") -> str:
    token = rec.started(bulletin, "screen")
    clock.advance(seconds)
    rec.ended(token, "completed")
    return token


# --------------------------------------------------------------------------- one play


def test_an_ended_play_is_a_durable_pending_entry(store: Store, db: Path, clock: Clock) -> None:
    rec = recorder(store, clock)
    token = rec.started("tb-2026-1126-01", "speaker", ref="cmd-00000001")
    clock.advance(42)
    entry = rec.ended(token, "completed")
    assert entry == PlaylogEntry(
        id=token,
        bulletin="tb-2026-1126-01",
        channel="speaker",
        started_at=at(0),
        ended_at=at(42),
        outcome="completed",
        ref="cmd-00000001",
    )
    assert store.outbox_size() == 0, "nothing goes to the outbox before a flush"
    store = restart(store, db)
    assert store.playlog_pending_count() == 1
    assert pending(store) == [
        {
            "id": token,
            "bulletin": "tb-2026-1126-01",
            "channel": "speaker",
            "started_at": at(0),
            "ended_at": at(42),
            "outcome": "completed",
            "ref": "cmd-00000001",
        }
    ]
    store.close()


def test_entry_ids_are_unique_and_name_the_device(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    tokens = [rec.started("tb-01", "screen") for _ in range(200)]  # all at the same instant
    assert len(set(tokens)) == 200
    assert all(t.startswith(f"{DEVICE}-") for t in tokens)


def test_optional_fields_are_left_out_when_absent(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    rec.ended(rec.started("tb-01", "screen"), "failed")
    [entry] = pending(store)
    assert set(entry) == {"id", "bulletin", "channel", "started_at", "ended_at", "outcome"}
    assert entry["outcome"] == "failed"


def test_start_error_ms_is_carried(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    entry = rec.ended(rec.started("tb-01", "speaker"), "completed", {"start_error_ms": -12})
    assert entry is not None and entry.start_error_ms == -12
    assert pending(store)[0]["start_error_ms"] == -12


@pytest.mark.parametrize(
    "extra", [{"start_error_ms": 1.5}, {"start_error_ms": "12"}, {"volume": 30}]
)
def test_bad_extra_is_refused_and_the_play_stays_open(
    store: Store, clock: Clock, extra: dict[str, Any]
) -> None:
    rec = recorder(store, clock)
    token = rec.started("tb-01", "speaker")
    with pytest.raises(ValueError, match="extra"):
        rec.ended(token, "completed", extra)
    assert [p.id for p in rec.open_plays()] == [token]
    assert rec.pending_count() == 0
    assert rec.ended(token, "completed") is not None


def test_bad_arguments_are_refused(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    with pytest.raises(ValueError, match="channel"):
        rec.started("tb-01", "radio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bulletin"):
        rec.started("", "screen")
    with pytest.raises(ValueError, match="ref"):
        rec.started("tb-01", "screen", ref="x" * 129)
    token = rec.started("tb-01", "screen")
    with pytest.raises(ValueError, match="outcome"):
        rec.ended(token, "exploded")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_entries"):
        rec.flush(0)
    assert [p.id for p in rec.open_plays()] == [token]


def test_ending_twice_or_an_unknown_token_records_nothing(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    token = rec.started("tb-01", "screen")
    assert rec.ended(token, "completed") is not None
    assert rec.ended(token, "interrupted") is None
    assert rec.ended("no-such-play", "completed") is None
    assert [e["outcome"] for e in pending(store)] == ["completed"]


def test_a_clock_stepped_back_never_ends_a_play_before_it_started(
    store: Store, clock: Clock
) -> None:
    rec = recorder(store, clock)
    token = rec.started("tb-01", "screen")
    clock.advance(-30)  # NTP corrected the clock
    entry = rec.ended(token, "completed")
    assert entry is not None and entry.ended_at == entry.started_at == at(0)


# --------------------------------------------------------------------------- flush


def test_flush_moves_pending_entries_into_one_message(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    tokens = [play(rec, clock, bulletin=f"tb-{n:02d}") for n in range(7)]
    assert rec.pending_count() == 7
    assert rec.flush() == 7
    assert rec.pending_count() == 0
    [message] = messages(store)
    assert message.device == DEVICE
    assert [e.id for e in message.entries] == tokens, "in the order they ended"
    assert [e.bulletin for e in message.entries] == [f"tb-{n:02d}" for n in range(7)]
    payload = json.loads(store.pending()[0].payload)
    assert payload["v"] == 1 and "ref" not in payload["entries"][0]


def test_flush_sends_at_most_max_entries_per_message(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    tokens = [play(rec, clock, seconds=1) for _ in range(2 * MAX_ENTRIES + 30)]
    assert rec.pending_count() >= FLUSH_AT_PENDING
    moved = [rec.flush(), rec.flush(), rec.flush(), rec.flush()]
    assert moved == [MAX_ENTRIES, MAX_ENTRIES, 30, 0]
    sizes = [len(m.entries) for m in messages(store)]
    assert sizes == [MAX_ENTRIES, MAX_ENTRIES, 30], "one message per flush; none when empty"
    assert [e.id for m in messages(store) for e in m.entries] == tokens


def test_flush_with_a_smaller_batch(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    for _ in range(5):
        play(rec, clock)
    assert rec.flush(max_entries=2) == 2
    assert rec.pending_count() == 3
    assert [len(m.entries) for m in messages(store)] == [2]


def test_no_entry_is_lost_or_doubled_across_flushes_and_restarts(
    store: Store, db: Path, clock: Clock
) -> None:
    rec = recorder(store, clock)
    first = [play(rec, clock) for _ in range(3)]
    rec.flush()
    store = restart(store, db)
    rec = recorder(store, clock)
    second = [play(rec, clock) for _ in range(4)]
    rec.flush()
    rec.flush()
    store = restart(store, db)
    rec = recorder(store, clock)
    assert rec.flush() == 0
    ids = [e.id for m in messages(store) for e in m.entries]
    assert ids == first + second
    assert store.playlog_pending_count() == 0
    store.close()


def test_a_failed_flush_moves_nothing(store: Store, clock: Clock) -> None:
    """Taking entries from pending and queueing the message is one transaction."""
    rec = recorder(store, clock)
    play(rec, clock)

    def broken(_entries: list[str]) -> tuple[str, str, bytes, int]:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.flush_playlog(100, broken, now=T0.timestamp())
    assert rec.pending_count() == 1
    assert store.outbox_size() == 0
    assert rec.flush() == 1


def test_an_unreadable_pending_entry_is_dropped_not_stuck(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    token = play(rec, clock)
    with store._tx() as conn:
        conn.execute("INSERT INTO playlog_pending(id, entry) VALUES ('x', '{\"id\": 1}')")
    assert rec.flush() == 2
    [message] = messages(store)
    assert [e.id for e in message.entries] == [token]
    assert rec.flush() == 0


# --------------------------------------------------------------------------- restarts


def test_a_play_open_at_a_crash_is_interrupted_at_the_next_start(
    store: Store, db: Path, clock: Clock
) -> None:
    rec = recorder(store, clock)
    token = rec.started("tb-01", "speaker", ref="emg-00000001")
    clock.advance(30)
    rec.heartbeat()
    clock.advance(15)  # killed here: nothing more is written
    store = restart(store, db)
    clock.advance(9 * 3600)  # the next boot, the next morning
    rec, recovered = boot(store, clock)
    assert recovered == 1
    assert rec.open_plays() == []
    assert pending(store) == [
        {
            "id": token,
            "bulletin": "tb-01",
            "channel": "speaker",
            "started_at": at(0),
            "ended_at": at(30),  # the last heartbeat, not the boot time
            "outcome": "interrupted",
            "ref": "emg-00000001",
        }
    ]
    # The play's token from before the restart ends nothing now.
    assert rec.ended(token, "completed") is None
    assert rec.pending_count() == 1
    store.close()


def test_other_plays_keep_an_open_play_alive(store: Store, db: Path, clock: Clock) -> None:
    rec = recorder(store, clock)
    speaker = rec.started("tb-long", "speaker")
    for _ in range(4):
        play(rec, clock, seconds=15)  # the screen rotates while the speaker plays
    clock.advance(5)
    store = restart(store, db)
    boot(store, clock)
    entries = {e["id"]: e for e in pending(store)}
    assert entries[speaker]["outcome"] == "interrupted"
    assert entries[speaker]["ended_at"] == at(60)
    assert len(entries) == 5
    store.close()


def test_a_play_never_touched_again_ends_when_it_started(
    store: Store, db: Path, clock: Clock
) -> None:
    rec = recorder(store, clock)
    rec.started("tb-01", "screen")
    clock.advance(3600)
    store = restart(store, db)
    boot(store, clock)
    [entry] = pending(store)
    assert entry["started_at"] == entry["ended_at"] == at(0)
    store.close()


def test_recovery_happens_once(store: Store, db: Path, clock: Clock) -> None:
    rec = recorder(store, clock)
    rec.started("tb-01", "screen")
    rec.started("tb-02", "speaker")
    store = restart(store, db)
    rec, recovered = boot(store, clock)
    assert recovered == 2
    assert rec.recover() == 0
    assert boot(store, clock)[1] == 0
    assert store.playlog_pending_count() == 2
    store.close()


def test_recover_never_closes_the_recorders_own_plays(store: Store, clock: Clock) -> None:
    rec = recorder(store, clock)
    token = rec.started("tb-01", "speaker")
    assert rec.recover() == 0
    clock.advance(20)
    entry = rec.ended(token, "completed")
    assert entry is not None and entry.outcome == "completed"


def test_a_fresh_store_recovers_nothing(store: Store, clock: Clock) -> None:
    rec, recovered = boot(store, clock)
    assert recovered == 0
    assert rec.pending_count() == 0
    assert rec.flush() == 0
    assert store.outbox_size() == 0


# --------------------------------------------------------------------------- tick


def test_tick_flushes_everything_and_keeps_open_plays_alive(
    store: Store, db: Path, clock: Clock
) -> None:
    rec = recorder(store, clock)
    speaker = rec.started("tb-long", "speaker")
    for _ in range(MAX_ENTRIES + 1):
        play(rec, clock, seconds=0)
    clock.advance(40)
    rec.tick()
    assert rec.pending_count() == 0
    assert [len(m.entries) for m in messages(store)] == [MAX_ENTRIES, 1]
    clock.advance(5)
    store = restart(store, db)
    boot(store, clock)
    [entry] = pending(store)
    assert (entry["id"], entry["ended_at"]) == (speaker, at(40))
    store.close()
