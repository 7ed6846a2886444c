"""The agent's durable state in SQLite (WAL): seen ids, program versions, settings, outbox.

A power cut at any instant leaves either the old or the new state: every change is one
transaction, and the database runs in WAL mode with ``synchronous=FULL``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEEN_GRACE_S = 86400
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
"""


@dataclass(frozen=True)
class OutboxItem:
    """A message waiting for the broker's acknowledgement."""

    seq: int
    kind: str
    topic: str
    payload: bytes
    qos: int


class Store:
    """SQLite-backed state. One connection, guarded by a lock; callers may be any thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; ``durable`` False skips its fsync (still atomic, see ``delivered``)."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
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
        settings: dict[str, str | None] | None = None,
        messages: list[tuple[str, str, bytes, int]] | None = None,
        now: float,
    ) -> None:
        """Apply state changes and queue outgoing messages in one transaction.

        ``seen`` is ``(id, expires_at)``; ``program`` is ``(topic, version, id)``; a setting set
        to None is deleted; ``messages`` are ``(kind, topic, payload, qos)``.
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
            for key, value in (settings or {}).items():
                if value is None:
                    db.execute("DELETE FROM settings WHERE key = ?", (key,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, value)
                    )
            for kind, topic, payload, qos in messages or ():
                db.execute(
                    "INSERT INTO outbox(kind, topic, payload, qos, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (kind, topic, payload, qos, now),
                )

    def enqueue(self, kind: str, topic: str, payload: bytes, qos: int, now: float) -> None:
        self.record(messages=[(kind, topic, payload, qos)], now=now)

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxItem]:
        rows = self._query(
            "SELECT seq, kind, topic, payload, qos FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [OutboxItem(int(s), str(k), str(t), bytes(p), int(q)) for s, k, t, p, q in rows]

    def delivered(self, seq: int) -> None:
        """Drop a row the broker acknowledged.

        Committed without its own fsync: the next durable commit (or a checkpoint) carries it
        to disk. If power is cut first, the row comes back and is sent again, which its id makes
        harmless; the database itself stays consistent (WAL). This halves the fsyncs per ack.
        """
        with self._tx(durable=False) as db:
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def outbox_size(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM outbox")[0][0])
