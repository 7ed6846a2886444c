"""Dates and fractions in words: "08/9/2022", "15-17/9", "tháng 12/2026", "3/4 dân số".

A bare "d/m" is the hard case: "3/4 dân số" is "ba phần tư", "hôm 3/4" is "hôm ba tháng tư".
The context words that decide live in ``player.readings``; ``_date_or_fraction`` says how they
are weighed. Roman numerals after their keyword ("Quý IV", "khóa XV") are read here too.
"""

from __future__ import annotations

import re

from player.numbers import is_date, read_fraction, read_month, read_number, read_ordinal
from player.patterns import (
    DASH,
    LETTER,
    NO_LETTER_AFTER,
    NO_LETTER_BEFORE,
    Rule,
    cased,
    ends_with,
    one_of,
    spaced,
    starts_with,
    unless_after,
    when_before,
)
from player.readings import (
    DATE_AFTER,
    DATE_BEFORE,
    DATE_WEAK_BEFORE,
    DAY_WORDS,
    FRACTION_AFTER,
    FRACTION_BEFORE,
    ROMAN_KEYWORDS,
    STREET_WORDS,
    YEARS,
)

__all__ = ["DATE_RULES"]

_MONTH_WORDS = one_of(read_month(m) for m in range(1, 13))
# The context that makes "d/m" a date or a fraction, from the tables in player.readings.
_NO_NGAY_BEFORE = ends_with((*DAY_WORDS, *STREET_WORDS))
_DATE_BEFORE = ends_with((*DAY_WORDS, *STREET_WORDS, *DATE_BEFORE))
_DATE_AFTER = starts_with(DATE_AFTER)
_FRACTION_BEFORE = ends_with(FRACTION_BEFORE, r"\s*:?\s*$")
_FRACTION_AFTER = starts_with(FRACTION_AFTER)
_DATE_WEAK_BEFORE = ends_with(DATE_WEAK_BEFORE, r"\s*:?\s*$")
# The previous item of a list of dates, already read: "ngày tám tháng chín và 10/9".
_DATE_LIST_BEFORE = re.compile(
    NO_LETTER_BEFORE + r"tháng\s+(?:" + _MONTH_WORDS + r")(?:\s+năm(?:\s+[^\W\d_]+){1,8}?)?"
    r"\s*(?:,|và|hoặc|đến|tới|[-–])\s*$"
)
# A named day: "Ngày Pháp luật Việt Nam 9/11", "Ngày Nhà giáo Việt Nam 20/11".
_NAMED_DAY_BEFORE = re.compile(NO_LETTER_BEFORE + r"Ngày(?:\s+[^\W\d_]+){1,6}\s*[,(]?\s*$")
_DATE_LIST_AFTER = re.compile(r"\s*(?:,|và|hoặc|đến|tới|[-–])\s*(?i:ngày)\s")
_THANG_BEFORE = ends_with(("tháng",), r"\s+$")
_CONTEXT_REACH = 60  # characters of context looked at on each side


def _day_prefix(m: re.Match[str]) -> str:
    """The "ngày " before a date, unless the text just said it ("ngày 8/9", "hôm 3/4",
    "đường 3/2")."""
    start = m.start()
    return "" if _NO_NGAY_BEFORE.search(m.string, max(0, start - 30), start) else "ngày "


def _date(m: re.Match[str], day: str, month: str, year: str | None) -> str:
    d, mo = int(day), int(month)
    if not is_date(d, mo):
        return m.group(0)
    words = f"{_day_prefix(m)}{read_number(d)} tháng {read_month(mo)}"
    return spaced(m, f"{words} năm {read_number(int(year))}" if year else words)


def _full_date(m: re.Match[str]) -> str:
    return _date(m, m.group("d"), m.group("m"), m.group("y"))


def _date_range(m: re.Match[str]) -> str:
    """15/9-17/9, 30/4 – 1/5/2025: two dates joined by a dash."""
    d1, m1, d2, m2 = (int(m.group(g)) for g in ("d1", "m1", "d2", "m2"))
    if not (is_date(d1, m1) and is_date(d2, m2)):
        return m.group(0)
    first = f"{_day_prefix(m)}{read_number(d1)} tháng {read_month(m1)}"
    if m.group("y1"):
        first += f" năm {read_number(int(m.group('y1')))}"
    last = f"ngày {read_number(d2)} tháng {read_month(m2)}"
    if m.group("y2"):
        last += f" năm {read_number(int(m.group('y2')))}"
    return spaced(m, f"{first} đến {last}")


def _day_range(m: re.Match[str]) -> str:
    """7-9/9, 8-10 tháng 9: days of one month."""
    first, last, month, year = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    if not (is_date(first, 1) and is_date(last, 1)):
        return m.group(0)
    words = f"{_day_prefix(m)}{read_number(first)} đến {read_number(last)}"
    if month is None:
        return spaced(m, words)
    if not is_date(last, int(month)):
        return m.group(0)
    words += f" tháng {read_month(int(month))}"
    return spaced(m, words + (f" năm {read_number(int(year))}" if year else ""))


def _month_year(m: re.Match[str]) -> str:
    month = int(m.group(1))
    start = m.start()
    said = _THANG_BEFORE.search(m.string, max(0, start - 10), start)
    if not 1 <= month <= 12 or not (said or int(m.group(2)) in YEARS):
        return m.group(0)
    words = f"{'' if said else 'tháng '}{read_month(month)} năm {read_number(int(m.group(2)))}"
    return spaced(m, words)


def _day_dash_month(m: re.Match[str]) -> str:
    """A "ngày 8-9" is the eighth of September; without "ngày", "8-9" is a range."""
    day, month = int(m.group(2)), int(m.group(3))
    if not is_date(day, month):
        return m.group(0)
    return spaced(m, f"{m.group(1)}{read_number(day)} tháng {read_month(month)}")


def _month_range(m: re.Match[str]) -> str:
    first, last = int(m.group(2)), int(m.group(3))
    if not (1 <= first <= 12 and 1 <= last <= 12):
        return m.group(0)
    words = f"{m.group(1)}{read_month(first)} đến tháng {read_month(last)}"
    return spaced(m, f"{words} năm {read_number(int(m.group(4)))}")


def _month_name(m: re.Match[str]) -> str:
    month = int(m.group(2))
    return m.group(1) + read_month(month) if 1 <= month <= 12 else m.group(0)


def _date_or_fraction(m: re.Match[str]) -> str:
    """A bare "a/b": a fraction ("3/4 dân số"), unless its context makes it a date.

    A date when the day and month are valid and the text around says so: a day word, a part of
    the day or a weekday just before ("ngày", "hôm", "chiều", "thứ Hai") or a weekday just
    after. Otherwise a share word before ("chiếm", "khoảng") or a whole after ("số hộ", "dân
    số") makes it a fraction; then a weaker date word before ("từ", "đến", "hạn chót"), a named
    day ("Ngày Pháp luật 9/11") or a list of dates around it makes it a date. "30/6" cannot be
    a fraction, so it is a date; "45/12" is neither and is left for the "trên" rule.
    """
    a, b = m.group("a"), m.group("b")
    num, den = int(a), int(b)
    text, start, end = m.string, m.start(), m.end()
    lo, hi = max(0, start - _CONTEXT_REACH), end + _CONTEXT_REACH
    dated = len(a) <= 2 and len(b) <= 2 and is_date(num, den)
    share = 0 < num < den
    if dated and (
        not share or _DATE_BEFORE.search(text, lo, start) or _DATE_AFTER.match(text, end, hi)
    ):
        return _date(m, a, b, None)
    if not share:
        return m.group(0)
    if _FRACTION_BEFORE.search(text, lo, start) or _FRACTION_AFTER.match(text, end):
        return spaced(m, read_fraction(num, den))
    if dated and (
        _DATE_WEAK_BEFORE.search(text, lo, start)
        or _NAMED_DAY_BEFORE.search(text, lo, start)
        or _DATE_LIST_BEFORE.search(text, lo, start)
        or _DATE_LIST_AFTER.match(text, end, hi)
    ):
        return _date(m, a, b, None)
    return spaced(m, read_fraction(num, den))


_ROMAN_BEFORE = ends_with(ROMAN_KEYWORDS, r"\s+$")
_ROMAN = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def _roman(m: re.Match[str]) -> str:
    """Quý IV, khóa XV, Đại hội XIII, lần thứ IV: a Roman numeral after its keyword."""
    start = m.start()
    keyword = _ROMAN_BEFORE.search(m.string, max(0, start - 12), start)
    value = _roman_value(m.group(1))
    if keyword is None or value is None:
        return m.group(0)
    ordinal = keyword.group(0).rstrip().lower().endswith("thứ")
    words = read_ordinal(value) if ordinal else read_number(value)
    year = f" năm {read_number(int(m.group(2)))}" if m.group(2) else ""
    return spaced(m, words + year)


def _roman_value(numeral: str) -> int | None:
    if not numeral or not _ROMAN.fullmatch(numeral):
        return None
    values = [_ROMAN_VALUES[c] for c in numeral]
    return sum(-v if v < after else v for v, after in zip(values, [*values[1:], 0], strict=True))


_END = r"(?![\d/]|[.,\-]\d)"
_NGAY = cased("ngày")
_THANG = cased("tháng")
_NOT_IN_NUMBER = r"[\d/.,\-]"  # what may not come just before a day or a month

# The date rules, the most specific first. A "ngày" or "tháng" before a date stays in the text.
DATE_RULES: tuple[Rule, ...] = (
    (
        re.compile(r"(?P<y>\d\d{3})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?![\d\-])"),
        unless_after(r"[\d\-]", _full_date),
    ),
    (
        re.compile(
            r"(?P<d1>\d\d?)/(?P<m1>\d{1,2})(?:/(?P<y1>\d{4}))?"
            + DASH
            + "(?:"
            + _NGAY
            + r"\s+)?(?P<d2>\d{1,2})/(?P<m2>\d{1,2})(?:/(?P<y2>\d{4}))?"
            + _END
        ),
        unless_after(_NOT_IN_NUMBER, _date_range),
    ),
    (
        re.compile(r"(?P<d>\d\d?)(?P<s>[/.\-])(?P<m>\d{1,2})(?P=s)(?P<y>\d{4})" + _END),
        unless_after(_NOT_IN_NUMBER, _full_date),
    ),
    (
        re.compile(
            r"(\d\d?)\s*[-–]\s*(\d{1,2})"
            r"(?:/(\d{1,2})(?:/(\d{4}))?" + _END + r"|(?=\s+(?i:tháng)\s*\d))"
        ),
        unless_after(r"[\d/.,]", _day_range),
    ),
    (
        re.compile("(" + _NGAY + r"\s+)(\d{1,2})-(\d{1,2})" + _END),
        unless_after(LETTER, _day_dash_month),
    ),
    (
        re.compile("(" + _THANG + r"\s+)(\d{1,2})\s*[-–]\s*(\d{1,2})/(\d{4})" + _END),
        unless_after(_NOT_IN_NUMBER, _month_range),
    ),
    (re.compile(r"(\d\d?)/(\d{4})" + _END), unless_after(_NOT_IN_NUMBER, _month_year)),
    (
        re.compile(r"(\d\d?)-(\d{4})" + _END),
        unless_after(_NOT_IN_NUMBER, when_before(_THANG_BEFORE, _month_year)),
    ),
    (
        re.compile(r"(?P<a>\d\d{0,2})/(?P<b>\d{1,4})" + _END),
        unless_after(r"[\w/.,\-]", _date_or_fraction),
    ),
    (re.compile("(" + _THANG + r"\s+)(\d{1,2})(?![\d/]|[.,]\d)"), _month_name),
    (
        re.compile(r"([IVXLCDM]+)" + NO_LETTER_AFTER + r"(?:/(\d{4})(?!\d))?"),
        unless_after(LETTER, _roman),
    ),
)
