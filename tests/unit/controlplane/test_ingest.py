"""controlplane.ingest: device messages → typed reports, leniently where the protocol grows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlplane.ingest import (
    AckReport,
    EventReport,
    Message,
    PlaylogReport,
    Rejected,
    StateReport,
    StatusReport,
    device_topics,
    parse,
    play_entry,
)
from tests.unit.controlplane.util import DEV1, PREFIX, entry, message, playlog, state


def test_topics_the_store_keeps() -> None:
    assert device_topics("x/y") == {
        "state": "x/y/dev/+/state",
        "status": "x/y/dev/+/status",
        "ack": "x/y/dev/+/ack",
        "event": "x/y/dev/+/event",
        "playlog": "x/y/dev/+/playlog",
    }


@pytest.mark.parametrize(
    "topic",
    [
        f"{PREFIX}/dev/{DEV1}/screenshot/01JDX3M7K2Q8",
        f"{PREFIX}/dev/{DEV1}/logs/01JDX3M7K2Q8",
        f"{PREFIX}/dev/{DEV1}/cmd",
        f"{PREFIX}/grp/q10/playlog",
        f"other/v1/dev/{DEV1}/playlog",
        "ttcs/v1",
    ],
)
def test_topics_not_kept_are_none(topic: str) -> None:
    assert parse(Message(topic, b"{}", 1), PREFIX) is None


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": 1}', "entries"),
        (b'{"entries": "x"}', "entries"),
    ],
)
def test_malformed_playlogs_are_rejected_with_a_reason(payload: bytes, why: str) -> None:
    parsed = parse(Message(f"{PREFIX}/dev/{DEV1}/playlog", payload, 1), PREFIX)
    assert isinstance(parsed, Rejected) and why in parsed.why


def test_a_bad_device_id_in_the_topic_is_rejected() -> None:
    parsed = parse(Message(f"{PREFIX}/dev/Bad_Id/state", b'{"online": true}', 1), PREFIX)
    assert isinstance(parsed, Rejected) and "device id" in parsed.why


def test_the_device_is_the_topics_not_the_payloads() -> None:
    parsed = parse(message(DEV1, "playlog", playlog("someone-else", entry("a"))), PREFIX)
    assert isinstance(parsed, PlaylogReport) and parsed.device == DEV1


def test_playlog_entries_typed_and_raw() -> None:
    extra: dict[str, Any] = {
        "ref": "cmd-01",
        "start_error_ms": -40,
        "reason": "busy",
        "replayed": True,
        "x": [1],
    }
    parsed = parse(message(DEV1, "playlog", playlog(DEV1, entry("a", **extra)), 5), PREFIX)
    assert isinstance(parsed, PlaylogReport)
    (e,) = parsed.entries
    assert (e.id, e.bulletin, e.channel, e.outcome) == ("a", "tb-01", "screen", "completed")
    assert (e.started_ms, e.duration_ms) == (1_795_654_800_000, 15_000)  # 2026-11-26T01:00Z
    assert (e.ref, e.start_error_ms, e.reason, e.replayed) == ("cmd-01", -40, "busy", True)
    assert json.loads(e.raw) == entry("a", **extra)  # the unknown field "x" is kept too
    assert parsed.received_ms == 5


def test_new_outcomes_and_channels_are_kept() -> None:
    e = play_entry(entry("a", outcome="skipped", reason="outside_screen_hours"))
    assert (e.outcome, e.reason) == ("skipped", "outside_screen_hours")


@pytest.mark.parametrize(
    ("field", "value"),
    [("start_error_ms", "12"), ("start_error_ms", True), ("replayed", 1), ("reason", 7)],
)
def test_a_known_optional_field_of_the_wrong_type_stays_in_raw_only(field: str, value: Any) -> None:
    fields: dict[str, Any] = {field: value}
    e = play_entry(entry("a", **fields))
    assert getattr(e, field) is None
    assert json.loads(e.raw)[field] == value


def test_bad_entries_are_counted_and_the_good_ones_kept() -> None:
    doc = playlog(
        DEV1,
        entry("a"),
        {"id": "b"},
        entry("c", start="yesterday"),
        entry("", outcome="completed"),
        entry("d", channel=""),
        "not an object",  # type: ignore[arg-type]
        entry("e", end="2026-11-26T00:59:00Z"),  # clock went back: zero seconds
    )
    parsed = parse(message(DEV1, "playlog", doc), PREFIX)
    assert isinstance(parsed, PlaylogReport)
    assert [e.id for e in parsed.entries] == ["a", "e"]
    assert parsed.entries[1].duration_ms == 0
    assert parsed.bad_entries == 5


def test_state_birth_and_last_will() -> None:
    birth = parse(
        message(DEV1, "state", state(DEV1, ["q10-p12", "q10"], agent_version="1")), PREFIX
    )
    assert isinstance(birth, StateReport)
    assert (birth.online, birth.ward, birth.agent_version) == (True, "q10-p12", "1")
    assert birth.groups is not None and json.loads(birth.groups) == ["q10-p12", "q10"]
    will = parse(message(DEV1, "state", state(DEV1, None)), PREFIX)
    assert isinstance(will, StateReport)
    assert (will.online, will.ward, will.groups) == (False, None, None)
    bad = parse(message(DEV1, "state", {"v": 1, "online": "yes"}), PREFIX)
    assert isinstance(bad, Rejected) and "online" in bad.why


def test_status_is_kept_whole() -> None:
    doc = {"v": 1, "at": "2026-11-26T01:00:00Z", "volume": 70, "future": {"a": 1}}
    parsed = parse(message(DEV1, "status", doc), PREFIX)
    assert isinstance(parsed, StatusReport) and json.loads(parsed.raw) == doc


def test_acks_and_events() -> None:
    ack_doc = {"v": 1, "cmd": "01JDX3M7K2Q8", "status": "done", "at": "2026-11-26T06:00:01Z"}
    ack = parse(message(DEV1, "ack", ack_doc), PREFIX)
    assert isinstance(ack, AckReport)
    assert (ack.cmd, ack.status, ack.reason, ack.detail) == ("01JDX3M7K2Q8", "done", None, "")
    same = parse(message(DEV1, "ack", ack_doc, received_ms=99), PREFIX)
    assert isinstance(same, AckReport) and same.key == ack.key  # a redelivery: the same key
    other = parse(message(DEV1, "ack", {**ack_doc, "status": "failed"}), PREFIX)
    assert isinstance(other, AckReport) and other.key != ack.key
    garbage = parse(message(DEV1, "ack", {**ack_doc, "cmd": None, "topic": "x/cmd"}), PREFIX)
    assert isinstance(garbage, AckReport) and (garbage.cmd, garbage.topic) == (None, "x/cmd")
    no_time = parse(message(DEV1, "ack", {"cmd": "x", "status": "done"}), PREFIX)
    assert isinstance(no_time, Rejected) and "at" in no_time.why

    event_doc = {"v": 1, "at": "2026-11-26T06:00:01Z", "severity": "warning", "code": "disk_low"}
    event = parse(message(DEV1, "event", event_doc), PREFIX)
    assert isinstance(event, EventReport)
    assert (event.severity, event.code, event.detail) == ("warning", "disk_low", "")
    no_code = parse(message(DEV1, "event", {**event_doc, "code": ""}), PREFIX)
    assert isinstance(no_code, Rejected) and "code" in no_code.why
