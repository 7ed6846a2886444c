"""The schema, as numbered migrations applied in order when a store is opened.

One schema for both dialects: the statements are portable SQL in which ``{json}``, ``{bool}``
and ``{int}`` stand for the column types that differ (``TEXT``/``JSONB``, ``INTEGER``/
``BOOLEAN``, ``INTEGER``/``BIGINT``); a migration may add statements for one dialect only
(JSON functions differ). ``schema_version`` records each migration applied, with its name and
time. All pending migrations run in one transaction, under a lock (SQLite's write lock,
PostgreSQL's advisory lock), so two collectors starting together on a new database do not race
and a failed upgrade leaves the database as it was.

Rules for a new migration: append it, never edit one that has shipped; add columns as
nullable (old rows have no value) and backfill them from ``raw`` where the devices already sent
the field. Times are kept as integer milliseconds since 1970 (``*_ms``, UTC) next to the text
the device sent; every playlog entry, ack and event also keeps its ``raw`` JSON, so a field the
devices start sending is kept before any migration gives it a column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from controlplane.db import Database, Dialect, Transaction

_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"{json}": "TEXT", "{bool}": "INTEGER", "{int}": "INTEGER"},
    "postgresql": {"{json}": "JSONB", "{bool}": "BOOLEAN", "{int}": "BIGINT"},
}
# Any constant: the key of the advisory lock that serializes migrations on PostgreSQL.
_PG_LOCK_KEY = 0x7474_6373_0001


@dataclass(frozen=True)
class Migration:
    """One step of the schema: portable statements, then the dialect's own."""

    version: int
    name: str
    statements: tuple[str, ...]
    sqlite: tuple[str, ...] = field(default=())
    postgresql: tuple[str, ...] = field(default=())

    def sql(self, dialect: Dialect) -> list[str]:
        """The statements to run on ``dialect``, with its column types."""
        own = self.sqlite if dialect == "sqlite" else self.postgresql
        result = []
        for statement in (*self.statements, *own):
            for macro, sql_type in _TYPES[dialect].items():
                statement = statement.replace(macro, sql_type)
            result.append(statement)
        return result


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "devices, playlog, acks, events, commands",
        (
            # The last state (birth or last will) and status of each device. ``ward`` is the
            # first group of the last state that named groups: a last will names none and
            # must not erase it.
            """CREATE TABLE devices (
                device TEXT PRIMARY KEY,
                ward TEXT,
                groups {json},
                online {bool},
                agent_version TEXT,
                state {json},
                state_ms {int},
                status {json},
                status_ms {int},
                first_seen_ms {int} NOT NULL,
                last_seen_ms {int} NOT NULL
            )""",
            # One row per playlog entry id, whoever delivered it and however often. ``ward`` is
            # the device's ward when the entry was received.
            """CREATE TABLE playlog (
                id TEXT PRIMARY KEY,
                device TEXT NOT NULL,
                ward TEXT,
                bulletin TEXT NOT NULL,
                channel TEXT NOT NULL,
                outcome TEXT NOT NULL,
                started_at TEXT NOT NULL,
                ended_at TEXT NOT NULL,
                started_ms {int} NOT NULL,
                duration_ms {int} NOT NULL,
                ref TEXT,
                start_error_ms {int},
                raw {json} NOT NULL,
                received_ms {int} NOT NULL
            )""",
            "CREATE INDEX playlog_started ON playlog (started_ms)",
            "CREATE INDEX playlog_device ON playlog (device, started_ms)",
            # Acks and events have no id of their own: ``key`` is a hash of the device and the
            # payload, so a redelivered message is stored once.
            """CREATE TABLE acks (
                key TEXT PRIMARY KEY,
                device TEXT NOT NULL,
                cmd TEXT,
                status TEXT NOT NULL,
                reason TEXT,
                detail TEXT NOT NULL,
                at TEXT NOT NULL,
                at_ms {int} NOT NULL,
                topic TEXT,
                raw {json} NOT NULL,
                received_ms {int} NOT NULL
            )""",
            "CREATE INDEX acks_cmd ON acks (cmd)",
            "CREATE INDEX acks_device ON acks (device, at_ms)",
            """CREATE TABLE events (
                key TEXT PRIMARY KEY,
                device TEXT NOT NULL,
                at TEXT NOT NULL,
                at_ms {int} NOT NULL,
                severity TEXT NOT NULL,
                code TEXT NOT NULL,
                detail TEXT NOT NULL,
                raw {json} NOT NULL,
                received_ms {int} NOT NULL
            )""",
            "CREATE INDEX events_device ON events (device, at_ms)",
            # Every signed command and program the control plane sent, as signed.
            """CREATE TABLE commands (
                id TEXT PRIMARY KEY,
                type TEXT NOT NULL,
                target TEXT NOT NULL,
                topic TEXT NOT NULL,
                issued_at TEXT NOT NULL,
                issued_ms {int} NOT NULL,
                expires_at TEXT,
                kid TEXT NOT NULL,
                body {json} NOT NULL,
                document {json} NOT NULL,
                sent_ms {int} NOT NULL
            )""",
            "CREATE INDEX commands_type ON commands (type, issued_ms)",
        ),
    ),
    Migration(
        2,
        "playlog: reason and replayed columns, backfilled from raw",
        (
            "ALTER TABLE playlog ADD COLUMN reason TEXT",
            "ALTER TABLE playlog ADD COLUMN replayed {bool}",
            "CREATE INDEX playlog_outcome ON playlog (outcome, reason)",
        ),
        # Entries stored before these columns existed kept the fields in ``raw``.
        sqlite=(
            """UPDATE playlog SET
                reason = CASE WHEN json_type(raw, '$.reason') = 'text'
                    THEN json_extract(raw, '$.reason') END,
                replayed = CASE json_type(raw, '$.replayed')
                    WHEN 'true' THEN 1 WHEN 'false' THEN 0 END""",
        ),
        postgresql=(
            """UPDATE playlog SET
                reason = CASE WHEN jsonb_typeof(raw -> 'reason') = 'string'
                    THEN raw ->> 'reason' END,
                replayed = CASE WHEN jsonb_typeof(raw -> 'replayed') = 'boolean'
                    THEN (raw -> 'replayed')::boolean END""",
        ),
    ),
    Migration(
        3,
        "the CAP ledger: alerts acted on, their references, the commands they started",
        (
            # One row per alert acted on (sender + identifier: acted on once); times as
            # RFC 3339 text, as the alerts give them.
            """CREATE TABLE cap_alert (
                sender TEXT NOT NULL,
                identifier TEXT NOT NULL,
                sent TEXT NOT NULL,
                status TEXT NOT NULL,
                msg_type TEXT NOT NULL,
                recorded_at TEXT NOT NULL,
                keep_until TEXT NOT NULL,
                PRIMARY KEY (sender, identifier)
            )""",
            """CREATE TABLE cap_reference (
                sender TEXT NOT NULL,
                identifier TEXT NOT NULL,
                ref_sender TEXT NOT NULL,
                ref_identifier TEXT NOT NULL,
                PRIMARY KEY (sender, identifier, ref_sender, ref_identifier)
            )""",
            "CREATE INDEX cap_reference_ref ON cap_reference (ref_sender, ref_identifier)",
            # ``stops``: the command this one ends; ``stopped_by``: the one that ended it.
            """CREATE TABLE cap_command (
                id TEXT PRIMARY KEY,
                sender TEXT NOT NULL,
                identifier TEXT NOT NULL,
                seq {int} NOT NULL,
                type TEXT NOT NULL,
                target TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                stops TEXT,
                stopped_by TEXT
            )""",
            "CREATE INDEX cap_command_alert ON cap_command (sender, identifier)",
        ),
    ),
)
LATEST = MIGRATIONS[-1].version


class SchemaError(Exception):
    """The database's schema is not one this code can use."""


def current_version(tx: Transaction) -> int:
    """The schema version of the database (0: empty)."""
    row = tx.one("SELECT MAX(version) FROM schema_version")
    return int(row[0]) if row is not None and row[0] is not None else 0


def migrate(db: Database, target: int = LATEST) -> tuple[int, int]:
    """Bring the database to schema ``target`` (default: the latest); return (before, after).

    A database already at or past ``target`` is left alone; one newer than this code knows
    raises ``SchemaError`` (an older control plane must not write to a newer schema).
    """
    if not 0 <= target <= LATEST:
        raise ValueError(f"no schema version {target} (latest is {LATEST})")
    with db.transaction() as tx:
        if tx.dialect == "postgresql":
            tx.one("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK_KEY,))
        tx.execute(
            """CREATE TABLE IF NOT EXISTS schema_version (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TEXT NOT NULL
            )"""
        )
        before = current_version(tx)
        if before > LATEST:
            raise SchemaError(
                f"the database is at schema version {before}, newer than this control plane "
                f"knows ({LATEST}): upgrade ttcs-control"
            )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for migration in MIGRATIONS:
            if before < migration.version <= target:
                for statement in migration.sql(tx.dialect):
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now),
                )
        return before, max(before, target)
