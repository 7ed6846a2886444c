"""The alert ledger: which CAP alerts were acted on, what each started, and what replaced them.

``plan_alert`` reads it through ``LedgerView`` (so another store can stand in); ``record``
writes a plan once its commands are sent, in one transaction. Its tables (``cap_alert``,
``cap_reference``, ``cap_command``: ``controlplane/migrations.py``) are in the control plane's
store, SQLite or PostgreSQL, beside the commands, acks and playlogs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from controlplane.store import Store
from protocol import format_time, parse_time

if TYPE_CHECKING:
    from controlplane.cap.plan import Plan


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
    """The ledger in the control plane's store (``Store``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, where: Path | str) -> Ledger:
        """Open the store at ``where``: a database URL (``sqlite:PATH``, ``postgresql://…``)
        or an SQLite file's path (``:memory:`` for a dry run), migrated to the latest schema."""
        return cls(Store.open(str(where)))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def seen(self, sender: str, identifier: str) -> bool:
        with self.store.db.transaction() as tx:
            row = tx.one(
                "SELECT 1 FROM cap_alert WHERE sender = ? AND identifier = ?", (sender, identifier)
            )
        return row is not None

    def started(self, sender: str, identifier: str) -> list[Started]:
        with self.store.db.transaction() as tx:
            rows = tx.rows(
                "SELECT id, type, target, expires_at, stopped_by FROM cap_command"
                " WHERE sender = ? AND identifier = ? AND stops IS NULL ORDER BY seq",
                (sender, identifier),
            )
        return [Started(i, t, target, parse_time(exp), by) for i, t, target, exp, by in rows]

    def successors(self, sender: str, identifier: str) -> list[Successor]:
        with self.store.db.transaction() as tx:
            rows = tx.rows(
                "SELECT a.identifier, a.msg_type FROM cap_reference r"
                " JOIN cap_alert a ON a.sender = r.sender AND a.identifier = r.identifier"
                " WHERE r.ref_sender = ? AND r.ref_identifier = ? ORDER BY a.recorded_at",
                (sender, identifier),
            )
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
        with self.store.db.transaction() as tx:
            # ON CONFLICT DO NOTHING (SQLite and PostgreSQL alike): a second recording of the
            # alert changes no row, and the exception below rolls the transaction back.
            added = tx.execute(
                "INSERT INTO cap_alert (sender, identifier, sent, status, msg_type,"
                " recorded_at, keep_until) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (sender, identifier) DO NOTHING",
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
            if not added:
                raise LedgerError(
                    f"alert {alert.identifier!r} of {alert.sender!r} is recorded already"
                )
            for ref in {(r.sender, r.identifier) for r in alert.references}:
                tx.execute(
                    "INSERT INTO cap_reference (sender, identifier, ref_sender,"
                    " ref_identifier) VALUES (?, ?, ?, ?)",
                    (alert.sender, alert.identifier, *ref),
                )
            for seq, cmd in enumerate(plan.commands):
                tx.execute(
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
                    tx.execute(
                        "UPDATE cap_command SET stopped_by = ? WHERE id = ?",
                        (cmd.id, cmd.stops),
                    )

    def prune(self, before: datetime) -> int:
        """Forget alerts (and their references and commands) to keep until before ``before``;
        the number of alerts forgotten. Keep them at least a day past their expiry: a feed
        that delivers one again later finds it expired anyway."""
        cutoff = format_time(before)
        with self.store.db.transaction() as tx:
            gone = tx.rows(
                "SELECT sender, identifier FROM cap_alert WHERE keep_until < ?", (cutoff,)
            )
            for sender, identifier in gone:
                for table in ("cap_command", "cap_reference", "cap_alert"):
                    tx.execute(
                        f"DELETE FROM {table} WHERE sender = ? AND identifier = ?",  # noqa: S608 - fixed table names
                        (sender, identifier),
                    )
        return len(gone)
