"""The alert ledger: which CAP alerts were acted on, what each started, and what replaced them.

``plan_alert`` reads it through ``LedgerView`` (so another store can stand in); ``record``
writes a plan once its commands are sent, in one transaction. The SQL is plain (no SQLite-only
statements or functions; times as RFC 3339 text), so that it moves to the control plane's
database, PostgreSQL included, with the placeholders changed and nothing else.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from protocol import format_time, parse_time

if TYPE_CHECKING:
    from controlplane.cap.plan import Plan

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cap_alert (
        sender TEXT NOT NULL,
        identifier TEXT NOT NULL,
        sent TEXT NOT NULL,
        status TEXT NOT NULL,
        msg_type TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        keep_until TEXT NOT NULL,
        PRIMARY KEY (sender, identifier)
    )""",
    """CREATE TABLE IF NOT EXISTS cap_reference (
        sender TEXT NOT NULL,
        identifier TEXT NOT NULL,
        ref_sender TEXT NOT NULL,
        ref_identifier TEXT NOT NULL,
        PRIMARY KEY (sender, identifier, ref_sender, ref_identifier)
    )""",
    "CREATE INDEX IF NOT EXISTS cap_reference_ref ON cap_reference (ref_sender, ref_identifier)",
    """CREATE TABLE IF NOT EXISTS cap_command (
        id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        identifier TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        target TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        stops TEXT,
        stopped_by TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS cap_command_alert ON cap_command (sender, identifier)",
)


class LedgerError(Exception):
    """A plan that cannot be recorded (refused, or recorded already)."""


@dataclass(frozen=True)
class Started:
    """A command an alert started (``emergency.start`` or ``play.now``), as recorded."""

    id: str
    type: str
    target: str
    expires_at: datetime
    stopped_by: str | None


@dataclass(frozen=True)
class Successor:
    """A recorded Update or Cancel that referenced an alert."""

    identifier: str
    msg_type: str


class LedgerView(Protocol):
    """What planning reads from the ledger."""

    def seen(self, sender: str, identifier: str) -> bool:
        """Whether that alert was acted on (recorded) already."""
        ...

    def started(self, sender: str, identifier: str) -> list[Started]:
        """The commands that alert started, stopped or not, expired or not."""
        ...

    def successors(self, sender: str, identifier: str) -> list[Successor]:
        """The recorded Updates and Cancels that referenced that alert, oldest first."""
        ...


class Ledger:
    """The ledger in SQLite (a file, or ``:memory:`` for tests)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        with self._db:
            for statement in _SCHEMA:
                self._db.execute(statement)

    @classmethod
    def open(cls, path: Path | str) -> Ledger:
        """Open (and create if needed) the ledger at ``path``."""
        db = sqlite3.connect(str(path), isolation_level="DEFERRED")
        if str(path) != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")  # a power cut keeps the old or the new state
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def seen(self, sender: str, identifier: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM cap_alert WHERE sender = ? AND identifier = ?", (sender, identifier)
        ).fetchone()
        return row is not None

    def started(self, sender: str, identifier: str) -> list[Started]:
        rows = self._db.execute(
            "SELECT id, type, target, expires_at, stopped_by FROM cap_command"
            " WHERE sender = ? AND identifier = ? AND stops IS NULL ORDER BY seq",
            (sender, identifier),
        ).fetchall()
        return [Started(i, t, target, parse_time(exp), by) for i, t, target, exp, by in rows]

    def successors(self, sender: str, identifier: str) -> list[Successor]:
        rows = self._db.execute(
            "SELECT a.identifier, a.msg_type FROM cap_reference r"
            " JOIN cap_alert a ON a.sender = r.sender AND a.identifier = r.identifier"
            " WHERE r.ref_sender = ? AND r.ref_identifier = ? ORDER BY a.recorded_at",
            (sender, identifier),
        ).fetchall()
        return [Successor(i, t) for i, t in rows]

    # ------------------------------------------------------------------ writing

    def record(self, plan: Plan, now: datetime) -> None:
        """Record a plan whose commands were sent: the alert (acted on once), its references,
        its commands, and the emergencies its stops ended. ``LedgerError`` when refused or
        recorded already."""
        alert = plan.alert
        if plan.refusal is not None or alert is None:
            raise LedgerError(f"a refused plan is not recorded ({plan.refusal})")
        keep = max([plan.keep_until or now] + [c.expires_at for c in plan.commands])
        try:
            with self._db:
                self._db.execute(
                    "INSERT INTO cap_alert (sender, identifier, sent, status, msg_type,"
                    " recorded_at, keep_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        alert.sender,
                        alert.identifier,
                        format_time(alert.sent),
                        str(alert.status),
                        str(alert.msg_type),
                        format_time(now),
                        format_time(keep),
                    ),
                )
                for ref in {(r.sender, r.identifier) for r in alert.references}:
                    self._db.execute(
                        "INSERT INTO cap_reference (sender, identifier, ref_sender,"
                        " ref_identifier) VALUES (?, ?, ?, ?)",
                        (alert.sender, alert.identifier, *ref),
                    )
                for seq, cmd in enumerate(plan.commands):
                    self._db.execute(
                        "INSERT INTO cap_command (id, sender, identifier, seq, type, target,"
                        " expires_at, stops) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            cmd.id,
                            alert.sender,
                            alert.identifier,
                            seq,
                            cmd.type,
                            cmd.target,
                            format_time(cmd.expires_at),
                            cmd.stops,
                        ),
                    )
                    if cmd.stops is not None:
                        self._db.execute(
                            "UPDATE cap_command SET stopped_by = ? WHERE id = ?",
                            (cmd.id, cmd.stops),
                        )
        except sqlite3.IntegrityError:
            raise LedgerError(
                f"alert {alert.identifier!r} of {alert.sender!r} is recorded already"
            ) from None

    def prune(self, before: datetime) -> int:
        """Forget alerts (and their references and commands) to keep until before ``before``;
        the number of alerts forgotten. Keep them at least a day past their expiry: a feed
        that delivers one again later finds it expired anyway."""
        cutoff = format_time(before)
        with self._db:
            gone = self._db.execute(
                "SELECT sender, identifier FROM cap_alert WHERE keep_until < ?", (cutoff,)
            ).fetchall()
            for sender, identifier in gone:
                for table in ("cap_command", "cap_reference", "cap_alert"):
                    self._db.execute(
                        f"DELETE FROM {table} WHERE sender = ? AND identifier = ?",  # noqa: S608 - fixed table names
                        (sender, identifier),
                    )
        return len(gone)
