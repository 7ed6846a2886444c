"""agent.playlog on a full disk: plays go on, their writes wait in memory, nothing is lost, and
one ``disk_full`` event is queued once writes succeed again.

The disk is "full" through SQLite's own limit on the database's size (``max_page_count``):
the store then fails with SQLITE_FULL exactly as on a full filesystem.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.playlog import PlaylogRecorder
from agent.store import Store, is_disk_full
from protocol import Topics

DEVICE = "q10-p12-bang-01"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "agent.db")
    yield s
    s.close()


def _limit(store: Store, pages: int | None) -> None:
    db = store._db  # the store's own connection: the limit is per connection
    if pages is None:
        db.execute("PRAGMA max_page_count=1073741823")
    else:
        count = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count={count + pages}")


def _messages(store: Store) -> list[tuple[str, dict[str, object]]]:
    return [(item.kind, json.loads(item.payload)) for item in store.pending(limit=1000)]


def test_plays_on_a_full_disk_are_written_later_and_reported_once(store: Store) -> None:
    recorder = PlaylogRecorder(store, DEVICE, Topics("ttcs/v1"))
    recorder.tick()
    _limit(store, 0)
    tokens = []
    for n in range(200):  # until a write is refused (a page may still have room at first)
        token = recorder.started(f"tb-{n:03d}", "screen")
        entry = recorder.ended(token, "completed")
        assert entry is not None and entry.bulletin == f"tb-{n:03d}"
        tokens.append(token)
        if recorder.backlog():
            break
    assert recorder.backlog(), "the limit never refused a write"
    for n in range(200, 205):  # more plays while full: none raises
        recorder.ended(recorder.started(f"tb-{n:03d}", "screen"), "interrupted")
        recorder.skipped(f"tb-{n:03d}", "speaker", None, "queue_full")
    recorder.tick()  # still full: nothing is written, nothing raises
    assert recorder.backlog() and store.take_disk_full() is None
    _limit(store, None)
    recorder.tick()
    assert recorder.backlog() == 0
    messages = _messages(store)
    entries = [e for kind, m in messages if kind == "playlog" for e in m["entries"]]  # type: ignore[attr-defined]
    bulletins = sorted(e["bulletin"] for e in entries)
    expected = sorted(
        [f"tb-{n:03d}" for n in range(len(tokens))] + [f"tb-{n:03d}" for n in range(200, 205)] * 2
    )
    assert bulletins == expected
    assert len({e["id"] for e in entries}) == len(entries)
    events = [m for kind, m in messages if kind == "event"]
    assert [e["code"] for e in events] == ["disk_full"]
    assert "nothing was lost" in str(events[0]["detail"])
    recorder.tick()
    assert [kind for kind, _ in _messages(store)].count("event") == 1  # once


def test_only_a_full_disk_is_taken_for_one() -> None:
    assert is_disk_full(OSError(28, "No space left on device"))
    assert not is_disk_full(OSError(5, "Input/output error"))
    assert not is_disk_full(sqlite3.OperationalError("no such table: x"))
