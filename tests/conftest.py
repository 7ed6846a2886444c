"""Fixtures: a real Mosquitto per test module area, signing keys, provisioned devices, a real
PostgreSQL server per run and a fresh database (SQLite or PostgreSQL) per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.keys import SigningKey
from tests import fuzzing
from tests.helpers import AgentProcess, Broker, Device, HarnessError, provision
from tests.integration import power_cut_report
from tests.postgres import SKIP_REASON as POSTGRES_SKIP_REASON
from tests.postgres import PostgresServer, find_bindir

# Importing pygame or SDL later must never try to open a real display or sound card.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


# Tables the xdist workers made (their own terminal output is not shown): (section, lines).
_WORKER_TABLES: list[tuple[str, list[str]]] = []


def _tables() -> list[tuple[str, list[str]]]:
    """The tables of the fuzz targets (tests/fuzzing.py) and the power cuts, when they ran."""
    tables = [("fuzz", fuzzing.table())] if fuzzing.TALLY else []
    return tables + [("power cuts", report) for report in power_cut_report.REPORTS]


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker: hand the tables to the controller
        worker = output.get("workerid", "worker")
        output["tables"] = [(f"{section} ({worker})", lines) for section, lines in _tables()]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist's hook, on the controller, as each worker ends."""
    _WORKER_TABLES.extend(node.workeroutput.get("tables", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for section, lines in _tables() + _WORKER_TABLES:
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("hcm-2026")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    try:
        Broker.binary()
    except HarnessError as exc:
        pytest.fail(f"{exc}: run `make setup`")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def device(tmp_path: Path, broker: Broker, signing_key: SigningKey) -> Device:
    return provision(tmp_path, broker, signing_key)


@pytest.fixture
def agent(device: Device) -> Iterator[AgentProcess]:
    proc = AgentProcess(device).start(wait_online=True)
    yield proc
    proc.stop()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (tests/postgres.py); skipped only when its
    binaries are not installed."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty control-plane database, once on each back end."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'control.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
