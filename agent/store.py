"""The agent's durable state in SQLite (WAL): seen ids, program versions, settings, outbox.

A power cut at any instant leaves either the old or the new state: every change is one
transaction, and the database runs in WAL mode with ``synchronous=FULL``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.schema import StoreTooNew as StoreTooNew  # raised by Store()
from agent.schema import migrate

SEEN_GRACE_S = 86400
# The highest outbox seq ever given (AUTOINCREMENT keeps it in sqlite_sequence).
LAST_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'outbox'"
SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    id TEXT PRIMARY KEY,
    forget_after REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS program_versions (
    topic TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    doc_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS programs (
    topic TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('live', 'pending')),
    doc_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (topic, state)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS playlog_open (
    id TEXT PRIMARY KEY,
    bulletin TEXT NOT NULL,
    channel TEXT NOT NULL,
    ref TEXT,
    started_at TEXT NOT NULL,
    alive_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS playlog_pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    entry TEXT NOT NULL
);
"""
# Schema versions (agent/schema.py): SCHEMA is version 1 and never changes; a later change is
# a new entry here (SQL statements; MIGRATIONS[i] takes version i + 1 to i + 2).
MIGRATIONS: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProgramRow:
    """A verified program document, live or waiting for its content."""

    topic: str
    state: str  # "live" | "pending"
    doc_id: str
    version: int
    payload: bytes  # the signed document as received
    since: float  # POSIX time it went live (live) or was accepted (pending)


@dataclass(frozen=True)
class OpenPlay:
    """A play that started and has not ended yet (see ``agent.playlog``). Times are RFC 3339."""

    id: str
    bulletin: str
    channel: str
    ref: str | None
    started_at: str
    alive_at: str  # the last time the agent was known to be running while this played


# An outbox message as ``record`` takes it: (kind, topic, payload, qos).
OutboxMessage = tuple[str, str, bytes, int]
Settings = Mapping[str, str | None]  # key -> value (None: delete)


@dataclass(frozen=True)
class OutboxItem:
    """A message waiting for the broker's acknowledgement."""

    seq: int
    kind: str
    topic: str
    payload: bytes
    qos: int


@dataclass(frozen=True)
class DiskFull:
    """A time when writes failed for want of space (wall-clock seconds), now over."""

    since: float
    until: float
    failures: int


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full: SQLite's SQLITE_FULL or ENOSPC."""
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (28, 122)  # ENOSPC, EDQUOT


class Store:
    """SQLite-backed state. One connection, guarded by a lock; callers may be any thread."""

    def __init__(self, path: Path, migrations: Sequence[str] = MIGRATIONS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Writes refused for want of space: (first failure, last failure, count) while they
        # fail; once one succeeds again, the episode waits for ``take_disk_full``.
        self._full: tuple[float, float, int] | None = None
        self._full_over: DiskFull | None = None
        with self._lock:
            try:
                migrate(self._db, path, [SCHEMA, *migrations])
            except BaseException:
                self._db.close()
                raise
            self._last_seq = int(self._db.execute(LAST_SEQ).fetchone()[0])
        # Rows the broker acknowledged, removed with the next transaction (see ``delivered``).
        self._done: list[int] = []

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction, which also removes the rows ``delivered`` noted; ``durable`` False
        skips its fsync (still atomic, see ``flush_delivered``)."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                done = list(self._done)
                try:
                    if done:
                        self._db.executemany(
                            "DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in done]
                        )
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException as exc:
                    if self._db.in_transaction:  # not when SQLite rolled back by itself
                        self._db.execute("ROLLBACK")
                    if is_disk_full(exc):
                        now = time.time()
                        first, _, count = self._full or (now, now, 0)
                        self._full = (first, now, count + 1)
                    raise
                del self._done[: len(done)]
                self._last_seq = max(self._last_seq, int(self._db.execute(LAST_SEQ).fetchone()[0]))
                if self._full is not None:
                    first, last, count = self._full
                    self._full, self._full_over = None, DiskFull(first, last, count)
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def take_disk_full(self) -> DiskFull | None:
        """The last time writes failed for want of space, once they succeed again; None when
        there is none (or it was taken already)."""
        with self._lock:
            over, self._full_over = self._full_over, None
            return over

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        # Not written (a full disk): those rows are only sent again after the next start.
        with contextlib.suppress(sqlite3.Error):
            self.flush_delivered()
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ seen ids

    def seen(self, doc_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM seen WHERE id = ?", (doc_id,)))

    def forget_seen_before(self, now: float) -> int:
        """Drop ids whose remembrance period has passed; return how many."""
        with self._tx() as db:
            return db.execute("DELETE FROM seen WHERE forget_after < ?", (now,)).rowcount

    def program_version(self, topic: str) -> int | None:
        rows = self._query("SELECT version FROM program_versions WHERE topic = ?", (topic,))
        return int(rows[0][0]) if rows else None

    def programs(self, state: str) -> list[ProgramRow]:
        """The ``live`` or ``pending`` programs, by topic."""
        rows = self._query(
            "SELECT topic, state, doc_id, version, payload, since FROM programs"
            " WHERE state = ? ORDER BY topic",
            (state,),
        )
        return [
            ProgramRow(str(t), str(s), str(i), int(v), bytes(p), float(at))
            for t, s, i, v, p, at in rows
        ]

    def program_versions(self) -> dict[str, int]:
        rows = self._query("SELECT topic, version FROM program_versions ORDER BY topic")
        return {str(t): int(v) for t, v in rows}

    # ------------------------------------------------------------------ settings

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ outbox

    def record(
        self,
        *,
        seen: tuple[str, float] | None = None,
        program: tuple[str, int, str] | None = None,
        settings: Settings | None = None,
        messages: list[tuple[str, str, bytes, int]] | None = None,
        put_programs: tuple[ProgramRow, ...] = (),
        drop_programs: tuple[tuple[str, str], ...] = (),
        entries: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> None:
        """Apply state changes and queue outgoing messages in one transaction.

        ``seen`` is ``(id, expires_at)``; ``program`` is ``(topic, version, id)``; a setting set
        to None is deleted; ``messages`` are ``(kind, topic, payload, qos)``; ``drop_programs``
        are ``(topic, state)`` rows removed before ``put_programs`` are written; ``entries``
        are finished playlog entries ``(id, json)`` (``skipped`` ones, with the ack that gives
        their announcement up).
        """
        with self._tx() as db:
            if seen is not None:
                doc_id, expires = seen
                db.execute(
                    "INSERT OR REPLACE INTO seen(id, forget_after) VALUES (?, ?)",
                    (doc_id, expires + SEEN_GRACE_S),
                )
            if program is not None:
                db.execute(
                    "INSERT OR REPLACE INTO program_versions(topic, version, doc_id)"
                    " VALUES (?, ?, ?)",
                    program,
                )
            for topic, state in drop_programs:
                db.execute("DELETE FROM programs WHERE topic = ? AND state = ?", (topic, state))
            for row in put_programs:
                db.execute(
                    "INSERT OR REPLACE INTO programs(topic, state, doc_id, version, payload, since)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (row.topic, row.state, row.doc_id, row.version, row.payload, row.since),
                )
            _put_settings(db, settings)
            for entry_id, entry in entries:
                db.execute(
                    "INSERT OR IGNORE INTO playlog_pending(id, entry) VALUES (?, ?)",
                    (entry_id, entry),
                )
            for kind, topic, payload, qos in messages or ():
                db.execute(
                    "INSERT INTO outbox(kind, topic, payload, qos, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (kind, topic, payload, qos, now),
                )

    def enqueue(self, kind: str, topic: str, payload: bytes, qos: int, now: float) -> None:
        self.record(messages=[(kind, topic, payload, qos)], now=now)

    @property
    def last_seq(self) -> int:
        """The highest outbox ``seq`` committed so far (0: none): a courier that has handed
        that one over has nothing new to read."""
        return self._last_seq

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxItem]:
        """Waiting rows after ``after_seq``, oldest first (delivered ones are not waiting)."""
        with self._lock:
            done = set(self._done)
            rows = self._db.execute(
                "SELECT seq, kind, topic, payload, qos FROM outbox WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (after_seq, limit + len(done)),
            ).fetchall()
        items = [OutboxItem(int(s), str(k), str(t), bytes(p), int(q)) for s, k, t, p, q in rows]
        return [item for item in items if item.seq not in done][:limit]

    def delivered(self, seq: int) -> None:
        """Drop a row the broker acknowledged: at once for everything this store answers, on
        disk with the next transaction (or ``flush_delivered``), without a commit of its own.

        If the process dies or power is cut first, the row comes back and is sent again, which
        its id makes harmless; the database itself stays consistent (WAL).
        """
        with self._lock:
            if seq not in self._done:
                self._done.append(seq)

    def flush_delivered(self) -> None:
        """Write the removals ``delivered`` noted, in one commit without its own fsync (the
        next durable commit, or a checkpoint, carries it to disk)."""
        if self._done:
            with self._tx(durable=False):
                pass

    @property
    def unwritten_deliveries(self) -> int:
        """How many removals ``delivered`` noted that are not committed yet."""
        return len(self._done)

    def outbox_size(self) -> int:
        """Rows waiting for the broker's acknowledgement."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE seq NOT IN (SELECT value FROM json_each(?))",
                (json.dumps(self._done),),
            ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ playlog

    def open_play(self, play: OpenPlay, settings: Settings | None = None) -> None:
        """Remember a play that started, durably: a SIGKILL mid-play still yields an entry.

        Every other open play is known to be alive at this instant too. ``settings`` are
        written in the same transaction (as in ``record``).
        """
        with self._tx() as db:
            _put_settings(db, settings)
            db.execute(
                "INSERT INTO playlog_open(id, bulletin, channel, ref, started_at, alive_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (play.id, play.bulletin, play.channel, play.ref, play.started_at, play.alive_at),
            )
            db.execute("UPDATE playlog_open SET alive_at = MAX(alive_at, ?)", (play.started_at,))

    def open_plays(self) -> list[OpenPlay]:
        rows = self._query(
            "SELECT id, bulletin, channel, ref, started_at, alive_at FROM playlog_open"
            " ORDER BY started_at, id"
        )
        return [
            OpenPlay(str(i), str(b), str(c), None if r is None else str(r), str(s), str(a))
            for i, b, c, r, s, a in rows
        ]

    def touch_open_plays(self, alive_at: str) -> None:
        """Note that the open plays were still playing at ``alive_at`` (RFC 3339).

        Without its own fsync, like ``delivered``: a power cut that loses it only makes a
        recovered entry end at the previous heartbeat.
        """
        with self._tx(durable=False) as db:
            db.execute("UPDATE playlog_open SET alive_at = MAX(alive_at, ?)", (alive_at,))

    def end_plays(
        self,
        finish: Callable[[OpenPlay], str],
        ids: Sequence[str] | None = None,
        alive_at: str | None = None,
        settings: Settings | None = None,
    ) -> list[str]:
        """Turn open plays (those of ``ids``, or all) into pending playlog entries.

        ``finish`` makes the entry's JSON; the entry keeps the play's id. One transaction: a
        play is open or pending, never both nor neither. An id that is not open is skipped (it
        ended already), so ending twice records one entry. ``alive_at`` touches the plays that
        stay open. ``settings`` are written in the same transaction. Returns the entries written.
        """
        written: list[str] = []
        with self._tx() as db:
            _put_settings(db, settings)
            if ids is None:
                wanted = [str(r[0]) for r in db.execute("SELECT id FROM playlog_open")]
            else:
                wanted = list(ids)
            for play_id in wanted:
                row = db.execute(
                    "SELECT id, bulletin, channel, ref, started_at, alive_at FROM playlog_open"
                    " WHERE id = ?",
                    (play_id,),
                ).fetchone()
                if row is None:
                    continue
                i, b, c, r, s, a = row
                entry = finish(
                    OpenPlay(str(i), str(b), str(c), None if r is None else str(r), str(s), str(a))
                )
                db.execute("DELETE FROM playlog_open WHERE id = ?", (play_id,))
                db.execute(
                    "INSERT OR IGNORE INTO playlog_pending(id, entry) VALUES (?, ?)",
                    (play_id, entry),
                )
                written.append(entry)
            if alive_at is not None:
                db.execute("UPDATE playlog_open SET alive_at = MAX(alive_at, ?)", (alive_at,))
        return written

    def add_playlog_entry(
        self, entry_id: str, entry: str, settings: Settings | None = None
    ) -> None:
        """A finished entry written at once (what never played: ``skipped``), with
        ``settings`` in the same transaction."""
        with self._tx() as db:
            _put_settings(db, settings)
            db.execute(
                "INSERT OR IGNORE INTO playlog_pending(id, entry) VALUES (?, ?)", (entry_id, entry)
            )

    def playlog_pending_count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM playlog_pending")[0][0])

    def playlog_pending(self, limit: int = 1000) -> list[str]:
        """The JSON of the oldest pending entries (not yet in the outbox)."""
        rows = self._query("SELECT entry FROM playlog_pending ORDER BY seq LIMIT ?", (limit,))
        return [str(r[0]) for r in rows]

    def flush_playlog(
        self,
        limit: int,
        message: Callable[[list[str]], OutboxMessage | None],
        now: float,
    ) -> int:
        """Move up to ``limit`` of the oldest pending entries into one outbox message.

        ``message`` builds it from their JSON (None: nothing worth sending). One transaction:
        each entry is either pending or in the outbox, never both nor neither. Returns how many
        entries left the pending table.
        """
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, entry FROM playlog_pending ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            if not rows:
                return 0
            built = message([str(entry) for _, entry in rows])
            db.execute("DELETE FROM playlog_pending WHERE seq <= ?", (int(rows[-1][0]),))
            if built is not None:
                db.execute(
                    "INSERT INTO outbox(kind, topic, payload, qos, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (*built, now),
                )
            return len(rows)


def _put_settings(db: sqlite3.Connection, settings: Settings | None) -> None:
    """Write settings inside a transaction; a value of None deletes the setting."""
    for key, value in (settings or {}).items():
        if value is None:
            db.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, value))
