"""``ttcs-control report --db URL``: the store's reports as CSV, the same rows as the SQL
functions make; files and a store are not mixed, and a bad store is named."""

from __future__ import annotations

import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from controlplane import report
from controlplane.cli import main
from controlplane.store import Store
from tests.unit.controlplane.util import entry, ingest_playlog, ingest_state

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
DEV = "q10-p12-loa-01"


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:{tmp_path / 'control.db'}"
    with Store.open(url) as store:
        ingest_state(store, DEV, ["q10-p12", "q10"])
        ingest_playlog(
            store,
            DEV,
            entry("a", channel="speaker"),
            entry("b", outcome="skipped", channel="speaker", reason="queue_full"),
        )
    return url


@pytest.mark.parametrize(
    ("kind", "write", "rows"),
    [
        ("plays", report.write_csv, report.plays),
        ("summary", report.write_summary_csv, report.summary),
        ("outcomes", report.write_outcomes_csv, report.outcomes),
    ],
)
def test_each_kind_is_the_csv_of_its_sql_report(
    db: str, tmp_path: Path, kind: str, write: object, rows: object
) -> None:
    out = tmp_path / f"{kind}.csv"
    assert main(["report", "--db", db, "--kind", kind, "--out", str(out)]) == 0
    expected = io.StringIO()
    with Store.open(db) as store:
        write(rows(store, HCM), expected)  # type: ignore[operator]
    assert out.read_text(encoding="utf-8") == expected.getvalue()
    assert len(expected.getvalue().splitlines()) >= 2


def test_days_bound_the_report(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", db, "--since", "2026-11-27"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["report", "x.jsonl", "--db", "sqlite::memory:"], "not both"),
        (["report"], "or --db URL"),
        (["report", "x.jsonl", "--kind", "summary"], "need --db"),
        (["report", "--db", "mysql://nowhere/x"], "cannot read the store"),
    ],
)
def test_mistakes_are_named_and_nothing_is_written(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert fragment in captured.err and captured.out == ""
