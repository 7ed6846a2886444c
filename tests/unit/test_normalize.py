"""Vietnamese text normalization: the case table every reading rule answers to.

Readings are the northern standard that state radio uses: 105 is "một trăm linh năm", 1000 is
"một nghìn", 4 after "mươi" is "tư". "." groups thousands and "," marks decimals. Text that
needs no normalization keeps its case; expansions are lower-case.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from player.normalize import ABBREVIATIONS, normalize, read_number

_2022 = "hai nghìn không trăm hai mươi hai"
_2026 = "hai nghìn không trăm hai mươi sáu"
_HCMC = "thành phố hồ chí minh"

# (id, input, expected). Plain literals, so that an evaluation script can read the table too.
CASES: list[tuple[str, str, str]] = [
    # numbers
    ("0", "0", "không"),
    ("5", "5", "năm"),
    ("10", "10", "mười"),
    ("11", "11", "mười một"),
    ("14", "14", "mười bốn"),
    ("15", "15", "mười lăm"),
    ("20", "20", "hai mươi"),
    ("21", "21", "hai mươi mốt"),
    ("24", "24", "hai mươi tư"),
    ("25", "25", "hai mươi lăm"),
    ("55", "55", "năm mươi lăm"),
    ("100", "100", "một trăm"),
    ("101", "101", "một trăm linh một"),
    ("105", "105", "một trăm linh năm"),
    ("110", "110", "một trăm mười"),
    ("115", "115", "một trăm mười lăm"),
    ("121", "121", "một trăm hai mươi mốt"),
    ("1000", "1000", "một nghìn"),
    ("1.000", "1.000", "một nghìn"),
    ("1001", "1001", "một nghìn không trăm linh một"),
    ("2026", "2026", _2026),
    ("10.000", "10.000", "mười nghìn"),
    ("100.000", "100.000", "một trăm nghìn"),
    ("1.000.000", "1.000.000", "một triệu"),
    ("1,000,000", "1,000,000", "một triệu"),
    (
        "1.234.567",
        "1.234.567",
        "một triệu hai trăm ba mươi tư nghìn năm trăm sáu mươi bảy",
    ),
    ("1.005.000", "1.005.000", "một triệu không trăm linh năm nghìn"),
    ("2 billion", "2.000.000.000", "hai tỷ"),
    ("1.5 billion", "1.500.000.000", "một tỷ năm trăm triệu"),
    ("decimal 3,5", "3,5", "ba phẩy năm"),
    ("decimal 0,25", "0,25", "không phẩy hai mươi lăm"),
    ("decimal 3,05", "3,05", "ba phẩy không năm"),
    ("count in text", "có 3 hộ", "có ba hộ"),
    ("leading zero", "tổ 05", "tổ năm"),
    ("number then letter", "Quốc lộ 1A", "Quốc lộ một A"),
    # dates
    ("date d/m/y", "08/9/2022", f"ngày tám tháng chín năm {_2022}"),
    ("date ngày d/m/y", "ngày 08/9/2022", f"ngày tám tháng chín năm {_2022}"),
    ("date d.m.y", "08.9.2022", f"ngày tám tháng chín năm {_2022}"),
    ("date april", "30/4/1975", "ngày ba mươi tháng tư năm một nghìn chín trăm bảy mươi lăm"),
    ("date capital Ngày", "Ngày 1/1/2026", f"Ngày một tháng một năm {_2026}"),
    ("date iso", "2026-09-08", f"ngày tám tháng chín năm {_2026}"),
    ("date ngày d-m", "ngày 8-9", "ngày tám tháng chín"),
    ("date ngày d/m", "ngày 8/9", "ngày tám tháng chín"),
    ("date bare d/m", "từ 8/9", "từ ngày tám tháng chín"),
    ("date range d-d/m", "từ ngày 8-10/9", "từ ngày tám đến mười tháng chín"),
    ("date range d-d tháng", "ngày 8-10 tháng 9", "ngày tám đến mười tháng chín"),
    ("month/year", "tháng 12/2026", f"tháng mười hai năm {_2026}"),
    ("bare month/year", "12/2026", f"tháng mười hai năm {_2026}"),
    ("tháng 4", "tháng 4", "tháng tư"),
    ("năm 2026", "năm 2026", f"năm {_2026}"),
    ("quarter/year", "Quý I/2026", f"Quý một năm {_2026}"),
    # times
    ("17h30", "17h30", "mười bảy giờ ba mươi phút"),
    ("6h", "6h", "sáu giờ"),
    ("6 giờ", "6 giờ", "sáu giờ"),
    ("7 giờ 30", "7 giờ 30", "bảy giờ ba mươi"),
    ("7h05", "7h05", "bảy giờ năm phút"),
    ("17:30", "17:30", "mười bảy giờ ba mươi phút"),
    ("14g30", "14g30", "mười bốn giờ ba mươi phút"),
    ("0h", "lúc 0h", "lúc không giờ"),
    ("48h duration", "trong 48h", "trong bốn mươi tám giờ"),
    ("range 7-11 giờ", "từ 7-11 giờ", "từ bảy đến mười một giờ"),
    ("range 7h30-11h", "từ 7h30-11h", "từ bảy giờ ba mươi phút đến mười một giờ"),
    ("24/7 is not a date", "trực 24/7", "trực hai tư trên bảy"),
    # percentages
    ("15%", "15%", "mười lăm phần trăm"),
    ("3,5%", "3,5%", "ba phẩy năm phần trăm"),
    ("100%", "100%", "một trăm phần trăm"),
    ("3-5%", "3-5%", "ba đến năm phần trăm"),
    # phone numbers, digit by digit, a pause between groups
    (
        "landline spaced",
        "0283 822 1234",
        "không hai tám ba, tám hai hai, một hai ba bốn",
    ),
    ("mobile", "0912345678", "không chín một hai ba bốn năm sáu bảy tám"),
    ("landline dotted", "028.3822.1234", "không hai tám, ba tám hai hai, một hai ba bốn"),
    ("mobile hyphens", "0912-345-678", "không chín một hai, ba bốn năm, sáu bảy tám"),
    (
        "international",
        "+84 912 345 678",
        "cộng tám bốn, chín một hai, ba bốn năm, sáu bảy tám",
    ),
    ("emergency 114", "gọi 114", "gọi một một bốn"),
    (
        "hotline 1900",
        "đường dây nóng 1900 1234",
        "đường dây nóng một chín không không, một hai ba bốn",
    ),
    # units
    ("km", "5km", "năm ki lô mét"),
    ("m", "12 m", "mười hai mét"),
    ("cm", "15 cm", "mười lăm xen ti mét"),
    ("kg", "50 kg", "năm mươi ki lô gam"),
    ("g", "500g", "năm trăm gam"),
    ("°C", "35°C", "ba mươi lăm độ xê"),
    ("negative °C", "-5°C", "âm năm độ xê"),
    ("range °C", "20-25°C", "hai mươi đến hai mươi lăm độ xê"),
    ("mm rain", "lượng mưa 120 mm", "lượng mưa một trăm hai mươi mi li mét"),
    ("ha", "2,5 ha", "hai phẩy năm héc ta"),
    ("m2", "100 m2", "một trăm mét vuông"),
    ("m²", "100m²", "một trăm mét vuông"),
    ("m3", "3 m3", "ba mét khối"),
    ("km/h", "60 km/h", "sáu mươi ki lô mét trên giờ"),
    ("đ", "50.000đ", "năm mươi nghìn đồng"),
    ("VNĐ", "200.000 VNĐ", "hai trăm nghìn đồng"),
    ("đồng", "1.500.000 đồng", "một triệu năm trăm nghìn đồng"),
    # ordinals and roman numerals
    ("thứ 2", "thứ 2", "thứ hai"),
    ("thứ 4", "thứ 4", "thứ tư"),
    ("Thứ 7", "Thứ 7", "Thứ bảy"),
    ("lần thứ 1", "lần thứ 1", "lần thứ nhất"),
    ("kỳ họp thứ 10", "kỳ họp thứ 10", "kỳ họp thứ mười"),
    ("Quý IV", "Quý IV", "Quý bốn"),
    ("khóa XV", "khóa XV", "khóa mười lăm"),
    ("thế kỷ XXI", "thế kỷ XXI", "thế kỷ hai mươi mốt"),
    ("address hẻm", "hẻm 12/3", "hẻm mười hai trên ba"),
    # abbreviations
    ("UBND", "UBND", "ủy ban nhân dân"),
    ("HĐND", "HĐND", "hội đồng nhân dân"),
    ("MTTQ", "MTTQ", "mặt trận tổ quốc"),
    ("UBMTTQVN", "UBMTTQVN", "ủy ban mặt trận tổ quốc việt nam"),
    ("TP.HCM", "TP.HCM", _HCMC),
    ("TP HCM", "TP HCM", _HCMC),
    ("Tp.HCM", "Tp.HCM", _HCMC),
    ("TP. name", "TP. Thủ Đức", "thành phố Thủ Đức"),
    ("Q.10", "Q.10", "quận mười"),
    ("P.12", "P.12", "phường mười hai"),
    ("Q. name", "Q. Bình Thạnh", "quận Bình Thạnh"),
    ("KP.3", "KP.3", "khu phố ba"),
    ("TDP 5", "TDP 5", "tổ dân phố năm"),
    ("CA phường", "CA phường", "công an phường"),
    ("CSGT", "CSGT", "cảnh sát giao thông"),
    ("PCCC&CNCH", "PCCC&CNCH", "phòng cháy chữa cháy và cứu nạn cứu hộ"),
    ("BHYT", "BHYT", "bảo hiểm y tế"),
    ("BHXH", "BHXH", "bảo hiểm xã hội"),
    ("THCS", "THCS", "trung học cơ sở"),
    ("THPT", "THPT", "trung học phổ thông"),
    ("CMND", "CMND", "chứng minh nhân dân"),
    ("CCCD", "CCCD", "căn cước công dân"),
    ("ĐBQH", "ĐBQH", "đại biểu quốc hội"),
    ("NĐ-CP", "NĐ-CP", "nghị định chính phủ"),
    ("COVID-19", "COVID-19", "cô vít mười chín"),
    ("Đ/c", "Đ/c Nguyễn Văn An", "đồng chí Nguyễn Văn An"),
    ("V/v", "V/v tiêm vắc xin", "về việc tiêm vắc xin"),
    ("v.v. at the end", "gạo, muối, v.v.", "gạo, muối, vân vân."),
    ("all-caps THỨ TƯ kept", "THỨ TƯ", "THỨ TƯ"),
    # mixed sentences
    (
        "mixed notice",
        "UBND P.12, Q.10 thông báo: từ 7h30 ngày 08/9/2022, cắt điện 15% hộ dân.",
        "ủy ban nhân dân phường mười hai, quận mười thông báo: từ bảy giờ ba mươi phút"
        f" ngày tám tháng chín năm {_2022}, cắt điện mười lăm phần trăm hộ dân.",
    ),
    (
        "mixed contact",
        "Mọi thắc mắc liên hệ CA phường, SĐT 0283 822 1234.",
        "Mọi thắc mắc liên hệ công an phường, số điện thoại không hai tám ba, tám hai hai,"
        " một hai ba bốn.",
    ),
    (
        "mixed weather",
        "Mưa lớn 120 mm, nhiệt độ 24-26°C, gió 60 km/h.",
        "Mưa lớn một trăm hai mươi mi li mét, nhiệt độ hai mươi tư đến hai mươi sáu độ xê,"
        " gió sáu mươi ki lô mét trên giờ.",
    ),
    (
        "mixed session",
        "Thứ 2 (ngày 8/9) lúc 14h, HĐND TP.HCM họp kỳ thứ 10.",
        f"Thứ hai (ngày tám tháng chín) lúc mười bốn giờ, hội đồng nhân dân {_HCMC} họp kỳ"
        " thứ mười.",
    ),
    (
        "mixed schools",
        "Học sinh THCS, THPT mang theo CCCD hoặc CMND.",
        "Học sinh trung học cơ sở, trung học phổ thông mang theo căn cước công dân hoặc"
        " chứng minh nhân dân.",
    ),
    (
        "mixed population",
        "Dân số 12.345 người, tăng 2,5% so với năm 2025.",
        "Dân số mười hai nghìn ba trăm bốn mươi lăm người, tăng hai phẩy năm phần trăm so với"
        " năm hai nghìn không trăm hai mươi lăm.",
    ),
    (
        "mixed fee",
        "Mức đóng BHYT 1.105.000 đồng, hạn chót 30/6.",
        "Mức đóng bảo hiểm y tế một triệu một trăm linh năm nghìn đồng, hạn chót ngày ba mươi"
        " tháng sáu.",
    ),
    (
        "mixed congress",
        "Đại hội XIII của ĐCSVN",
        "Đại hội mười ba của đảng cộng sản việt nam",
    ),
    (
        "NFD input",
        "U\u0309y ban nha\u0302n da\u0302n phu\u031bo\u031b\u0300ng 12 tho\u0302ng ba\u0301o",
        "Ủy ban nhân dân phường mười hai thông báo",
    ),
]

ANNOUNCEMENT = (
    "THÔNG BÁO. UBND P.12, Q.10, TP.HCM thông báo: từ 7h30 đến 11h ngày 08/9/2022 (thứ 5), "
    "Công ty Điện lực sẽ cắt điện để bảo trì lưới tại KP.3 và KP.4, TDP 5, hẻm 12/3 đường Lê "
    "Lợi. Khoảng 1.250 hộ dân, tương đương 15% số hộ của phường, bị ảnh hưởng. Đề nghị bà con "
    "chủ động tích trữ nước; mức hỗ trợ là 200.000 VNĐ/hộ. Nhiệt độ dự báo 35°C, lượng mưa "
    "20 mm. Mọi thắc mắc liên hệ CA phường hoặc Đ/c Nguyễn Văn An, SĐT 0283 822 1234 hoặc "
    "0912345678. Học sinh THCS, THPT nghỉ học ngày 8-9. Xin cảm ơn."
)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 90
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_case_table(text: str, expected: str) -> None:
    assert normalize(text) == expected


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


def test_an_announcement_is_normalized_in_well_under_10_ms() -> None:
    normalize(ANNOUNCEMENT)
    best = min(_seconds(ANNOUNCEMENT) for _ in range(5))
    spoken = normalize(ANNOUNCEMENT)
    assert not re.search(r"\d", spoken)
    assert best < 0.010


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
    "Quý ",
    "IV",
    "Q.",
    "KP",
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
