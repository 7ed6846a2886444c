"""The database connection: the only module that imports ``sqlite3`` and ``psycopg``.

One small interface over both back ends, so that the schema, the ingestion and the reports are
written once, in portable SQL with ``?`` placeholders:

- ``sqlite:PATH`` (``sqlite:///var/lib/ttcs-control/control.db``) or a plain file path: SQLite,
  embedded, nothing to set up. WAL mode with ``synchronous=FULL``: a commit is on disk when it
  returns, which is what "durable before PUBACK" needs; several processes may share the file
  (writers take turns, ``busy_timeout`` 30 s).
- ``postgresql://user@host:port/dbname`` (libpq's URL syntax, ``?host=/run/dir`` for a unix
  socket): PostgreSQL through psycopg 3, imported only then.

Every statement runs inside ``Database.transaction()``; a transaction commits when its block
ends without an exception and rolls back otherwise. JSON columns read back as text in both
dialects (PostgreSQL's ``jsonb`` is loaded as text here) so callers parse them one way.
"""

from __future__ import annotations

import abc
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import psycopg

Dialect = Literal["sqlite", "postgresql"]
Params = Sequence[Any]
Row = tuple[Any, ...]

_SQLITE_BUSY_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 10


class DatabaseError(Exception):
    """The database failed or cannot be reached; the operation may succeed later."""


class Conflict(DatabaseError):
    """The transaction lost a race with another one (deadlock, serialization): run it again."""


class Transaction:
    """The statements of one transaction (``Database.transaction``)."""

    def __init__(self, run: Any, dialect: Dialect) -> None:
        self._run = run  # (sql, params) -> cursor
        self.dialect: Dialect = dialect

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        count = self._run(sql, params).rowcount
        return int(count) if count and count > 0 else 0  # -1: "not known" (DDL)

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query; return all its rows as tuples."""
        return [tuple(r) for r in self._run(sql, params).fetchall()]

    def one(self, sql: str, params: Params = ()) -> Row | None:
        """Run a query; return its first row, or None."""
        row = self._run(sql, params).fetchone()
        return None if row is None else tuple(row)


class Database(abc.ABC):
    """An open connection to SQLite or PostgreSQL (``connect``)."""

    dialect: Dialect

    def __init__(self, url: str) -> None:
        self.url = redact(url)

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Transaction]:
        """A transaction: committed (durably) when the block ends, rolled back on an error."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection (a transaction still open is rolled back)."""


class SqliteDatabase(Database):
    """SQLite in WAL mode, one connection, explicit ``BEGIN IMMEDIATE`` transactions."""

    dialect: Dialect = "sqlite"

    def __init__(self, url: str, path: str) -> None:
        super().__init__(url)
        self.path = path
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; transaction() says BEGIN itself.
            # check_same_thread=False: a store may be opened in one thread and used in another
            # (never by two at once: a Database is not shared between threads).
            self._conn = sqlite3.connect(
                path,
                isolation_level=None,
                timeout=_SQLITE_BUSY_MS / 1000,
                check_same_thread=False,
            )
            self._conn.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # FULL: the WAL is fsynced at every commit (NORMAL could lose the last commits in
            # a power cut, after their messages were acknowledged to the broker).
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open SQLite database {path}: {exc}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        conn = self._conn

        def run(sql: str, params: Params) -> sqlite3.Cursor:
            return conn.execute(sql, tuple(params))

        try:
            # IMMEDIATE takes the write lock at once: two writers wait for each other at BEGIN
            # (busy_timeout) instead of failing halfway with "database is locked".
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise DatabaseError(f"SQLite: {exc}") from None
        try:
            yield Transaction(run, self.dialect)
        except sqlite3.Error as exc:
            conn.rollback()
            raise DatabaseError(f"SQLite: {exc}") from None
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.commit()
        except sqlite3.Error as exc:
            conn.rollback()
            raise DatabaseError(f"SQLite commit: {exc}") from None

    def close(self) -> None:
        self._conn.close()


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3 (autocommit connection, explicit transactions)."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import psycopg
        from psycopg.types.string import TextLoader

        self._psycopg = psycopg
        try:
            self._conn: psycopg.Connection[Row] = psycopg.connect(
                url, autocommit=True, connect_timeout=_PG_CONNECT_TIMEOUT_S
            )
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to {self.url}: {exc}".strip()) from None
        # JSON columns come back as text, as SQLite's do.
        self._conn.adapters.register_loader("jsonb", TextLoader)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        psycopg = self._psycopg
        conn = self._conn

        def run(sql: str, params: Params) -> Any:  # a psycopg cursor
            if not params:
                return conn.execute(sql.encode())  # no placeholders: "%" stays literal
            # The one difference in the SQL we write: placeholders (and so a literal "%").
            return conn.execute(sql.replace("%", "%%").replace("?", "%s").encode(), tuple(params))

        try:
            with conn.transaction():
                yield Transaction(run, self.dialect)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            raise Conflict(f"PostgreSQL: {exc}") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise DatabaseError(f"PostgreSQL: {exc}") from None

    def close(self) -> None:
        self._conn.close()


def connect(url: str) -> Database:
    """Open the database that ``url`` names (see the module's docstring for the forms)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
        # sqlite:///abs/path.db is /abs/path.db, as in a file: URL; sqlite:rel.db is relative.
        path = path.removeprefix("//")
        if not path:
            raise ValueError("sqlite: URL without a path (e.g. sqlite:///var/lib/x.db)")
        return SqliteDatabase(url, path)
    if "://" in url:
        raise ValueError(f"unknown database URL {redact(url)!r}: use sqlite:PATH or postgresql://")
    if not url:
        raise ValueError("empty database URL")
    return SqliteDatabase(url, url)


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for logs and messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))
