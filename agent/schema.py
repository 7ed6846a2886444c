"""Schema versions of the agent's store (``PRAGMA user_version``), migrated at start.

``scripts[0]`` makes version 1 (``agent.store.SCHEMA``); ``scripts[i]`` takes version ``i`` to
``i + 1`` (statements separated by ``;``, none inside one). Those the store has not had yet
run in order, in one transaction with the new version number: a power cut or a failing
statement leaves the store as it was. A store made before versions existed has version 0 and
version 1's tables (``CREATE TABLE IF NOT EXISTS``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path


class StoreTooNew(RuntimeError):
    """The store was migrated by a newer agent: this one does not know its schema."""


def migrate(db: sqlite3.Connection, path: Path, scripts: Sequence[str]) -> int:
    """Bring ``db`` (autocommit mode) to version ``len(scripts)``; return the version it had."""
    latest = len(scripts)
    db.execute("BEGIN IMMEDIATE")
    try:
        found = int(db.execute("PRAGMA user_version").fetchone()[0])
        if found > latest:
            raise StoreTooNew(
                f"{path}: the store's schema is version {found}, this agent knows up to "
                f"{latest}: a newer agent migrated it (its copy before the update is "
                "agent.db.before-update while one is under way)"
            )
        for script in scripts[found:]:
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {latest}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found
