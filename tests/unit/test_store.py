"""agent.store: WAL, atomic changes, the outbox, remembering ids, persistence."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.store import SEEN_GRACE_S, Store

T0 = 1_795_500_000.0  # a fixed "now", 2026-11-26


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "agent.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


def other_connection(path: Path) -> sqlite3.Connection:
    """A second reader, as another process (the CLI, a backup) would open the file."""
    return sqlite3.connect(str(path))


def test_wal_mode_and_full_sync(store: Store, db_path: Path) -> None:
    with other_connection(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_creates_its_folder(tmp_path: Path) -> None:
    s = Store(tmp_path / "a" / "b" / "agent.db")
    s.close()
    assert (tmp_path / "a" / "b" / "agent.db").exists()


# --------------------------------------------------------------------------- record()


def test_record_applies_everything_together(store: Store) -> None:
    store.record(
        seen=("doc-00000001", T0 + 3600),
        program=("ttcs/v1/dev/d1/program", 7, "prog-0000007"),
        settings={"volume": "35"},
        messages=[("ack", "ttcs/v1/dev/d1/ack", b'{"status":"done"}', 1)],
        now=T0,
    )
    assert store.seen("doc-00000001")
    assert store.program_version("ttcs/v1/dev/d1/program") == 7
    assert store.program_versions() == {"ttcs/v1/dev/d1/program": 7}
    assert store.get_setting("volume") == "35"
    [item] = store.pending()
    assert (item.kind, item.topic, item.payload, item.qos) == (
        "ack",
        "ttcs/v1/dev/d1/ack",
        b'{"status":"done"}',
        1,
    )


def test_record_is_atomic(store: Store, db_path: Path) -> None:
    """A failure half-way through leaves nothing of the change behind."""
    store.set_setting("volume", "70")
    with pytest.raises(sqlite3.Error):
        store.record(
            seen=("doc-00000002", T0 + 3600),
            program=("ttcs/v1/dev/d1/program", 8, "prog-0000008"),
            settings={"volume": "10"},
            messages=[
                ("ack", "ttcs/v1/dev/d1/ack", b"first", 1),
                ("ack", "ttcs/v1/dev/d1/ack", object(), 1),  # type: ignore[list-item]
            ],
            now=T0,
        )
    assert not store.seen("doc-00000002")
    assert store.program_version("ttcs/v1/dev/d1/program") is None
    assert store.get_setting("volume") == "70"
    assert store.outbox_size() == 0
    # Also as another process sees the file, and the store still works afterwards.
    with other_connection(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM seen").fetchone()[0] == 0
    store.record(settings={"volume": "11"}, now=T0)
    assert store.get_setting("volume") == "11"


def test_record_is_atomic_on_any_exception(store: Store) -> None:
    """Not only database errors: a Python error inside the transaction rolls it back too."""
    with pytest.raises(ValueError):
        store.record(
            seen=("doc-00000009", T0 + 3600),
            settings={"volume": "5"},
            messages=[("ack", "t", b"x")],  # type: ignore[list-item]
            now=T0,
        )
    assert not store.seen("doc-00000009")
    assert store.get_setting("volume") is None
    assert store.outbox_size() == 0


# --------------------------------------------------------------------------- outbox


def test_outbox_keeps_order(store: Store) -> None:
    for n in range(10):
        store.enqueue("playlog", f"t/{n}", str(n).encode(), 1, T0 + n)
    items = store.pending()
    assert [i.payload for i in items] == [str(n).encode() for n in range(10)]
    seqs = [i.seq for i in items]
    assert seqs == sorted(seqs)
    assert [i.topic for i in store.pending(after_seq=seqs[3], limit=3)] == ["t/4", "t/5", "t/6"]
    assert store.outbox_size() == 10


def test_delivered_removes_only_that_row(store: Store) -> None:
    for n in range(3):
        store.enqueue("ack", f"t/{n}", b"x", 1, T0)
    first, second, third = store.pending()
    store.delivered(second.seq)
    assert [i.seq for i in store.pending()] == [first.seq, third.seq]
    store.delivered(second.seq)  # twice is harmless
    assert store.outbox_size() == 2


def test_delivered_rows_leave_the_file_with_the_next_transaction(
    store: Store, db_path: Path
) -> None:
    """A removal costs no commit of its own: it rides on the next transaction."""
    for n in range(3):
        store.enqueue("ack", f"t/{n}", b"x", 1, T0)
    first, second, third = store.pending()
    store.delivered(first.seq)
    store.delivered(second.seq)
    assert store.unwritten_deliveries == 2
    with other_connection(db_path) as conn:  # still in the file, gone for the store's readers
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 3
    assert [i.seq for i in store.pending(limit=1)] == [third.seq]
    assert store.outbox_size() == 1
    store.record(seen=("doc-00000003", T0 + 3600), now=T0)
    assert store.unwritten_deliveries == 0
    with other_connection(db_path) as conn:
        rows = conn.execute("SELECT seq FROM outbox").fetchall()
    assert rows == [(third.seq,)]


def test_delivered_rows_stay_noted_when_the_transaction_fails(store: Store) -> None:
    store.enqueue("ack", "t", b"x", 1, T0)
    [item] = store.pending()
    store.delivered(item.seq)
    with pytest.raises(ValueError):
        store.record(messages=[("ack", "t", b"x")], now=T0)  # type: ignore[list-item]
    assert store.unwritten_deliveries == 1
    assert store.pending() == []
    store.flush_delivered()
    assert store.unwritten_deliveries == 0
    assert store.outbox_size() == 0


def test_close_writes_the_noted_removals(db_path: Path) -> None:
    store = Store(db_path)
    store.enqueue("ack", "t", b"x", 1, T0)
    [item] = store.pending()
    store.delivered(item.seq)
    store.close()
    with other_connection(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_last_seq_follows_the_outbox(store: Store, db_path: Path) -> None:
    assert store.last_seq == 0
    store.enqueue("ack", "t", b"x", 1, T0)
    [item] = store.pending()
    assert store.last_seq == item.seq
    store.delivered(item.seq)
    store.flush_delivered()
    assert store.last_seq == item.seq  # the highest ever, not the highest left
    store.close()
    assert Store(db_path).last_seq == item.seq


def test_sequence_numbers_are_not_reused(store: Store, db_path: Path) -> None:
    store.enqueue("ack", "t", b"1", 1, T0)
    [item] = store.pending()
    store.delivered(item.seq)
    store.close()
    again = Store(db_path)
    again.enqueue("ack", "t", b"2", 1, T0)
    assert again.pending()[0].seq > item.seq
    again.close()


# --------------------------------------------------------------------------- seen ids


def test_seen_ids_are_forgotten_one_day_after_expiry(store: Store) -> None:
    expires = T0 + 3600
    store.record(seen=("doc-00000003", expires), now=T0)
    store.record(seen=("doc-00000004", expires + 10), now=T0)
    assert store.forget_seen_before(expires) == 0
    assert store.forget_seen_before(expires + SEEN_GRACE_S) == 0  # exactly a day: still kept
    assert store.seen("doc-00000003")
    assert store.forget_seen_before(expires + SEEN_GRACE_S + 1) == 1
    assert not store.seen("doc-00000003")
    assert store.seen("doc-00000004")
    assert SEEN_GRACE_S == 86400


# --------------------------------------------------------------------------- persistence


def test_everything_persists_across_reopen(store: Store, db_path: Path) -> None:
    store.set_setting("volume", "42")
    store.record(
        seen=("doc-00000005", T0 + 60),
        program=("ttcs/v1/grp/q10/program", 3, "prog-0000003"),
        messages=[("event", "ttcs/v1/dev/d1/event", "Mất điện".encode(), 1)],
        now=T0,
    )
    store.close()
    reopened = Store(db_path)
    try:
        assert reopened.get_setting("volume") == "42"
        assert reopened.seen("doc-00000005")
        assert reopened.program_versions() == {"ttcs/v1/grp/q10/program": 3}
        assert [i.payload.decode() for i in reopened.pending()] == ["Mất điện"]
    finally:
        reopened.close()


def test_settings(store: Store) -> None:
    assert store.get_setting("volume") is None
    assert store.get_setting("volume", "70") == "70"
    store.set_setting("volume", "20")
    store.set_setting("volume", "25")
    assert store.get_setting("volume") == "25"
    store.record(settings={"volume": None, "restart_ack": "cmd-1"}, now=0.0)
    assert store.get_setting("volume") is None
    assert store.get_setting("restart_ack") == "cmd-1"
