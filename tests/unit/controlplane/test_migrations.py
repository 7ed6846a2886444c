"""controlplane.migrations: a new database gets the latest schema; an existing one, with its
data, is migrated when opened; a newer one is refused. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo

import pytest

from controlplane import report
from controlplane.db import connect
from controlplane.migrations import LATEST, MIGRATIONS, SchemaError, migrate
from controlplane.store import Store
from tests.unit.controlplane.util import DEV1


def _versions(store: Store) -> list[tuple[int, str]]:
    with store.db.transaction() as tx:
        return [
            (int(v), str(n))
            for v, n in tx.rows("SELECT version, name FROM schema_version ORDER BY version")
        ]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert len(MIGRATIONS) == LATEST


def test_a_new_database_gets_every_migration_once(store_url: str) -> None:
    with Store.open(store_url) as store:
        assert store.version == LATEST
        applied = _versions(store)
    assert applied == [(m.version, m.name) for m in MIGRATIONS]
    with Store.open(store_url) as again:  # opening again changes nothing
        assert _versions(again) == applied


def test_an_existing_database_is_migrated_with_its_data(store_url: str) -> None:
    # A database as a release before schema 2 left it, with an entry whose newer fields were
    # kept only in its raw JSON.
    previous = 1
    with Store.open(store_url, schema=previous) as old:
        assert old.version == previous
        with old.db.transaction() as tx:
            tx.execute(
                """INSERT INTO devices (device, ward, online, first_seen_ms, last_seen_ms)
                VALUES (?, ?, ?, ?, ?)""",
                (DEV1, "q10-p12", True, 1, 1),
            )
            for entry_id, raw in [
                ("a", '{"outcome": "skipped", "reason": "emergency", "replayed": true}'),
                ("b", '{"outcome": "skipped", "reason": 5, "replayed": "no"}'),  # wrong types
                ("c", '{"outcome": "completed"}'),
            ]:
                outcome = "completed" if entry_id == "c" else "skipped"
                tx.execute(
                    """INSERT INTO playlog (id, device, ward, bulletin, channel, outcome,
                        started_at, ended_at, started_ms, duration_ms, raw, received_ms)
                    VALUES (?, ?, NULL, 'tb-01', 'speaker', ?, '2026-11-26T01:00:00Z',
                        '2026-11-26T01:00:10Z', 1795654800000, 10000, ?, 1)""",
                    (entry_id, DEV1, outcome, raw),
                )
    with Store.open(store_url) as store:
        assert store.version == LATEST
        with store.db.transaction() as tx:
            rows = tx.rows("SELECT id, reason, replayed FROM playlog ORDER BY id")
        assert [(i, r, None if p is None else bool(p)) for i, r, p in rows] == [
            ("a", "emergency", True),
            ("b", None, None),
            ("c", None, None),
        ]
        counted = report.outcomes(store, ZoneInfo("Asia/Ho_Chi_Minh"))
        assert [(r.ward, r.outcome, r.reason, r.entries) for r in counted] == [
            ("q10-p12", "completed", "", 1),
            ("q10-p12", "skipped", "", 1),
            ("q10-p12", "skipped", "emergency", 1),
        ]
        assert store.playlog_ids() == ["a", "b", "c"]


def test_a_newer_database_is_refused(store_url: str) -> None:
    with Store.open(store_url) as store, store.db.transaction() as tx:
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (LATEST + 1, "from the future", "2030-01-01T00:00:00Z"),
        )
    with pytest.raises(SchemaError, match="upgrade ttcs-control"):
        Store.open(store_url)


def test_no_such_version(store_url: str) -> None:
    db = connect(store_url)
    try:
        with pytest.raises(ValueError, match="no schema version"):
            migrate(db, LATEST + 1)
    finally:
        db.close()


def test_two_processes_opening_a_new_database_at_once(store_url: str) -> None:
    # Two collectors started together on an empty database: one migrates, the other waits.
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Store.open(store_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with Store.open(store_url) as store:
        assert [v for v, _ in _versions(store)] == list(range(1, LATEST + 1))
