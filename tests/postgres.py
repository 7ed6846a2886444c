"""A real PostgreSQL server for the tests, as ``harness.Broker`` is a real Mosquitto.

``PostgresServer`` runs Debian's ``postgres`` binaries (package ``postgresql``; ``initdb`` is
not on PATH there, it lives in ``/usr/lib/postgresql/VERSION/bin``) on a cluster of its own:
``initdb`` into a fresh temporary folder, then ``postgres`` on a free loopback port and a
unix socket in that folder; never the system cluster. PostgreSQL refuses to run as root, so as
root the cluster belongs to, and the server runs as, the ``postgres`` user (which the Debian
package creates), or ``nobody`` without it. The folder is under ``/tmp`` (not pytest's tmp
folders, which are private to root). ``fsync`` is off: the tests kill collectors, never the
database server, and commits keep their meaning.

The fixtures (``tests/conftest.py``): ``postgres_server`` starts one server per test run;
``postgres_url`` gives each test a fresh database on it. Without the binaries they skip, saying
so; a server that is there but does not start fails the test.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

from harness import free_port

SKIP_REASON = (
    "PostgreSQL server binaries (initdb, postgres) not found: `apt-get install postgresql` "
    "(scripts/setup installs it)"
)


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: PATH first, then the newest Debian
    version under ``/usr/lib/postgresql``."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).resolve().parent

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/bin", path)
        return int(match[1]) if match else 0

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


class PostgresServer:
    """A throw-away PostgreSQL cluster and server (see the module docstring)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ttcs-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.user = "postgres"  # the database superuser that initdb creates
        self.proc: subprocess.Popen[bytes] | None = None
        self._uid: int | None = None
        self._gid: int | None = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = pwd.getpwnam("nobody")
            self._uid, self._gid = account.pw_uid, account.pw_gid
            os.chown(self.root, self._uid, self._gid)
        self._env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}

    def _run_as_owner(self, argv: list[str], out: int | IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self.root,
            # As root: the cluster's owner, without root's supplementary groups.
            user=self._uid,
            group=self._gid,
            extra_groups=None if self._uid is None else [],
        )

    def start(self) -> PostgresServer:
        """initdb, then start the server and wait until it answers (at most 60 s)."""
        init = self._run_as_owner(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
                "--no-sync",  # a throw-away cluster: no need to fsync what initdb writes
            ],
            subprocess.PIPE,
        )
        out, _ = init.communicate(timeout=120)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {out.decode()[-3000:]}")
        with self.log.open("ab") as log:
            self.proc = self._run_as_owner(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.root),
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=50",
                    "-c",
                    "shared_buffers=32MB",
                ],
                log,
            )
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"postgres did not answer in 60 s: {self.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server (over TCP, as production uses)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; return its URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database that ``create_database`` made (its connections are ended)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, no wait
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
