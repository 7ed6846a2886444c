"""controlplane.report: the plays CSV of controlplane.files_report, a daily summary and outcomes
by reason, all from SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controlplane import files_report as file_report
from controlplane import report
from controlplane.keys import SigningKey, make_document
from controlplane.store import Store
from tests.unit.controlplane.util import (
    DEV1,
    DEV2,
    entry,
    ingest_playlog,
    ingest_state,
)
from tests.unit.controlplane.util import report as rep

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
DEV3 = "q10-p12-loa-02"
KEY = SigningKey.generate("hcm-2026")


def rows(store: Store, tz: ZoneInfo = HCM, **kw: Any) -> list[tuple[Any, ...]]:
    return [
        (*r.cells()[:5], *(int(c) for c in r.cells()[5:10])) for r in report.plays(store, tz, **kw)
    ]


# --------------------------------------------------------------------------- plays (the CSV)


def test_the_same_rows_as_the_file_report(store: Store) -> None:
    # What controlplane.files_report makes of collected lines, the store makes of the same messages.
    batches = [
        (DEV1, "q10-p12", [entry("a"), entry("b", outcome="interrupted", channel="speaker")]),
        (DEV1, "q10-p12", [entry("a")]),  # delivered again
        (DEV2, None, [entry("c", "2026-11-25T16:59:59Z", "2026-11-25T17:00:30Z", "failed")]),
        (DEV1, "q10-p12", [entry("d", "2026-11-26T23:30:00Z", "2026-11-26T23:31:00Z")]),
        (DEV2, "q10-p13", [entry("e", "2026-11-26T01:00:00.400Z", "2026-11-26T01:00:01Z")]),
    ]
    lines = []
    for device, ward, entries in batches:
        if ward:
            ingest_state(store, device, [ward, "q10"])
        ingest_playlog(store, device, *entries)
        doc = {"v": 1, "device": device, "entries": entries}
        lines.append(file_report.collected_line(device, datetime.now(UTC), ward, doc))
    expected = file_report.aggregate(file_report.read_collected(lines).plays, HCM)
    assert report.plays(store, HCM) == expected
    assert len(expected) == 5


@pytest.mark.parametrize(
    ("started_at", "tz", "day"),
    [
        ("2026-11-25T23:30:00Z", HCM, "2026-11-26"),  # 06:30 local: the next day
        ("2026-11-25T16:59:59Z", HCM, "2026-11-25"),  # 23:59:59 local
        ("2026-11-25T17:00:00Z", HCM, "2026-11-26"),  # local midnight
        ("2026-11-25T23:30:00Z", ZoneInfo("UTC"), "2026-11-25"),
        ("2026-12-31T18:00:00Z", HCM, "2027-01-01"),
        ("2026-03-29T21:59:59Z", ZoneInfo("Europe/Berlin"), "2026-03-29"),  # a 23-hour day
        ("2026-03-29T22:00:00Z", ZoneInfo("Europe/Berlin"), "2026-03-30"),
    ],
)
def test_the_day_is_the_local_date_of_the_start(
    store: Store, started_at: str, tz: ZoneInfo, day: str
) -> None:
    ingest_playlog(store, DEV1, entry("a", start=started_at, end=started_at))
    assert [r[4] for r in rows(store, tz)] == [day]


def test_a_play_across_local_midnight_counts_on_the_day_it_started(store: Store) -> None:
    ingest_state(store, DEV1, ["q10-p12"])
    ingest_playlog(store, DEV1, entry("a", "2026-11-25T16:59:30Z", "2026-11-25T17:00:30Z"))
    assert rows(store) == [("q10-p12", DEV1, "tb-01", "screen", "2026-11-25", 1, 1, 0, 0, 60)]


def test_outcomes_and_seconds(store: Store) -> None:
    ingest_state(store, DEV1, ["q10-p12"])
    ingest_playlog(
        store,
        DEV1,
        entry("a", "2026-11-26T01:00:00Z", "2026-11-26T01:00:15Z"),
        entry("b", "2026-11-26T02:00:00Z", "2026-11-26T02:00:07Z", "interrupted"),
        entry("c", "2026-11-26T03:00:00Z", "2026-11-26T03:00:00Z", "failed"),
        entry("d", "2026-11-26T04:00:00Z", "2026-11-26T04:02:00Z", channel="speaker"),
        entry("e", "2026-11-26T05:00:10Z", "2026-11-26T05:00:00Z"),  # clock went back
        entry("f", "2026-11-26T06:00:00Z", "2026-11-26T06:00:09Z", "skipped", reason="x"),
    )
    assert rows(store) == [
        ("q10-p12", DEV1, "tb-01", "screen", "2026-11-26", 4, 2, 1, 1, 22),
        ("q10-p12", DEV1, "tb-01", "speaker", "2026-11-26", 1, 1, 0, 0, 120),
    ]


def test_fractional_seconds_are_summed_before_rounding(store: Store) -> None:
    entries = [entry(f"e{n}", "2026-11-26T01:00:00.400Z", "2026-11-26T01:00:01Z") for n in range(5)]
    ingest_playlog(store, DEV1, *entries)
    assert rows(store)[0][-1] == 3  # 5 x 0.6 s


def test_wards_sorting_and_the_period(store: Store) -> None:
    ingest_playlog(store, DEV2, entry("a", bulletin="tb-02"))  # its ward is never known
    ingest_playlog(store, DEV1, entry("b", bulletin="tb-02"))  # before its state...
    ingest_state(store, DEV1, ["q10-p12"])  # ...which then names its ward
    ingest_playlog(store, DEV1, entry("c", bulletin="tb-01"))
    ingest_playlog(store, DEV1, entry("d", "2026-11-25T16:00:00Z", "2026-11-25T16:00:15Z"))
    assert rows(store) == [
        ("", DEV2, "tb-02", "screen", "2026-11-26", 1, 1, 0, 0, 15),
        ("q10-p12", DEV1, "tb-01", "screen", "2026-11-25", 1, 1, 0, 0, 15),
        ("q10-p12", DEV1, "tb-01", "screen", "2026-11-26", 1, 1, 0, 0, 15),
        ("q10-p12", DEV1, "tb-02", "screen", "2026-11-26", 1, 1, 0, 0, 15),
    ]
    assert [r[4] for r in rows(store, since=date(2026, 11, 26), until=date(2026, 11, 26))] == [
        "2026-11-26"
    ] * 3
    assert rows(store, since=date(2026, 11, 27), until=date(2026, 11, 30)) == []
    assert rows(store, since=date(2026, 11, 27), until=date(2026, 11, 1)) == []


def test_nothing_stored_is_an_empty_report(store: Store) -> None:
    assert report.plays(store, HCM) == []
    assert report.summary(store, HCM) == []
    assert report.outcomes(store, HCM) == []


# --------------------------------------------------------------------------- daily summary


def _speaker(entry_id: str, start: str, seconds: int, outcome: str = "completed") -> dict[str, Any]:
    begin = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    end = (begin + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return entry(entry_id, start, end, outcome, channel="speaker")


def test_hours_on_air_is_the_union_of_the_wards_speaker_plays(store: Store) -> None:
    for device in (DEV1, DEV3):
        ingest_state(store, device, ["q10-p12", "q10"])
    ingest_state(store, DEV2, ["q10-p13", "q10"])
    ingest_playlog(
        store,
        DEV1,
        _speaker("a", "2026-11-26T00:00:00Z", 1800),  # 07:00-07:30 local
        _speaker("b", "2026-11-26T00:20:00Z", 1800),  # 07:20-07:50: overlaps a
        _speaker("c", "2026-11-26T10:00:00Z", 900, "interrupted"),  # 17:00-17:15
        _speaker("d", "2026-11-26T11:00:00Z", 600, "failed"),  # not on air
        entry("e", "2026-11-26T12:00:00Z", "2026-11-26T13:00:00Z"),  # the screen: not on air
    )
    ingest_playlog(store, DEV3, _speaker("f", "2026-11-26T00:10:00Z", 600))  # inside a
    ingest_playlog(store, DEV2, _speaker("g", "2026-11-26T00:00:00Z", 3600))
    ingest_playlog(store, DEV1, _speaker("h", "2026-11-26T23:00:00Z", 360))  # 06:00 next day
    summary = report.summary(store, HCM)
    assert [r.cells() for r in summary] == [
        ["q10-p12", "2026-11-26", "4", "1.08", "0"],  # 50 min + 15 min
        ["q10-p12", "2026-11-27", "1", "0.10", "0"],
        ["q10-p13", "2026-11-26", "1", "1.00", "0"],
    ]
    assert summary[0].on_air_ms == 65 * 60_000


def test_emergencies_taken_by_a_wards_devices(store: Store) -> None:
    ingest_state(store, DEV1, ["q10-p12", "q10"])
    ingest_state(store, DEV3, ["q10-p12", "q10"])
    ingest_state(store, DEV2, ["q10-p13", "q10"])
    bulletin = {
        "id": "kc-01",
        "title": "Bão số 9",
        "level": "emergency",
        "speaker": {"kind": "tts", "text": "Bão số 9 đang vào."},
    }
    now = datetime(2026, 11, 26, 1, tzinfo=UTC)
    first = make_document(KEY, "emergency.start", "grp:q10", {"bulletin": bulletin}, now=now)
    second = make_document(KEY, "emergency.start", "grp:q10", {"bulletin": bulletin}, now=now)
    refused = make_document(KEY, "emergency.start", "grp:q10", {"bulletin": bulletin}, now=now)
    ping = make_document(KEY, "ping", "grp:q10", {}, now=now)
    for doc in (first, second, refused, ping):
        store.record_command(doc, "ttcs/v1/grp/q10/cmd")

    def ack(device: str, cmd: str, status: str) -> None:
        doc = {"v": 1, "cmd": cmd, "status": status, "at": "2026-11-26T01:00:01Z"}
        store.ingest([rep(device, "ack", doc)])

    for device in (DEV1, DEV3):  # two devices of one ward: one emergency for the ward
        ack(device, first["id"], "accepted")
        ack(device, first["id"], "done")
    ack(DEV2, first["id"], "accepted")
    ack(DEV2, second["id"], "done")
    ack(DEV1, refused["id"], "rejected")
    ack(DEV1, ping["id"], "done")
    assert [r.cells() for r in report.summary(store, HCM)] == [
        ["q10-p12", "2026-11-26", "0", "0.00", "1"],
        ["q10-p13", "2026-11-26", "0", "0.00", "2"],
    ]


# --------------------------------------------------------------------------- outcomes


def test_outcomes_by_reason(store: Store) -> None:
    ingest_state(store, DEV1, ["q10-p12"])
    ingest_playlog(
        store,
        DEV1,
        entry("a"),
        entry("b", outcome="skipped", reason="emergency"),
        entry("c", outcome="skipped", reason="emergency"),
        entry("d", outcome="skipped", reason="outside_hours"),
        entry("e", outcome="failed", reason="no_voice", channel="speaker"),
        entry("f", outcome="something_new"),
    )
    assert [r.cells() for r in report.outcomes(store, HCM)] == [
        ["q10-p12", DEV1, "screen", "2026-11-26", "completed", "", "1"],
        ["q10-p12", DEV1, "screen", "2026-11-26", "skipped", "emergency", "2"],
        ["q10-p12", DEV1, "screen", "2026-11-26", "skipped", "outside_hours", "1"],
        ["q10-p12", DEV1, "screen", "2026-11-26", "something_new", "", "1"],
        ["q10-p12", DEV1, "speaker", "2026-11-26", "failed", "no_voice", "1"],
    ]


# --------------------------------------------------------------------------- pure parts


def test_local_days_are_contiguous_and_exact() -> None:
    days = report.local_days(ZoneInfo("Europe/Berlin"), date(2026, 3, 28), date(2026, 3, 30))
    assert [d for d, _, _ in days] == ["2026-03-28", "2026-03-29", "2026-03-30"]
    assert [(hi - lo) // 3_600_000 for _, lo, hi in days] == [24, 23, 24]
    assert all(a[2] == b[1] for a, b in itertools.pairwise(days))
    assert report.local_days(UTC, date(2026, 1, 1), date(2026, 1, 1)) == [
        ("2026-01-01", 1_767_225_600_000, 1_767_312_000_000)
    ]


def test_csv_writers() -> None:
    out = io.StringIO()
    report.write_summary_csv(
        [report.DaySummary("q10-p12", date(2026, 11, 26), 3, 5_400_000, 1)], out
    )
    assert (
        out.getvalue()
        == "ward,day,speaker_plays,hours_on_air,emergencies\nq10-p12,2026-11-26,3,1.50,1\n"
    )
    out = io.StringIO()
    row = report.OutcomeRow("w", DEV1, "screen", date(2026, 11, 26), "skipped", "=cmd()", 2)
    report.write_outcomes_csv([row], out)
    assert out.getvalue().splitlines() == [
        "ward,device,channel,day,outcome,reason,entries",
        f"w,{DEV1},screen,2026-11-26,skipped,'=cmd(),2",
    ]
    assert report.COLUMNS == file_report.COLUMNS


# --------------------------------------------------------------------------- commands


def test_commands_with_their_answers(store: Store) -> None:
    now = datetime(2026, 11, 26, 1, tzinfo=UTC)
    bulletin = {"id": "kc-01", "title": "Bão", "speaker": {"kind": "tts", "text": "Bão."}}
    start = make_document(KEY, "emergency.start", "grp:q10", {"bulletin": bulletin}, now=now)
    ping = make_document(KEY, "ping", "dev:" + DEV1, {}, now=now + timedelta(minutes=1))
    quiet = make_document(KEY, "ping", "dev:" + DEV2, {}, now=now + timedelta(minutes=2))
    for doc in (start, ping, quiet):
        store.record_command(doc, "ttcs/v1/x/cmd")

    def ack(device: str, cmd: str, status: str, at: str = "2026-11-26T01:00:01Z") -> None:
        doc = {"v": 1, "cmd": cmd, "status": status, "at": at}
        store.ingest([rep(device, "ack", doc)])

    ack(DEV1, start["id"], "accepted")
    ack(DEV1, start["id"], "done", "2026-11-26T01:00:02Z")
    ack(DEV1, start["id"], "done", "2026-11-26T01:00:02Z")  # redelivered: stored once
    ack(DEV2, start["id"], "accepted")  # no outcome yet
    ack(DEV3, start["id"], "failed")
    ack(DEV1, ping["id"], "rejected")
    assert [r.cells()[2:] for r in report.commands(store, HCM)] == [
        [start["id"], "emergency.start", "grp:q10", "3", "1", "1", "0", "1"],
        [ping["id"], "ping", "dev:" + DEV1, "1", "0", "0", "1", "0"],
        [quiet["id"], "ping", "dev:" + DEV2, "0", "0", "0", "0", "0"],
    ]
    first = report.commands(store, HCM)[0]
    assert first.day == date(2026, 11, 26) and first.issued_at == start["issued_at"]
    out = io.StringIO()
    report.write_commands_csv(report.commands(store, HCM), out)
    assert out.getvalue().splitlines()[0] == ",".join(report.COMMAND_COLUMNS)
    assert report.commands(store, HCM, date(2026, 11, 27), date(2026, 11, 27)) == []
