"""The control plane's store: everything it keeps, in SQLite or PostgreSQL (``controlplane.db``).

``Store.open(url)`` connects and brings the schema up to date (``controlplane.migrations``).
Writers:

- ``ingest(reports)``: what collectors read from the broker (``controlplane.ingest.parse``), in
  one transaction. It is committed, durably, when it returns: only then may the caller send the
  broker its PUBACKs. Playlog entries are stored once per id, acks and events once per payload,
  so a message delivered twice (a lost PUBACK, a collector killed after its commit) changes
  nothing the second time.
- ``record_command(document, topic)``: a signed command or program, before it is published.

Readers: ``fleet()`` (the shape ``ttcs-control fleet`` prints), ``devices()``, ``acks_for()``,
``events()``, ``playlog_ids()``; the reports are in ``controlplane.report``.

Several collectors may write at once. Rows are written in one order in every transaction
(devices, then entries, acks and events, each sorted by key), so two transactions never wait
for each other in a cycle; a PostgreSQL deadlock or serialization failure all the same is
retried (``Conflict``). A state or status older than the stored one (received earlier, written
later by a slower collector) does not replace it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controlplane.db import Conflict, Database, Transaction, connect
from controlplane.ingest import (
    AckReport,
    EventReport,
    PlaylogReport,
    Report,
    StateReport,
    StatusReport,
)
from controlplane.migrations import LATEST, current_version, migrate
from protocol import parse_time

log = logging.getLogger(__name__)

_CONFLICT_RETRIES = 5


@dataclass
class Ingested:
    """What one ``ingest`` stored."""

    messages: int = 0
    entries: int = 0  # new playlog entries
    duplicates: int = 0  # playlog entries stored before (same id)
    bad_entries: int = 0
    states: int = 0
    statuses: int = 0
    acks: int = 0  # new acks
    events: int = 0  # new events
    devices: set[str] = field(default_factory=set)

    def add(self, other: Ingested) -> None:
        """Add ``other``'s counts to these."""
        for name in ("messages", "entries", "duplicates", "bad_entries", "states", "statuses"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.acks += other.acks
        self.events += other.events
        self.devices |= other.devices


@dataclass(frozen=True)
class DeviceRow:
    """A device as the store knows it."""

    device: str
    ward: str | None
    online: bool | None
    agent_version: str | None
    first_seen_ms: int
    last_seen_ms: int


@dataclass(frozen=True)
class AckRow:
    """A stored ack."""

    device: str
    cmd: str | None
    status: str
    reason: str | None
    detail: str
    at: str


@dataclass(frozen=True)
class EventRow:
    """A stored event."""

    device: str
    at: str
    severity: str
    code: str
    detail: str


@dataclass
class _DeviceUpdate:
    """What one ingest learned about one device (the latest state and status of the batch)."""

    seen_first: int
    seen_last: int
    state: StateReport | None = None
    status: StatusReport | None = None
    # From the latest state of the batch that named them: a last will after a birth in the
    # same batch must not erase the ward.
    ward: str | None = None
    groups: str | None = None
    agent_version: str | None = None
    named_ms: int = -1


def now_ms() -> int:
    """The current time in milliseconds since 1970 (the store's ``*_ms``)."""
    return time.time_ns() // 1_000_000


class Store:
    """The control plane's database, at the latest schema (``Store.open``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, url: str, *, schema: int = LATEST) -> Store:
        """Connect to ``url`` and migrate it to ``schema`` (the latest unless a test says)."""
        db = connect(url)
        try:
            migrate(db, schema)
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        """The database's schema version."""
        with self.db.transaction() as tx:
            return current_version(tx)

    # ------------------------------------------------------------------ writing

    def ingest(self, reports: Sequence[Report]) -> Ingested:
        """Store ``reports`` in one transaction, committed when this returns.

        Raises ``controlplane.db.DatabaseError`` when the database fails: nothing is stored
        then, and the caller must not acknowledge the messages.
        """
        for attempt in range(_CONFLICT_RETRIES):
            try:
                with self.db.transaction() as tx:
                    return _ingest(tx, reports)
            except Conflict as exc:
                if attempt == _CONFLICT_RETRIES - 1:
                    raise
                log.info("ingest lost a race (%s); running it again", exc)
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def record_command(
        self, document: Mapping[str, Any], topic: str, sent_at: datetime | None = None
    ) -> bool:
        """Keep a signed command or program as sent; False when its id was recorded before."""
        issued_ms = int(parse_time(str(document["issued_at"])).timestamp() * 1000)
        sent = sent_at or datetime.now(UTC)
        with self.db.transaction() as tx:
            return (
                tx.execute(
                    """INSERT INTO commands (id, type, target, topic, issued_at, issued_ms,
                        expires_at, kid, body, document, sent_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO NOTHING""",
                    (
                        str(document["id"]),
                        str(document["type"]),
                        str(document["target"]),
                        topic,
                        str(document["issued_at"]),
                        issued_ms,
                        document.get("expires_at"),
                        str(document["kid"]),
                        _json(document.get("body", {})),
                        _json(document),
                        int(sent.timestamp() * 1000),
                    ),
                )
                == 1
            )

    # ------------------------------------------------------------------ reading

    def fleet(self) -> dict[str, dict[str, Any]]:
        """Every device's last ``state`` and ``status`` message, by device id.

        The shape ``ttcs-control fleet`` builds from retained messages today:
        ``{device: {"state": {...}, "status": {...}}}``, a key only where one was received.
        """
        fleet: dict[str, dict[str, Any]] = {}
        with self.db.transaction() as tx:
            for device, state, status in tx.rows(
                "SELECT device, state, status FROM devices ORDER BY device"
            ):
                entry = fleet.setdefault(device, {})
                if state is not None:
                    entry["state"] = json.loads(state)
                if status is not None:
                    entry["status"] = json.loads(status)
        return fleet

    def devices(self) -> list[DeviceRow]:
        """Every device seen, by id."""
        with self.db.transaction() as tx:
            rows = tx.rows(
                """SELECT device, ward, online, agent_version, first_seen_ms, last_seen_ms
                FROM devices ORDER BY device"""
            )
        return [
            DeviceRow(d, w, None if o is None else bool(o), v, int(f), int(la))
            for d, w, o, v, f, la in rows
        ]

    def acks_for(self, cmd: str) -> list[AckRow]:
        """The acks of command ``cmd``, by device and time."""
        with self.db.transaction() as tx:
            rows = tx.rows(
                """SELECT device, cmd, status, reason, detail, at FROM acks WHERE cmd = ?
                ORDER BY device, at_ms, received_ms""",
                (cmd,),
            )
        return [AckRow(*row) for row in rows]

    def events(
        self, device: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[EventRow]:
        """The latest ``limit`` events (of one device, since a time), newest first."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if device is not None:
            where.append("device = ?")
            params.append(device)
        if since is not None:
            where.append("at_ms >= ?")
            params.append(int(since.timestamp() * 1000))
        with self.db.transaction() as tx:
            rows = tx.rows(
                f"""SELECT device, at, severity, code, detail FROM events
                WHERE {" AND ".join(where)} ORDER BY at_ms DESC, key LIMIT ?""",  # noqa: S608
                (*params, int(limit)),
            )
        return [EventRow(*row) for row in rows]

    def playlog_ids(self) -> list[str]:
        """Every stored playlog entry id, sorted (for checks and tests)."""
        with self.db.transaction() as tx:
            return [str(r[0]) for r in tx.rows("SELECT id FROM playlog ORDER BY id")]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _ingest(tx: Transaction, reports: Iterable[Report]) -> Ingested:
    done = Ingested()
    updates: dict[str, _DeviceUpdate] = {}
    playlogs: list[PlaylogReport] = []
    acks: list[AckReport] = []
    events: list[EventReport] = []
    for report in reports:
        done.messages += 1
        done.devices.add(report.device)
        update = updates.get(report.device)
        if update is None:
            update = updates[report.device] = _DeviceUpdate(report.received_ms, report.received_ms)
        update.seen_first = min(update.seen_first, report.received_ms)
        update.seen_last = max(update.seen_last, report.received_ms)
        if isinstance(report, StateReport):
            done.states += 1
            if update.state is None or report.received_ms >= update.state.received_ms:
                update.state = report
            if report.ward is not None and report.received_ms >= update.named_ms:
                update.ward, update.groups = report.ward, report.groups
                update.agent_version = report.agent_version or update.agent_version
                update.named_ms = report.received_ms
        elif isinstance(report, StatusReport):
            done.statuses += 1
            if update.status is None or report.received_ms >= update.status.received_ms:
                update.status = report
        elif isinstance(report, PlaylogReport):
            playlogs.append(report)
            done.bad_entries += report.bad_entries
        elif isinstance(report, AckReport):
            acks.append(report)
        else:
            events.append(report)

    # One order of writes in every transaction (see the module docstring).
    for device in sorted(updates):
        _upsert_device(tx, device, updates[device])
    entries = sorted(
        ((e, p.device, p.received_ms) for p in playlogs for e in p.entries), key=lambda t: t[0].id
    )
    for entry, device, received_ms in entries:
        inserted = tx.execute(
            """INSERT INTO playlog (id, device, ward, bulletin, channel, outcome, started_at,
                ended_at, started_ms, duration_ms, ref, start_error_ms, reason, replayed, raw,
                received_ms)
            VALUES (?, ?, (SELECT ward FROM devices WHERE device = ?), ?, ?, ?, ?, ?, ?, ?, ?,
                ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO NOTHING""",
            (
                entry.id,
                device,
                device,
                entry.bulletin,
                entry.channel,
                entry.outcome,
                entry.started_at,
                entry.ended_at,
                entry.started_ms,
                entry.duration_ms,
                entry.ref,
                entry.start_error_ms,
                entry.reason,
                entry.replayed,
                entry.raw,
                received_ms,
            ),
        )
        done.entries += inserted
        done.duplicates += 1 - inserted
    for ack in sorted(acks, key=lambda a: a.key):
        done.acks += tx.execute(
            """INSERT INTO acks (key, device, cmd, status, reason, detail, at, at_ms, topic, raw,
                received_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (key) DO NOTHING""",
            (
                ack.key,
                ack.device,
                ack.cmd,
                ack.status,
                ack.reason,
                ack.detail,
                ack.at,
                ack.at_ms,
                ack.topic,
                ack.raw,
                ack.received_ms,
            ),
        )
    for event in sorted(events, key=lambda e: e.key):
        done.events += tx.execute(
            """INSERT INTO events (key, device, at, at_ms, severity, code, detail, raw,
                received_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (key) DO NOTHING""",
            (
                event.key,
                event.device,
                event.at,
                event.at_ms,
                event.severity,
                event.code,
                event.detail,
                event.raw,
                event.received_ms,
            ),
        )
    return done


# A stored state or status is replaced only by one received at the same time or later.
_NEWER_STATE = "excluded.state_ms IS NOT NULL AND (devices.state_ms IS NULL OR excluded.state_ms >= devices.state_ms)"  # noqa: E501
_NEWER_STATUS = "excluded.status_ms IS NOT NULL AND (devices.status_ms IS NULL OR excluded.status_ms >= devices.status_ms)"  # noqa: E501
_UPSERT_DEVICE = f"""INSERT INTO devices (device, ward, groups, online, agent_version, state,
        state_ms, status, status_ms, first_seen_ms, last_seen_ms)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (device) DO UPDATE SET
        ward = CASE WHEN {_NEWER_STATE} AND excluded.ward IS NOT NULL
            THEN excluded.ward ELSE devices.ward END,
        groups = CASE WHEN {_NEWER_STATE} AND excluded.groups IS NOT NULL
            THEN excluded.groups ELSE devices.groups END,
        online = CASE WHEN {_NEWER_STATE} THEN excluded.online ELSE devices.online END,
        agent_version = CASE WHEN {_NEWER_STATE} AND excluded.agent_version IS NOT NULL
            THEN excluded.agent_version ELSE devices.agent_version END,
        state = CASE WHEN {_NEWER_STATE} THEN excluded.state ELSE devices.state END,
        state_ms = CASE WHEN {_NEWER_STATE} THEN excluded.state_ms ELSE devices.state_ms END,
        status = CASE WHEN {_NEWER_STATUS} THEN excluded.status ELSE devices.status END,
        status_ms = CASE WHEN {_NEWER_STATUS}
            THEN excluded.status_ms ELSE devices.status_ms END,
        first_seen_ms = CASE WHEN excluded.first_seen_ms < devices.first_seen_ms
            THEN excluded.first_seen_ms ELSE devices.first_seen_ms END,
        last_seen_ms = CASE WHEN excluded.last_seen_ms > devices.last_seen_ms
            THEN excluded.last_seen_ms ELSE devices.last_seen_ms END"""  # noqa: S608 (no input)


def _upsert_device(tx: Transaction, device: str, update: _DeviceUpdate) -> None:
    state, status = update.state, update.status
    tx.execute(
        _UPSERT_DEVICE,
        (
            device,
            update.ward,
            update.groups,
            state.online if state else None,
            state.agent_version if state and state.agent_version else update.agent_version,
            state.raw if state else None,
            state.received_ms if state else None,
            status.raw if status else None,
            status.received_ms if status else None,
            update.seen_first,
            update.seen_last,
        ),
    )
