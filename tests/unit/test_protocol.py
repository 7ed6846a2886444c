"""protocol: times, topics, the typed documents and the device → server messages."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from protocol import (
    BODY_MODELS,
    COMMAND_TYPES,
    Ack,
    Bulletin,
    DeviceState,
    DeviceStatus,
    Envelope,
    Event,
    Level,
    PlayNowBody,
    ProgramBody,
    Status,
    StreamStartBody,
    Topics,
    format_time,
    parse_time,
    to_json,
)
from tests.unit.fakes import bulletin, document, program_body

SHA = "ab" * 32

# --------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T06:00:00Z", datetime(2026, 11, 26, 6, 0, tzinfo=UTC)),
        ("2026-11-26T06:00:00.5Z", datetime(2026, 11, 26, 6, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-26T06:00:00.123456789Z", datetime(2026, 11, 26, 6, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-26T06:00:00",
        "2026-11-26T06:00:00+07:00",
        "2026-11-26 06:00:00Z",
        "2026-11-26T06:00Z",
        "2026-13-40T00:00:00Z",
        "2026-11-26T24:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-26T06:00:60Z",
        "",
        " 2026-11-26T06:00:00Z",
    ],
)
def test_parse_time_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_parse_time_refuses_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_time(1795500000)  # type: ignore[arg-type]


def test_format_time_is_utc_with_z() -> None:
    hanoi = timezone(timedelta(hours=7))
    assert format_time(datetime(2026, 11, 26, 13, 0, tzinfo=hanoi)) == "2026-11-26T06:00:00Z"
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(0.999) == "1970-01-01T00:00:00Z"
    moment = datetime(2026, 11, 26, 6, 0, 1, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment


# --------------------------------------------------------------------------- topics


def test_topics() -> None:
    topics = Topics("ttcs/v1")
    assert topics.dev("q10-p12-bang-01", "cmd") == "ttcs/v1/dev/q10-p12-bang-01/cmd"
    assert topics.grp("q10", "program") == "ttcs/v1/grp/q10/program"
    assert topics.for_target("dev:q10-p12-bang-01", "ack") == "ttcs/v1/dev/q10-p12-bang-01/ack"
    assert topics.for_target("grp:all", "cmd") == "ttcs/v1/grp/all/cmd"
    with pytest.raises(ValueError):
        topics.for_target("grp:#", "cmd")
    with pytest.raises(ValueError):
        topics.for_target("q10", "cmd")


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("ttcs/v1/dev/q10-p12-bang-01/cmd", ("dev:q10-p12-bang-01", "cmd")),
        ("ttcs/v1/grp/q10/program", ("grp:q10", "program")),
        ("ttcs/v1/dev/q10-p12-bang-01/status", None),
        ("ttcs/v1/dev/q10-p12-bang-01/cmd/x", None),
        ("ttcs/v1/usr/q10/cmd", None),
        ("ttcs/v2/dev/q10-p12-bang-01/cmd", None),
        ("other/ttcs/v1/dev/q10-p12-bang-01/cmd", None),
        ("", None),
    ],
)
def test_parse_inbound(topic: str, parsed: tuple[str, str] | None) -> None:
    assert Topics("ttcs/v1").parse_inbound(topic) == parsed


def test_parse_inbound_with_a_one_level_prefix() -> None:
    assert Topics("ward").parse_inbound("ward/dev/d1/cmd") == ("dev:d1", "cmd")
    assert Topics("ward").parse_inbound("ttcs/v1/dev/d1/cmd") is None


# --------------------------------------------------------------------------- documents


def test_every_command_type_has_a_body_model() -> None:
    assert set(COMMAND_TYPES) == {
        "ping", "play.now", "emergency.start", "emergency.stop", "stream.start", "stream.stop",
        "volume.set", "power.set", "screenshot", "logs.upload", "agent.restart",
        "agent.update",
    }  # fmt: skip
    assert set(BODY_MODELS) == {*COMMAND_TYPES, "program"}


def envelope(doc: dict[str, Any]) -> Envelope:
    return Envelope.model_validate({**doc, "kid": "hcm-2026", "sig": "x"})


def test_envelope_types_its_body() -> None:
    env = envelope(
        document("play.now", {"bulletin": bulletin(), "play_at": "2026-11-26T06:05:00Z"})
    )
    assert isinstance(env.body, PlayNowBody)
    assert env.body.bulletin.level is Level.NORMAL
    assert not env.is_program
    prog = envelope(document("program", program_body(3)))
    assert isinstance(prog.body, ProgramBody) and prog.is_program and prog.expires_at is None


def test_vietnamese_text_is_normalized_to_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Thông báo khẩn")
    item = Bulletin.model_validate(bulletin(nfd))
    assert item.title == "Thông báo khẩn"
    assert unicodedata.is_normalized("NFC", item.title)
    body = ProgramBody.model_validate({"version": 1, "ticker": [nfd]})
    assert body.ticker == ["Thông báo khẩn"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"screen": None, "speaker": None}, "screen"),
        ({"screen": {"kind": "text"}}, "text"),
        ({"screen": {"kind": "image"}}, "media"),
        ({"screen": {"kind": "text", "text": "a", "duration_ms": 999}}, "duration_ms"),
        ({"speaker": {"kind": "audio"}}, "media"),
        ({"speaker": {"kind": "stream"}}, "url"),
        ({"speaker": {"kind": "tts", "text": "a", "voice": "Vi North"}}, "voice"),
        ({"speaker": {"kind": "tts", "text": "a", "chime": 1}}, "chime"),
        ({"level": "urgent"}, "level"),
        ({"id": ""}, "id"),
        (
            {"valid_from": "2026-12-01T00:00:00Z", "valid_until": "2026-11-01T00:00:00Z"},
            "valid_until",
        ),
        ({"schedule": {"weekdays": [0], "times": ["06:00"]}}, "weekdays"),
        ({"schedule": {"weekdays": [1], "times": ["6:00"]}}, "times"),
        ({"schedule": {"weekdays": [1], "times": ["24:00"]}}, "times"),
        ({"schedule": {"weekdays": [1], "times": []}}, "times"),
    ],
)
def test_bulletin_rules(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Bulletin.model_validate({**bulletin(), **change})
    assert field in str(info.value)


@pytest.mark.parametrize(
    "media",
    [
        {"url": "ftp://cdn.example/a.png", "sha256": SHA, "size": 1, "mime": "image/png"},
        {"url": "https://cdn.example/a.png", "sha256": SHA[:-1], "size": 1, "mime": "image/png"},
        {"url": "https://cdn.example/a.png", "sha256": SHA, "size": -1, "mime": "image/png"},
        {"url": "https://cdn.example/a.png", "sha256": SHA, "size": "1", "mime": "image/png"},
        {"url": "https://cdn.example/a.png", "sha256": SHA, "size": 1, "mime": "png"},
        {"url": "https://cdn.example/a b.png", "sha256": SHA, "size": 1, "mime": "image/png"},
    ],
)
def test_media_rules(media: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Bulletin.model_validate({**bulletin(), "screen": {"kind": "image", "media": media}})


def test_media_accepted() -> None:
    media = {"url": "https://cdn.example/a.png", "sha256": SHA, "size": 0, "mime": "image/png"}
    item = Bulletin.model_validate({**bulletin(), "screen": {"kind": "image", "media": media}})
    assert item.screen is not None and item.screen.media is not None
    assert item.screen.media.sha256 == SHA


def test_program_bulletin_ids_are_unique() -> None:
    with pytest.raises(ValidationError, match="unique"):
        ProgramBody.model_validate({"version": 1, "bulletins": [bulletin(), bulletin()]})


def test_stream_start_channels() -> None:
    ok = StreamStartBody.model_validate({"url": "rtmp://x/live", "channels": ["screen", "speaker"]})
    assert ok.level is Level.NORMAL
    for channels in ([], ["radio"], ["screen", "speaker", "screen"]):
        with pytest.raises(ValidationError):
            StreamStartBody.model_validate({"url": "rtmp://x/live", "channels": channels})


def test_unknown_fields_are_ignored_for_compatible_growth() -> None:
    env = envelope({**document("ping"), "priority_hint": 3, "body": {"future": True}})
    assert env.type == "ping"


# --------------------------------------------------------------------------- device → server


def test_ack_payload() -> None:
    ack = Ack(cmd="01JDX3M7K2Q8", status=Status.DONE, at="2026-11-26T06:00:01Z")
    assert json.loads(ack.payload()) == {
        "v": 1,
        "cmd": "01JDX3M7K2Q8",
        "status": "done",
        "reason": None,
        "detail": "",
        "at": "2026-11-26T06:00:01Z",
    }
    assert b" " not in ack.payload()  # compact


def test_ack_without_id_names_the_topic() -> None:
    ack = Ack(
        cmd=None,
        status=Status.REJECTED,
        reason="malformed",
        at="2026-11-26T06:00:01Z",
        topic="ttcs/v1/dev/d1/cmd",
    )
    data = json.loads(ack.payload())
    assert data["cmd"] is None and data["topic"] == "ttcs/v1/dev/d1/cmd"


def test_ack_time_must_be_rfc3339() -> None:
    with pytest.raises(ValidationError):
        Ack(cmd="x", status=Status.DONE, at="yesterday")


def test_device_state_payloads() -> None:
    will = DeviceState(online=False, device="q10-p12-bang-01")
    assert json.loads(will.payload()) == {"v": 1, "online": False, "device": "q10-p12-bang-01"}
    birth = DeviceState(
        online=True, device="d1", agent_version="0.1", groups=["q10"], capabilities=["ping"],
        since="2026-11-26T06:00:00Z",
    )  # fmt: skip
    assert json.loads(birth.payload())["groups"] == ["q10"]


def test_status_and_event_payloads() -> None:
    status = DeviceStatus(at="2026-11-26T06:00:00Z", uptime_s=5, volume=70, disk_free_bytes=1)
    data = json.loads(status.payload())
    assert (data["v"], data["volume"], data["now"]) == (1, 70, {"screen": None, "speaker": None})
    event = Event(at="2026-11-26T06:00:00Z", severity="warning", code="x", detail="Mất kết nối")
    assert "Mất kết nối".encode() in event.payload()  # UTF-8, not \u escapes


def test_to_json_keeps_vietnamese() -> None:
    assert to_json({"a": "Phường 12"}) == '{"a":"Phường 12"}'.encode()
