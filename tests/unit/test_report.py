"""controlplane.files_report: collected playlog lines → de-duplicated plays → CSV rows per ward
and day."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controlplane.files_report import (
    COLUMNS,
    Play,
    Row,
    aggregate,
    collected_line,
    read_collected,
    ward_of,
    wards_from_lines,
    write_csv,
)
from protocol import PlaylogEntry

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
DEV1 = "q10-p12-bang-01"
DEV2 = "q10-p13-loa-01"


def entry(
    entry_id: str,
    start: str = "2026-11-26T01:00:00Z",
    end: str = "2026-11-26T01:00:15Z",
    outcome: str = "completed",
    bulletin: str = "tb-01",
    channel: str = "screen",
) -> dict[str, Any]:
    return {
        "id": entry_id,
        "bulletin": bulletin,
        "channel": channel,
        "started_at": start,
        "ended_at": end,
        "outcome": outcome,
    }


def line(device: str, ward: str | None, *entries: dict[str, Any]) -> str:
    playlog = {"v": 1, "device": device, "entries": list(entries)}
    return collected_line(device, datetime(2026, 11, 26, 2, tzinfo=UTC), ward, playlog)


def report(lines: list[str], tz: ZoneInfo = HCM) -> list[tuple[Any, ...]]:
    rows = aggregate(read_collected(lines).plays, tz)
    return [(*r.cells()[:5], *(int(c) for c in r.cells()[5:10])) for r in rows]


# --------------------------------------------------------------------------- wards


@pytest.mark.parametrize(
    ("state", "ward"),
    [
        ({"v": 1, "online": True, "device": DEV1, "groups": ["q10-p12", "q10"]}, "q10-p12"),
        ({"v": 1, "online": False, "device": DEV1}, None),  # the last will names no groups
        ({"groups": []}, None),
        ({"groups": [""]}, None),
        ({"groups": [7]}, None),
        ({"groups": "q10-p12"}, None),
    ],
)
def test_ward_of_a_state_message(state: dict[str, Any], ward: str | None) -> None:
    assert ward_of(state) == ward


def test_collected_line_format() -> None:
    text = line(DEV1, "q10-p12", entry("a"))
    assert "\n" not in text
    assert json.loads(text) == {
        "device": DEV1,
        "received_at": "2026-11-26T02:00:00Z",
        "ward": "q10-p12",
        "playlog": {"v": 1, "device": DEV1, "entries": [entry("a")]},
    }


def test_wards_from_lines_keeps_the_last_known() -> None:
    lines = [line(DEV1, "q10-p12"), line(DEV1, None), line(DEV2, "q10-p13"), line(DEV2, "q1")]
    assert wards_from_lines([*lines, "garbage"]) == {DEV1: "q10-p12", DEV2: "q1"}


def test_an_entry_collected_without_a_ward_takes_the_devices_known_ward() -> None:
    lines = [
        line(DEV1, None, entry("a")),  # collected before its state was known
        line(DEV1, "q10-p12", entry("b")),
        line(DEV2, None, entry("c")),  # never known
    ]
    assert [(p.ward, p.entry.id) for p in read_collected(lines).plays] == [
        ("q10-p12", "a"),
        ("q10-p12", "b"),
        ("", "c"),
    ]


# --------------------------------------------------------------------------- reading


def test_entries_count_once_per_id() -> None:
    lines = [
        line(DEV1, "q10-p12", entry("a"), entry("b")),
        line(DEV1, "q10-p12", entry("b")),  # the broker delivered that message again
        line(DEV1, "q10-p12", entry("a"), entry("b"), entry("c")),
    ]
    reading = read_collected(lines)
    assert [p.entry.id for p in reading.plays] == ["a", "b", "c"]
    assert reading.duplicates == 3
    assert report(lines) == [("q10-p12", DEV1, "tb-01", "screen", "2026-11-26", 3, 3, 0, 0, 45)]


def test_bad_lines_and_entries_are_skipped_and_counted() -> None:
    lines = [
        line(DEV1, "q10-p12", entry("a")),
        '{"device": "q10-p12-bang-01", "ward": null, "playlog": {"v": 1, "entr',  # torn
        "not json",
        "[]",
        '{"device": 5, "playlog": {"entries": []}}',
        "",
        line(DEV1, "q10-p12", entry("b", outcome="exploded"), entry("c", start="yesterday")),
        line(DEV1, "q10-p12", {"id": "d"}, entry("e")),
    ]
    reading = read_collected(lines)
    assert [p.entry.id for p in reading.plays] == ["a", "e"]
    assert reading.bad_lines == 4
    assert reading.bad_entries == 3


# --------------------------------------------------------------------------- aggregation


@pytest.mark.parametrize(
    ("started_at", "tz", "day"),
    [
        ("2026-11-25T23:30:00Z", HCM, "2026-11-26"),  # 06:30 local: the next day
        ("2026-11-25T16:59:59Z", HCM, "2026-11-25"),  # 23:59:59 local
        ("2026-11-25T17:00:00Z", HCM, "2026-11-26"),  # local midnight
        ("2026-11-25T23:30:00Z", ZoneInfo("UTC"), "2026-11-25"),
        ("2026-12-31T18:00:00Z", HCM, "2027-01-01"),
    ],
)
def test_the_day_is_the_local_date_of_the_start(started_at: str, tz: ZoneInfo, day: str) -> None:
    rows = report([line(DEV1, "q10-p12", entry("a", start=started_at, end=started_at))], tz)
    assert [r[4] for r in rows] == [day]


def test_a_play_across_local_midnight_counts_on_the_day_it_started() -> None:
    lines = [line(DEV1, "q10-p12", entry("a", "2026-11-25T16:59:30Z", "2026-11-25T17:00:30Z"))]
    assert report(lines) == [("q10-p12", DEV1, "tb-01", "screen", "2026-11-25", 1, 1, 0, 0, 60)]


def test_outcomes_and_seconds() -> None:
    lines = [
        line(
            DEV1,
            "q10-p12",
            entry("a", "2026-11-26T01:00:00Z", "2026-11-26T01:00:15Z"),
            entry("b", "2026-11-26T02:00:00Z", "2026-11-26T02:00:07Z", "interrupted"),
            entry("c", "2026-11-26T03:00:00Z", "2026-11-26T03:00:00Z", "failed"),
            entry("d", "2026-11-26T04:00:00Z", "2026-11-26T04:02:00Z", channel="speaker"),
            entry("e", "2026-11-26T05:00:10Z", "2026-11-26T05:00:00Z"),  # clock went back
        )
    ]
    assert report(lines) == [
        ("q10-p12", DEV1, "tb-01", "screen", "2026-11-26", 4, 2, 1, 1, 22),
        ("q10-p12", DEV1, "tb-01", "speaker", "2026-11-26", 1, 1, 0, 0, 120),
    ]


def test_replays_and_skips_are_counted_with_their_reasons() -> None:
    lines = [
        line(
            DEV1,
            "q10-p12",
            {**entry("a", outcome="interrupted", channel="speaker"), "replayed": True},
            entry("b", channel="speaker"),
            {**entry("c", outcome="interrupted", channel="speaker"), "replayed": False},
            {**entry("d", outcome="skipped", channel="speaker"), "reason": "late_for_play_at"},
            {**entry("e", outcome="skipped", channel="speaker"), "reason": "queue_full"},
            {**entry("f", outcome="skipped", channel="speaker"), "reason": "queue_full"},
        )
    ]
    [row] = aggregate(read_collected(lines).plays, HCM)
    assert (row.plays, row.completed, row.interrupted, row.replayed) == (3, 1, 2, 1)
    assert row.skipped == 3
    assert row.cells()[-1] == "late_for_play_at=1;queue_full=2"


def test_fractional_seconds_are_summed_before_rounding() -> None:
    entries = [entry(f"e{n}", "2026-11-26T01:00:00.400Z", "2026-11-26T01:00:01Z") for n in range(5)]
    assert report([line(DEV1, "w1", *entries)])[0][-1] == 3  # 5 x 0.6 s


def test_rows_per_ward_device_bulletin_and_day_sorted() -> None:
    lines = [
        line(DEV2, "q10-p13", entry("a", bulletin="tb-02")),
        line(DEV1, "q10-p12", entry("b", bulletin="tb-02"), entry("c", bulletin="tb-01")),
        line(DEV1, "q10-p12", entry("d", "2026-11-25T16:00:00Z", "2026-11-25T16:00:15Z")),
        line(DEV1, "q10-p12", entry("e", bulletin="tb-01")),
    ]
    assert report(lines) == [
        ("q10-p12", DEV1, "tb-01", "screen", "2026-11-25", 1, 1, 0, 0, 15),
        ("q10-p12", DEV1, "tb-01", "screen", "2026-11-26", 2, 2, 0, 0, 30),
        ("q10-p12", DEV1, "tb-02", "screen", "2026-11-26", 1, 1, 0, 0, 15),
        ("q10-p13", DEV2, "tb-02", "screen", "2026-11-26", 1, 1, 0, 0, 15),
    ]


def test_nothing_collected_is_an_empty_report() -> None:
    assert aggregate([], HCM) == []
    assert aggregate(read_collected([]).plays, HCM) == []


def test_aggregate_takes_plays_directly() -> None:
    plays = [Play("w1", DEV1, PlaylogEntry.model_validate(entry("a")))]
    assert aggregate(plays, HCM) == [
        Row("w1", DEV1, "tb-01", "screen", date(2026, 11, 26), 1, 1, 0, 0, 15)
    ]


def test_csv() -> None:
    rows = [
        Row("", DEV2, "tb-02", "screen", date(2026, 11, 26), 1, 0, 0, 1, 0),
        Row("q10-p12", DEV1, "tb-01", "screen", date(2026, 11, 26), 3, 2, 1, 0, 37),
    ]
    out = io.StringIO()
    write_csv(rows, out)
    assert out.getvalue() == (
        ",".join(COLUMNS) + "\n"
        f",{DEV2},tb-02,screen,2026-11-26,1,0,0,1,0,0,0,\n"
        f"q10-p12,{DEV1},tb-01,screen,2026-11-26,3,2,1,0,37,0,0,\n"
    )
    assert COLUMNS == (
        "ward",
        "device",
        "bulletin",
        "channel",
        "day",
        "plays",
        "completed",
        "interrupted",
        "failed",
        "seconds",
        "replayed",
        "skipped",
        "skip_reasons",
    )


def test_a_device_cannot_plant_a_spreadsheet_formula() -> None:
    rows = [Row("q10-p12", DEV1, '=HYPERLINK("x")', "screen", date(2026, 11, 26), 1, 1, 0, 0, 5)]
    out = io.StringIO()
    write_csv(rows, out)
    assert "'=HYPERLINK" in out.getvalue()
