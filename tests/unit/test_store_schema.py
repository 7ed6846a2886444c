"""The store's schema versions (agent/store.py): migrations run once, in order, all or none;
a store from a newer agent is refused by name of both versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.store import SCHEMA, Store, StoreTooNew


def version_and_tables(path: Path) -> tuple[int, list[str]]:
    db = sqlite3.connect(path)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        names = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        return version, [str(n) for (n,) in names if not str(n).startswith("sqlite_")]
    finally:
        db.close()


def test_a_store_from_before_versions_becomes_version_1(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO settings VALUES ('volume', '70')")
    db.commit()
    db.close()
    store = Store(path)
    store.close()
    version, tables = version_and_tables(path)
    assert version == 1 and "settings" in tables
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM settings").fetchall() == [("70",)]
    db.close()


def test_migrations_run_in_order_once(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    Store(path).close()
    steps = ("CREATE TABLE a (x INTEGER)", "ALTER TABLE a ADD y TEXT; CREATE TABLE b (z)")
    Store(path, migrations=steps).close()
    Store(path, migrations=steps).close()  # nothing left to do: no "duplicate column"
    version, tables = version_and_tables(path)
    assert version == 3 and {"a", "b"} <= set(tables)


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    Store(path).close()
    with pytest.raises(sqlite3.OperationalError):
        Store(path, migrations=("CREATE TABLE a (x)", "ALTER TABLE nowhere ADD y"))
    version, tables = version_and_tables(path)
    assert version == 1 and "a" not in tables


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    Store(path, migrations=("CREATE TABLE a (x)", "CREATE TABLE b (x)")).close()
    with pytest.raises(StoreTooNew, match="schema is version 3, this agent knows up to 1"):
        Store(path)
    assert version_and_tables(path)[0] == 3
