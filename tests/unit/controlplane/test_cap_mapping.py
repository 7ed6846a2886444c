"""CAP → our model, row by row of the table in docs/cap.md."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Any

import pytest

from controlplane.cap import parse_alert
from controlplane.cap.mapping import (
    bulletin_id,
    bulletin_of,
    chosen_infos,
    command_id,
    cut,
    level_of,
    screen_text_of,
    spoken_text_of,
    title_of,
)
from controlplane.cap.parse import Alert, Info, Severity, Status, Urgency
from protocol import DOC_ID_RE, Bulletin, Level
from tests.unit.controlplane.conftest import cap_file, make_settings


def flood() -> Alert:
    return parse_alert(cap_file("alert-flood.xml"))


def vi_info(**changes: Any) -> Info:
    return dataclasses.replace(flood().infos[1], **changes)


def texts(bulletin: Bulletin) -> tuple[str, str]:
    """The screen and spoken texts of a bulletin that has both."""
    assert bulletin.screen is not None and bulletin.screen.text is not None
    assert bulletin.speaker is not None and bulletin.speaker.text is not None
    return bulletin.screen.text, bulletin.speaker.text


@pytest.mark.parametrize(
    ("severity", "urgency", "level"),
    [
        (Severity.EXTREME, Urgency.IMMEDIATE, Level.EMERGENCY),
        (Severity.EXTREME, Urgency.EXPECTED, Level.EMERGENCY),
        (Severity.SEVERE, Urgency.IMMEDIATE, Level.EMERGENCY),
        (Severity.SEVERE, Urgency.EXPECTED, Level.EMERGENCY),
        (Severity.EXTREME, Urgency.FUTURE, Level.PRIORITY),
        (Severity.SEVERE, Urgency.PAST, Level.PRIORITY),
        (Severity.SEVERE, Urgency.UNKNOWN, Level.PRIORITY),
        (Severity.MODERATE, Urgency.IMMEDIATE, Level.PRIORITY),
        (Severity.MODERATE, Urgency.FUTURE, Level.PRIORITY),
        (Severity.MINOR, Urgency.IMMEDIATE, None),
        (Severity.UNKNOWN, Urgency.IMMEDIATE, None),
    ],
)
def test_severity_and_urgency_give_the_level(
    severity: Severity, urgency: Urgency, level: Level | None
) -> None:
    assert level_of(vi_info(severity=severity, urgency=urgency)) == level


def test_the_vietnamese_infos_are_chosen() -> None:
    assert chosen_infos(flood()) == [1]
    two = parse_alert(cap_file("alert-two-areas.xml"))  # language "vi", twice
    assert chosen_infos(two) == [0, 1]


def test_without_vietnamese_the_first_language_is_chosen() -> None:
    storm = parse_alert(cap_file("alert-storm-priority.xml"))  # en-US (default), then fr-FR
    assert chosen_infos(storm) == [0]


def test_texts_come_from_headline_description_and_instruction() -> None:
    info = flood().infos[1]
    assert title_of(info, Status.ACTUAL, 200) == "Cảnh báo lũ quét tại Quận 10 và Quận 1"
    assert screen_text_of(info, 2000) == (
        "Mưa lớn 120 mm trong 3 giờ; nhiều tuyến đường đang ngập.\n\n"
        "Mực nước dâng nhanh.\n\n"
        "Di chuyển lên tầng cao. Không đi qua đường ngập."
    )
    assert spoken_text_of(info, Status.ACTUAL, 1000) == (
        "Cảnh báo lũ quét tại Quận 10 và Quận 1. Di chuyển lên tầng cao. Không đi qua đường ngập."
    )


def test_missing_texts_fall_back() -> None:
    bare = vi_info(headline=None, description=None, instruction=None)
    assert title_of(bare, Status.ACTUAL, 200) == "Lũ quét"
    assert screen_text_of(bare, 2000) == "Lũ quét"
    assert spoken_text_of(bare, Status.ACTUAL, 1000) == "Lũ quét."
    no_instruction = vi_info(instruction=None)
    assert spoken_text_of(no_instruction, Status.ACTUAL, 1000).endswith("Mực nước dâng nhanh.")


def test_drills_say_so_on_screen_and_aloud() -> None:
    info = flood().infos[1]
    assert title_of(info, Status.EXERCISE, 200).startswith("DIỄN TẬP – ")
    assert title_of(info, Status.TEST, 200).startswith("THỬ NGHIỆM – ")
    assert spoken_text_of(info, Status.EXERCISE, 1000).startswith("Đây là tin diễn tập. ")
    assert spoken_text_of(info, Status.TEST, 1000).startswith("Đây là tin thử nghiệm. ")


def test_texts_are_nfc() -> None:
    two = parse_alert(cap_file("alert-two-areas.xml"))
    raw = two.infos[0].instruction
    assert raw is not None and not unicodedata.is_normalized("NFC", raw)  # the fixture is NFD
    bulletin = bulletin_of(two, 0, Level.EMERGENCY, make_settings())
    screen, spoken = texts(bulletin)
    for text in (bulletin.title, screen, spoken):
        assert unicodedata.is_normalized("NFC", text)
    assert "sơ tán ngay" in spoken


def test_long_texts_are_cut_at_a_word() -> None:
    assert cut("một hai ba bốn năm", 100) == "một hai ba bốn năm"
    assert cut("một hai ba bốn năm", 12) == "một hai ba…"
    assert len(cut("x" * 500, 200)) == 200
    long = vi_info(headline="Cảnh báo " * 60, description="Mưa lớn. " * 1000)
    settings = make_settings()
    assert len(title_of(long, Status.ACTUAL, settings.max_title_chars)) <= 200
    bulletin = bulletin_of(dataclasses.replace(flood(), infos=(long,)), 0, Level.PRIORITY, settings)
    screen, spoken = texts(bulletin)
    assert len(screen) <= 2000 and len(spoken) <= 1000


def test_ids_are_stable_and_fit_the_protocol() -> None:
    bid = bulletin_id("canhbao@kttv.gov.vn", "KTTV-2026-1126-001", 1)
    assert bid == bulletin_id("canhbao@kttv.gov.vn", "KTTV-2026-1126-001", 1)
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", bid)
    assert bid != bulletin_id("other@kttv.gov.vn", "KTTV-2026-1126-001", 1)
    cid = command_id("start", "k", "0", "q10-p12", "emergency.start")
    assert DOC_ID_RE.match(cid) and cid == command_id(
        "start", "k", "0", "q10-p12", "emergency.start"
    )
    assert cid != command_id("start", "k", "0", "q10-p13", "emergency.start")


def test_the_bulletin_speaks_and_shows_the_alert() -> None:
    settings = make_settings(voice="vi-south", screen_duration_ms=45_000)
    bulletin = bulletin_of(flood(), 1, Level.EMERGENCY, settings)
    assert bulletin.level == Level.EMERGENCY
    assert bulletin.screen is not None and bulletin.screen.kind == "text"
    assert bulletin.screen.duration_ms == 45_000
    assert bulletin.speaker is not None and bulletin.speaker.kind == "tts"
    assert (bulletin.speaker.voice, bulletin.speaker.chime) == ("vi-south", True)
