"""Vietnamese text normalization: the case table every reading rule answers to.

Readings are the northern standard that state radio uses: 105 is "một trăm linh năm", 1000 is
"một nghìn", 4 after "mươi" is "tư". "." groups thousands and "," marks decimals. Text that
needs no normalization keeps its case; expansions are lower-case. The table itself is data,
``normalize_cases.tsv`` next to this file (its header says how to read it).
"""

from __future__ import annotations

import csv
import re
import time
import unicodedata
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from player import readings
from player.normalize import ABBREVIATIONS, normalize, read_number

TABLE = Path(__file__).with_name("normalize_cases.tsv")


class Case(NamedTuple):
    """One line of the table: what is written, what we say, what else would be right."""

    line: int
    kind: str
    text: str
    reading: str
    also: tuple[str, ...]


def _load(path: Path) -> list[Case]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            Case(n, row[0], row[1], row[2], tuple(row[3:]))
            for n, row in enumerate(rows, start=1)
            if row and not row[0].startswith("#")
        ]


CASES = _load(TABLE)

ANNOUNCEMENT = (
    "THÔNG BÁO. UBND P.12, Q.10, TP.HCM thông báo: từ 7h30 đến 11h ngày 08/9/2022 (thứ 5), "
    "Công ty Điện lực sẽ cắt điện để bảo trì lưới tại KP.3 và KP.4, TDP 5, hẻm 12/3 đường Lê "
    "Lợi. Khoảng 1.250 hộ dân, tương đương 15% số hộ của phường, bị ảnh hưởng. Đề nghị bà con "
    "chủ động tích trữ nước; mức hỗ trợ là 200.000 VNĐ/hộ. Nhiệt độ dự báo 35°C, lượng mưa "
    "20 mm. Mọi thắc mắc liên hệ CA phường hoặc Đ/c Nguyễn Văn An, SĐT 0283 822 1234 hoặc "
    "0912345678. Học sinh THCS, THPT nghỉ học ngày 8-9. Xin cảm ơn."
)

# A typhoon bulletin as a ward relays it (docs/normalization.md shows what it becomes).
BULLETIN = (
    "TIN BÃO KHẨN CẤP (Cơn bão số 3 - YAGI). Hồi 04 giờ ngày 07/9, vị trí tâm bão ở vào khoảng "
    "20,3 độ Vĩ Bắc; 108,2 độ Kinh Đông, cách Quảng Ninh khoảng 130km, cách Hải Phòng khoảng "
    "160km. Sức gió mạnh nhất vùng gần tâm bão mạnh cấp 14-15 (150-183 km/h), giật trên cấp 17. "
    "Dự báo trong 3-6 giờ tới, bão di chuyển theo hướng Tây Tây Bắc, tốc độ 15-20km/h. Từ chiều "
    "tối 07/9, vùng ven biển từ Quảng Ninh đến Thái Bình có gió mạnh cấp 10-12, giật cấp 15; sóng "
    "biển cao 3-5m. Từ ngày 07-09/9, khu vực Bắc Bộ có mưa to đến rất to với lượng mưa phổ biến "
    "200-300mm, có nơi trên 500mm. Cấp độ rủi ro thiên tai do bão: cấp 4. Thực hiện Công điện số "
    "86/CĐ-TTg của Thủ tướng Chính phủ, BCH PCTT&TKCN phường đề nghị bà con chằng chống nhà cửa, "
    "không ra khỏi nhà từ 10h-20h ngày 07/9. Mọi thông tin liên hệ đường dây nóng 0912.345.678."
)


def test_the_table_is_large_enough_and_well_formed() -> None:
    assert len(CASES) >= 500
    assert len({case.text for case in CASES}) == len(CASES), "a text is in the table twice"
    for case in CASES:
        for reading in (case.reading, *case.also):
            assert unicodedata.is_normalized("NFC", reading), case.line
            assert not re.search(r"\d", reading), case.line


@pytest.mark.parametrize("case", CASES, ids=[f"{c.line}-{c.kind}-{c.text[:40]}" for c in CASES])
def test_case_table(case: Case) -> None:
    assert normalize(case.text) == case.reading


def test_a_second_pass_over_the_table_changes_nothing() -> None:
    for case in CASES:
        assert normalize(case.reading) == case.reading, case.line


def test_the_examples_of_the_documentation_are_what_is_said() -> None:
    doc = Path(__file__).parents[2] / "docs" / "normalization.md"
    examples = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|$", doc.read_text("utf-8"), re.MULTILINE)
    assert len(examples) > 80
    for written, spoken in examples:
        if not written.startswith("player/"):  # the table of modules
            assert normalize(written) == spoken.strip(), written


def test_decomposed_input_is_composed_first() -> None:
    nfd = unicodedata.normalize("NFD", "Ủy ban nhân dân phường 12 thông báo")
    assert normalize(nfd) == "Ủy ban nhân dân phường mười hai thông báo"


def test_readings_are_lower_case_words() -> None:
    tables: list[dict[str, str]] = [
        readings.UNITS,
        readings.DOCUMENT_TYPES,
        readings.DOCUMENT_BODIES,
        readings.ROADS,
        readings.FIXED_READINGS,
    ]
    spoken = [w for table in tables for w in table.values()]
    spoken += [row[3] for row in readings.CONTEXT_ABBREVIATIONS]
    spoken += [name for name, _ in readings.DIVISIONS.values()]
    for words in spoken:
        assert words == words.lower() and not re.search(r"\d", words), words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "không"),
        (-7, "âm bảy"),
        (1_000_000_001, "một tỷ không trăm linh một"),
        (1_005_000_000, "một tỷ không trăm linh năm triệu"),
        (1_000_050_000, "một tỷ không trăm năm mươi nghìn"),
        (1_000_000_000_000, "một nghìn tỷ"),
        (2_024_000_000_000, "hai nghìn không trăm hai mươi tư tỷ"),
    ],
)
def test_read_number(n: int, words: str) -> None:
    assert read_number(n) == words


def test_the_dictionary_covers_ward_vocabulary() -> None:
    assert len(ABBREVIATIONS) >= 40
    for key, words in ABBREVIATIONS.items():
        assert words == words.lower(), key
        assert not re.search(r"\d", words), key
        assert normalize(f"của {key} và") == f"của {words} và", key


@pytest.mark.parametrize("text", [ANNOUNCEMENT, BULLETIN], ids=["announcement", "bulletin"])
def test_an_announcement_is_normalized_in_well_under_10_ms(text: str) -> None:
    normalize(text)
    best = min(_seconds(text) for _ in range(5))
    spoken = normalize(text)
    assert not re.search(r"\d", spoken)
    assert best < 0.010


def test_the_bulletin_reads_like_the_radio() -> None:
    spoken = normalize(BULLETIN)
    for heard in (
        "Hồi bốn giờ ngày bảy tháng chín",
        "hai mươi phẩy ba độ Vĩ Bắc; một trăm linh tám phẩy hai độ Kinh Đông",
        "cấp mười bốn đến mười lăm (một trăm năm mươi đến một trăm tám mươi ba ki lô mét trên giờ)",
        "Từ ngày bảy đến chín tháng chín",
        "hai trăm đến ba trăm mi li mét",
        "Công điện số tám mươi sáu của Thủ tướng Chính phủ",
        "ban chỉ huy phòng chống thiên tai và tìm kiếm cứu nạn phường",
        "từ mười giờ đến hai mươi giờ ngày bảy tháng chín",
    ):
        assert heard in spoken


def _seconds(text: str) -> float:
    start = time.perf_counter()
    normalize(text)
    return time.perf_counter() - start


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_any_text_gives_a_string(text: str) -> None:
    assert isinstance(normalize(text), str)


# Pieces that the rules look for, shuffled into text that no announcement would contain.
_PIECES = [
    *"0123456789 .,:/-–%h°Cmkgđ+abnôư\n",
    "ngày ",
    "tháng ",
    "thứ ",
    "hôm ",
    "từ ",
    "số ",
    "Quý ",
    "IV",
    "Q.",
    "H. ",
    "KP",
    "QL",
    "ĐT.",
    "BĐ",
    "QĐ-UBND",
    "TT-BTTTT",
    "NQ",
    "/TW",
    "tỷ lệ ",
    "đồng",
    "m³/s",
    "‰",
    "A",
]
_TEXTY = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)


@settings(max_examples=500, deadline=None)
@given(_TEXTY)
def test_no_digit_survives_and_a_second_pass_changes_nothing(text: str) -> None:
    once = normalize(text)
    assert not re.search(r"\d", once)
    assert normalize(once) == once


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_a_plain_integer_reads_as_its_number(n: int) -> None:
    text = str(n)
    if re.fullmatch(r"1[89]00(?:\d{4}|\d{6})", text):
        return  # a 1800/1900 number of 8 or 10 digits is a hotline, read digit by digit
    assert normalize(text) == read_number(n)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1_000, max_value=10**12))
def test_thousands_separators_do_not_change_the_reading(n: int) -> None:
    assert normalize(f"{n:,}".replace(",", ".")) == read_number(n)
