"""Vietnamese text normalization for speech: what the announcer would say, in words.

Piper and espeak-ng read "08/9" digit by digit and "UBND" letter by letter, so text is rewritten
before synthesis: numbers by the northern reading rules (``player.numbers``), legal document
numbers (``player.documents``), dates, fractions, ranges, times, units, phone numbers digit by
digit, and the abbreviations of ward notices. What each written form is read as lives in tables
(``player.readings``); this module holds the rules that find the forms and pick a reading by
context. Rules run in a fixed order, the most specific first: a document number is claimed
before its codes can look like abbreviations, a phone number before it can look like a date, a
date before it can look like a range. Text that no rule claims keeps its case and punctuation,
so sentence breaks survive. Pure Python, no I/O, and it never raises.

Speed: each pattern begins with the character it needs (a digit, a slash, a letter of a word
list), and what must not come before it is checked after that character or by ``_unless_after``
in the replacement. A pattern that begins with a look-behind, an optional group or a
case-insensitive word is tried at every position of the text; one that begins with a character
lets the regex engine jump from one candidate to the next, 5 to 30 times faster per rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from player.documents import DOCUMENT_NUMBER, read_document_number
from player.numbers import (
    is_date,
    read_decimals,
    read_digits,
    read_fraction,
    read_integer,
    read_month,
    read_number,
    read_ordinal,
)
from player.readings import (
    ABBREVIATIONS,
    CONTEXT_ABBREVIATIONS,
    COUNTED_PER_UNIT,
    DATE_AFTER,
    DATE_BEFORE,
    DATE_WEAK_BEFORE,
    DAY_WORDS,
    DIVISIONS,
    FIXED_READINGS,
    FRACTION_AFTER,
    FRACTION_BEFORE,
    MONEY_WORDS,
    ROADS,
    ROADS_ATTACHED_ONLY,
    STREET_WORDS,
    SYLLABLE_KEYS,
    UNITS,
    YEARS,
)
from player.text import nfc

__all__ = ["ABBREVIATIONS", "normalize", "read_digits", "read_number"]

_Replace = Callable[[re.Match[str]], str]
_Rule = tuple[re.Pattern[str], _Replace]

# A digit touching a word is spaced off before a second pass, so only a letter counts as touching.
_LETTER = r"[^\W\d_]"
_NO_LETTER_BEFORE = r"(?<![^\W\d_])"
_NO_LETTER_AFTER = r"(?![^\W\d_])"


def _words(words: Iterable[str], end: Callable[[str], str] = lambda word: "") -> str:
    """A regular expression for any of ``words``, the longest that fits, followed by ``end(word)``.

    Built as a trie ("TP", "TP.", "TP.HCM" share "TP"): an alternation of a hundred literals is
    tried one by one at every position, which made the abbreviation rule 4 times slower. A space
    in a word matches any white space.
    """
    return _trie(sorted(set(words)), "", end)


def _trie(words: list[str], prefix: str, end: Callable[[str], str]) -> str:
    children: dict[str, list[str]] = {}
    for word in words:
        if len(word) > len(prefix):
            children.setdefault(word[len(prefix)], []).append(word)
    # Longer words first, and the word that ends here last: the longest that fits wins.
    order = sorted(children, key=lambda c: -max(map(len, children[c])))
    alts = [_char(c) + _trie(children[c], prefix + c, end) for c in order]
    if prefix and prefix in words:
        alts.append(end(prefix))
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _char(c: str) -> str:
    return r"\s+" if c == " " else re.escape(c)


def _cased(word: str) -> str:
    """``word`` in either case, letter by letter ("[Nn][Gg][Àà][Yy]"): unlike (?i:ngày), a
    pattern that begins with it still lets the engine jump to candidates."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def _unless_after(before: str, replace: _Replace) -> _Replace:
    """``replace``, unless the character just before the match is in the class ``before``.

    It stands for a look-behind at the start of the pattern (see the module's note on speed).
    """
    guard = re.compile(before)

    def guarded(m: re.Match[str]) -> str:
        start = m.start()
        if start and guard.match(m.string, start - 1):
            return m.group(0)
        return replace(m)

    return guarded


def _when_before(context: re.Pattern[str], replace: _Replace, reach: int = 40) -> _Replace:
    """``replace``, only when the text just before the match ends with ``context``."""

    def checked(m: re.Match[str]) -> str:
        start = m.start()
        if not context.search(m.string, max(0, start - reach), start):
            return m.group(0)
        return replace(m)

    return checked


def _spaced(m: re.Match[str], words: str) -> str:
    """Words in place of a match, kept apart from letters or digits that touch it."""
    text = m.string
    before = " " if m.start() > 0 and text[m.start() - 1].isalnum() else ""
    after = " " if m.end() < len(text) and text[m.end()].isalnum() else ""
    return before + words + after


def _constant(words: str) -> _Replace:
    return lambda m: _spaced(m, words)


def _ends_with(words: Iterable[str], tail: str = r"\s*[,(:]?\s*$") -> re.Pattern[str]:
    """The end of a text: one of ``words`` as a whole word, then ``tail``."""
    return re.compile(_NO_LETTER_BEFORE + "(?:" + _words(words) + ")" + tail, re.IGNORECASE)


def _starts_with(words: Iterable[str]) -> re.Pattern[str]:
    """The start of a text: one of ``words`` as a whole word, maybe after "(" or ","."""
    return re.compile(r"\s*[,(]?\s*(?:" + _words(words) + r")(?!\w)", re.IGNORECASE)


# ------------------------------------------------------------------------ abbreviations

_Context = tuple[re.Pattern[str] | None, re.Pattern[str] | None, str]


def _context_abbreviations() -> dict[str, list[_Context]]:
    table: dict[str, list[_Context]] = {}
    for key, before, after, words in CONTEXT_ABBREVIATIONS:
        rule = (re.compile(before) if before else None, re.compile(after) if after else None)
        table.setdefault(key, []).append((*rule, words))
    return table


_CONTEXT = _context_abbreviations()


def _abbreviation(m: re.Match[str]) -> str:
    key = m.group("key")
    words = _context_reading(m, key)
    if words is None:
        if key not in ABBREVIATIONS or (key in SYLLABLE_KEYS and _in_capitals(m)):
            return m.group(0)
        words = ABBREVIATIONS[key]
    if key == "v.v." and re.match(r"\s*(?:$|\n|[A-ZĐ])", m.string[m.end() :]):
        words += "."  # the abbreviation's dot also ended the sentence
    return _spaced(m, words)


def _context_reading(m: re.Match[str], key: str) -> str | None:
    """The reading of the first CONTEXT_ABBREVIATIONS row for ``key`` whose context fits."""
    for before, after, words in _CONTEXT.get(key, ()):
        if before is not None and not before.search(m.string, max(0, m.start() - 30), m.start()):
            continue
        if after is not None and not after.match(m.string, m.end()):
            continue
        return words
    return None


def _in_capitals(m: re.Match[str]) -> bool:
    text = m.string
    near = re.findall(r"\w+", text[max(0, m.start() - 30) : m.start()])[-1:]
    near += re.findall(r"\w+", text[m.end() : m.end() + 30])[:1]
    # Digits are read out and spaced off, so only a word of letters counts.
    return any(w.isalpha() and w.isupper() and len(w) > 1 and w not in ABBREVIATIONS for w in near)


def _abbreviation_pattern() -> re.Pattern[str]:
    keys = _words({*ABBREVIATIONS, *_CONTEXT}, _abbreviation_end)
    # The dot of "KP.3" belongs to the abbreviation, not to a decimal number.
    return re.compile("(?P<key>" + keys + r")(?:\.(?=\d))?")


def _abbreviation_end(key: str) -> str:
    if key[-1].isalnum():
        return _NO_LETTER_AFTER
    # "TP." needs a word after it, so that a sentence's last dot is never taken for it.
    return r"(?=\s*\w)" if key.count(".") == 1 else ""


def _division(m: re.Match[str]) -> str:
    """Q.10, Q10, P.12, Q. Bình Thạnh, H. Củ Chi: a division before its number or its name."""
    name, numbered = DIVISIONS[m.group(1)]
    following = m.group(2)
    if following.isdecimal() and not numbered:
        return m.group(0)
    if not (following.isdecimal() or following.isupper()):
        return m.group(0)
    return _spaced(m, name)


def _road(m: re.Match[str]) -> str:
    code, dot, number = m.group(1), m.group(2), m.group(3)
    if code in ROADS_ATTACHED_ONLY and dot.isspace():
        return m.group(0)
    return _spaced(m, f"{ROADS[code]} {number}")


def _plate(m: re.Match[str]) -> str:
    """51A-123.45: the province, the series, then the number in groups, digit by digit."""
    series = re.sub(r"(\d)", lambda d: " " + read_digits(d.group(1)), m.group(2))
    groups = ", ".join(read_digits(g) for g in m.group(3).split("."))
    return _spaced(m, f"{read_digits(m.group(1))} {series}, {groups}")


# ------------------------------------------------------------- phone and house numbers


def _phone(m: re.Match[str]) -> str:
    groups = re.split(r"[ .\-]", m.group(0))
    wanted = (11, 12) if groups[0].startswith("+") else (10, 11)
    count = 0
    for taken, group in enumerate(groups, start=1):
        count += sum(c.isdecimal() for c in group)
        if count in wanted:
            spoken = ", ".join(
                ("cộng " if g.startswith("+") else "") + read_digits(g) for g in groups[:taken]
            )
            rest = m.group(0)[len(" ".join(groups[:taken])) :]
            return _spaced(m, spoken) + rest
        if count > wanted[-1]:
            break
    return m.group(0)


def _digit_groups(m: re.Match[str]) -> str:
    return _spaced(m, ", ".join(read_digits(g) for g in re.split(r"[ .\-]", m.group(0))))


def _digits_one_by_one(m: re.Match[str]) -> str:
    return _spaced(m, read_digits(m.group(0)))


def _fixed(m: re.Match[str]) -> str:
    return _spaced(m, FIXED_READINGS[m.group(0)])


_ADDRESS_BEFORE = _ends_with(
    ("số nhà", "nhà số", "hẻm số", "số", "hẻm", "ngõ", "ngách", "kiệt", "nhà"), r"\s+$"
)


def _address(m: re.Match[str]) -> str:
    """House numbers, after an address word or ending in a letter: "12/3A" is "mười hai trên
    ba A"."""
    parts = re.findall(r"(\d+)([A-Z]?)", m.group(0))
    start = m.start()
    if not parts[-1][1] and not _ADDRESS_BEFORE.search(m.string, max(0, start - 20), start):
        return m.group(0)
    spoken = " trên ".join(
        read_integer(n) + (f" {letter}" if letter else "") for n, letter in parts
    )
    return _spaced(m, spoken)


# ------------------------------------------------------------------------------- dates

_MONTH_WORDS = _words(read_month(m) for m in range(1, 13))
# The context that makes "d/m" a date or a fraction, from the tables in player.readings.
_NO_NGAY_BEFORE = _ends_with((*DAY_WORDS, *STREET_WORDS))
_DATE_BEFORE = _ends_with((*DAY_WORDS, *STREET_WORDS, *DATE_BEFORE))
_DATE_AFTER = _starts_with(DATE_AFTER)
_FRACTION_BEFORE = _ends_with(FRACTION_BEFORE, r"\s*:?\s*$")
_FRACTION_AFTER = _starts_with(FRACTION_AFTER)
_DATE_WEAK_BEFORE = _ends_with(DATE_WEAK_BEFORE, r"\s*:?\s*$")
# The previous item of a list of dates, already read: "ngày tám tháng chín và 10/9".
_DATE_LIST_BEFORE = re.compile(
    _NO_LETTER_BEFORE + r"tháng\s+(?:" + _MONTH_WORDS + r")(?:\s+năm(?:\s+[^\W\d_]+){1,8}?)?"
    r"\s*(?:,|và|hoặc|đến|tới|[-–])\s*$"
)
# A named day: "Ngày Pháp luật Việt Nam 9/11", "Ngày Nhà giáo Việt Nam 20/11".
_NAMED_DAY_BEFORE = re.compile(_NO_LETTER_BEFORE + r"Ngày(?:\s+[^\W\d_]+){1,6}\s*[,(]?\s*$")
_DATE_LIST_AFTER = re.compile(r"\s*(?:,|và|hoặc|đến|tới|[-–])\s*(?i:ngày)\s")
_THANG_BEFORE = _ends_with(("tháng",), r"\s+$")
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
    return _spaced(m, f"{words} năm {read_number(int(year))}" if year else words)


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
    return _spaced(m, f"{first} đến {last}")


def _day_range(m: re.Match[str]) -> str:
    """7-9/9, 8-10 tháng 9: days of one month."""
    first, last, month, year = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    if not (is_date(first, 1) and is_date(last, 1)):
        return m.group(0)
    words = f"{_day_prefix(m)}{read_number(first)} đến {read_number(last)}"
    if month is None:
        return _spaced(m, words)
    if not is_date(last, int(month)):
        return m.group(0)
    words += f" tháng {read_month(int(month))}"
    return _spaced(m, words + (f" năm {read_number(int(year))}" if year else ""))


def _month_year(m: re.Match[str]) -> str:
    month = int(m.group(1))
    start = m.start()
    said = _THANG_BEFORE.search(m.string, max(0, start - 10), start)
    if not 1 <= month <= 12 or not (said or int(m.group(2)) in YEARS):
        return m.group(0)
    words = f"{'' if said else 'tháng '}{read_month(month)} năm {read_number(int(m.group(2)))}"
    return _spaced(m, words)


def _day_dash_month(m: re.Match[str]) -> str:
    """A "ngày 8-9" is the eighth of September; without "ngày", "8-9" is a range."""
    day, month = int(m.group(2)), int(m.group(3))
    if not is_date(day, month):
        return m.group(0)
    return _spaced(m, f"{m.group(1)}{read_number(day)} tháng {read_month(month)}")


def _month_range(m: re.Match[str]) -> str:
    first, last = int(m.group(2)), int(m.group(3))
    if not (1 <= first <= 12 and 1 <= last <= 12):
        return m.group(0)
    words = f"{m.group(1)}{read_month(first)} đến tháng {read_month(last)}"
    return _spaced(m, f"{words} năm {read_number(int(m.group(4)))}")


def _month_name(m: re.Match[str]) -> str:
    month = int(m.group(2))
    return m.group(1) + read_month(month) if 1 <= month <= 12 else m.group(0)


def _date_or_fraction(m: re.Match[str]) -> str:
    """A bare "a/b": a fraction ("3/4 dân số"), unless its context makes it a date.

    A date when the day and month are valid and the text around says so: a day word, a part of
    the day or a weekday just before ("ngày", "hôm", "chiều", "thứ Hai") or a weekday just
    after. Then a share word before ("chiếm", "khoảng") makes it a fraction; a weaker date word
    before ("từ", "đến", "hạn chót"), a named day ("Ngày Pháp luật 9/11") or a list of dates
    around it a date, unless a whole follows
    ("số hộ", "dân số"). "30/6" cannot be a fraction, so it is a date. What is neither is left
    for the "trên" rule.
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
        return _spaced(m, read_fraction(num, den))
    if dated and (
        _DATE_WEAK_BEFORE.search(text, lo, start)
        or _NAMED_DAY_BEFORE.search(text, lo, start)
        or _DATE_LIST_BEFORE.search(text, lo, start)
        or _DATE_LIST_AFTER.match(text, end, hi)
    ):
        return _date(m, a, b, None)
    return _spaced(m, read_fraction(num, den))


_ROMAN_BEFORE = _ends_with(
    ("quý", "khóa", "khoá", "đại hội", "thế kỷ", "thế kỉ", "chương", "lần thứ", "thứ"), r"\s+$"
)
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
    return _spaced(m, words + year)


def _roman_value(numeral: str) -> int | None:
    if not numeral or not _ROMAN.fullmatch(numeral):
        return None
    values = [_ROMAN_VALUES[c] for c in numeral]
    return sum(-v if v < after else v for v, after in zip(values, [*values[1:], 0], strict=True))


# ------------------------------------------------------------------ ranges, times, units

_HOUR_IN_G = re.compile(r"\d{1,2}g(?:\d{2})?(?!\w)")
_HOUR_WORD_BEFORE = _ends_with(("lúc", "từ", "đến", "tới", "vào"), r"\s+$")
_RATIO_BEFORE = _ends_with(("tỷ lệ", "tỉ lệ", "tỷ số", "tỉ số", "bản đồ"), r"\s*:?\s*$")
_CALL_BEFORE = _ends_with(
    ("gọi", "tổng đài", "đường dây nóng", "hotline", "điện thoại"), r"\s*:?\s*$"
)


def _range(m: re.Match[str]) -> str:
    """A dash between two quantities is "đến": 7h-11h30, 200-300mm, cấp 12-13, 10%-15%."""
    first = m.group("a")
    # "7g-11g": southern notices write the hour with a g; an hour is at most 24.
    hour = re.fullmatch(r"\d{1,2}g", first) and int(first[:-1]) <= 24
    if hour and _HOUR_IN_G.match(m.string, m.end()):
        first = first[:-1] + "h"
    return first + " đến "


def _hour_in_g(m: re.Match[str]) -> str:
    return f"{m.group(1)}h" if int(m.group(1)) <= 24 else m.group(0)


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), m.group(2)
    second = m.group(3) if m.re.groups > 2 else None
    if hour > 24 or (minute is not None and int(minute) > 59):
        return m.group(0)
    words = f"{read_number(hour)} giờ"
    # "04h00" is "bốn giờ": an announcer never says "không phút".
    if minute is not None and (int(minute) or second is not None):
        words += f" {read_number(int(minute))} phút"
    if second is not None:
        words += f" {read_number(int(second))} giây"
    return _spaced(m, words)


def _ratio(m: re.Match[str]) -> str:
    return f"{m.group(1)} trên {m.group(2)}"


def _ordinal_number(m: re.Match[str]) -> str:
    return f"{m.group(1)} {read_ordinal(int(m.group(2)))}"


_UNIT_KEYS = _words(UNITS)
# What a unit is per: "/người", "/3 giờ", "/100 ml".
_PER = r"/(?:(\d+)\s*(giờ|ngày|" + _UNIT_KEYS + ")|(" + _LETTER + r"[^\W_]*))"
_PER_PART = re.compile(_PER)


def _unit(m: re.Match[str]) -> str:
    """5km, 4 m3/người/tháng, 150mm/3 giờ, 80 mg/100 ml: the unit, then what it is per."""
    words = f"{m.group(1)} {UNITS[m.group(2)]}"
    for part in _PER_PART.finditer(m.group("per")):
        amount, unit, thing = part.groups()
        if thing is not None:
            words += f" một {UNITS.get(thing, thing)}"
        elif unit in ("h", "giờ", "ngày"):  # the digits are left to the number rule
            words += f" trong {amount} {UNITS.get(unit, unit)}"
        else:
            words += f" trên {amount} {UNITS[unit]}"
    after = m.end() < len(m.string) and m.string[m.end()].isalnum()
    return words + (" " if after else "")


def _per_unit(m: re.Match[str]) -> str:
    """A thing per unit: "người/km2" is "người trên ki lô mét vuông"."""
    return f"{m.group(1)} trên {UNITS[m.group(2)]}"


def _per(m: re.Match[str]) -> str:
    """A price per thing: "đồng/hộ" is "đồng một hộ", "đồng/kWh" "đồng một ki lô oát giờ"."""
    things = m.group(2).split("/")[1:]
    return m.group(1) + "".join(f" một {UNITS.get(thing, thing)}" for thing in things)


def _number(m: re.Match[str]) -> str:
    whole, fraction = m.group(1), m.group(2)
    words = read_integer(re.sub(r"[.,]", "", whole))
    if fraction is not None:
        words += " phẩy " + read_decimals(fraction)
    # Two numbers side by side ("trên BĐ3 2,82m") would run together: a pause between them.
    if _NEXT_NUMBER.match(m.string, m.end()):
        words += ","
    return _spaced(m, words)


_NEXT_NUMBER = re.compile(r"[^\S\n]+[-+]?\d")


_END = r"(?![\d/]|[.,\-]\d)"
_DASH = r"\s*[-–—]\s*"
_NGAY = _cased("ngày")
_THANG = _cased("tháng")
_NOT_IN_NUMBER = r"[\d/.,\-]"  # what may not come just before a day or a month

_RULES: tuple[_Rule, ...] = (
    (DOCUMENT_NUMBER, read_document_number),
    (
        re.compile("(" + _words(ROADS) + r")(\.\s?|\s|)(\d{1,3}[A-Z]?)(?![\d.,]\d|\w)"),
        _unless_after(_LETTER, _road),
    ),
    (
        re.compile(r"(\d\d)([A-Z]{1,2}\d?)-(\d{3}\.\d{2}|\d{4,5})(?!\w|[.,]\d)"),
        _unless_after(r"[\w.\-]", _plate),
    ),
    (re.compile("(?:" + _words(FIXED_READINGS) + r")(?![\d/])"), _unless_after(r"[\d/]", _fixed)),
    (_abbreviation_pattern(), _unless_after(_LETTER, _abbreviation)),
    (
        re.compile("([" + "".join(DIVISIONS) + r"])(?:\.\s*|(?=\d))(?=(\w))"),
        _unless_after(_LETTER, _division),
    ),
    (re.compile("&"), _constant(" và ")),
    # Digits read one by one: phone numbers, hotlines, short numbers called by phone.
    (
        re.compile(r"(?:\+84[ .\-]?|0)(?:\d{9,10}|\d{1,4}(?:[ .\-]\d{2,4}){1,3})(?!\w)"),
        _unless_after(r"[\w+.,]", _phone),
    ),
    (
        re.compile(r"1[89]00[ .\-]?(?:\d{4}|\d{3}[ .\-]?\d{3})(?![\w.,]\d|\w)"),
        _unless_after(r"[\w.,]", _digit_groups),
    ),
    (
        re.compile(r"\d\d{2,4}(?!\w)"),
        _unless_after(r"[\d.,]", _when_before(_CALL_BEFORE, _digits_one_by_one)),
    ),
    (
        re.compile(r"\d+[A-Z]?(?:/\d+[A-Z]?)+(?![\w/])"),
        _unless_after(r"[\w/.,\-]", _address),
    ),
    # Dates, the most specific first. A "ngày" or "tháng" before them stays in the text.
    (
        re.compile(r"(?P<y>\d\d{3})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?![\d\-])"),
        _unless_after(r"[\d\-]", _full_date),
    ),
    (
        re.compile(
            r"(?P<d1>\d\d?)/(?P<m1>\d{1,2})(?:/(?P<y1>\d{4}))?"
            + _DASH
            + "(?:"
            + _NGAY
            + r"\s+)?(?P<d2>\d{1,2})/(?P<m2>\d{1,2})(?:/(?P<y2>\d{4}))?"
            + _END
        ),
        _unless_after(_NOT_IN_NUMBER, _date_range),
    ),
    (
        re.compile(r"(?P<d>\d\d?)(?P<s>[/.\-])(?P<m>\d{1,2})(?P=s)(?P<y>\d{4})" + _END),
        _unless_after(_NOT_IN_NUMBER, _full_date),
    ),
    (
        re.compile(
            r"(\d\d?)\s*[-–]\s*(\d{1,2})"
            r"(?:/(\d{1,2})(?:/(\d{4}))?" + _END + r"|(?=\s+(?i:tháng)\s*\d))"
        ),
        _unless_after(r"[\d/.,]", _day_range),
    ),
    (
        re.compile("(" + _NGAY + r"\s+)(\d{1,2})-(\d{1,2})" + _END),
        _unless_after(_LETTER, _day_dash_month),
    ),
    (
        re.compile("(" + _THANG + r"\s+)(\d{1,2})\s*[-–]\s*(\d{1,2})/(\d{4})" + _END),
        _unless_after(_NOT_IN_NUMBER, _month_range),
    ),
    (re.compile(r"(\d\d?)/(\d{4})" + _END), _unless_after(_NOT_IN_NUMBER, _month_year)),
    (
        re.compile(r"(\d\d?)-(\d{4})" + _END),
        _unless_after(_NOT_IN_NUMBER, _when_before(_THANG_BEFORE, _month_year)),
    ),
    (
        re.compile(r"(?P<a>\d\d{0,2})/(?P<b>\d{1,4})" + _END),
        _unless_after(r"[\w/.,\-]", _date_or_fraction),
    ),
    (re.compile("(" + _THANG + r"\s+)(\d{1,2})(?![\d/]|[.,]\d)"), _month_name),
    (
        re.compile(r"([IVXLCDM]+)" + _NO_LETTER_AFTER + r"(?:/(\d{4})(?!\d))?"),
        _unless_after(_LETTER, _roman),
    ),
    # A dash between quantities is a range; one before a lone number is a minus sign.
    (
        re.compile(
            r"(?P<a>\d\d*(?:[.,:]\d+)*(?:[hg](?:\d{2})?|\s?(?:"
            + _UNIT_KEYS
            + r"))?)"
            + _DASH
            + r"(?=\d)"
        ),
        _unless_after(r"[^\W_]", _range),
    ),
    (
        re.compile(r"(\d\d?)g(?!\w)"),
        _unless_after(r"\w", _when_before(_HOUR_WORD_BEFORE, _hour_in_g)),
    ),
    (re.compile(r"-(?<![\w\-]-)(?=\d)"), _constant("âm ")),
    (re.compile(r"(\d\d*):(\d+)(?![\d:])"), _when_before(_RATIO_BEFORE, _ratio)),
    (
        re.compile(r"(\d\d?):(\d{2})(?::(\d{2}))?(?![\d:])"),
        _unless_after(r"[\d.,]", _time),
    ),
    (
        re.compile(r"(\d\d?)[hg](\d{2})(?:\s*phút)?(?!\w)"),
        _unless_after(r"[\d.,]", _time),
    ),
    (
        re.compile("(" + _cased("thứ") + r")\s+(\d{1,3})(?![\d]|[.,]\d)"),
        _unless_after(_LETTER, _ordinal_number),
    ),
    (
        re.compile(r"(\d)\s*(" + _UNIT_KEYS + r")(?P<per>(?:" + _PER + r")*)(?!\w)"),
        _unit,
    ),
    (
        re.compile(
            "("
            + _words(COUNTED_PER_UNIT)
            + ")/("
            + _words(k for k in UNITS if len(k) > 1)
            + ")"
            + _NO_LETTER_AFTER
        ),
        _unless_after(_LETTER, _per_unit),
    ),
    (
        re.compile("(" + _words(MONEY_WORDS) + r")((?:/[^\W_]+)+)"),
        _unless_after(_LETTER, _per),
    ),
    (re.compile(r"/(?<=\d/)(?=\d)"), _constant(" trên ")),
    (
        re.compile(
            r"(\d(?:\d{0,2}(?:\.\d{3})+(?!\d)|\d{0,2}(?:,\d{3}){2,}(?!\d)|\d*))(?:[,.](\d+))?"
        ),
        _number,
    ),
    (re.compile(r"-(?:(?<=\w-)(?=[^\W\d_])|(?<=[^\W\d_]-)(?=\w))"), _constant(" ")),
)

_SPACES = re.compile(r"[^\S\n]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" +(?=[,.;:!?)\]])")
_SPACE_AFTER_OPENING = re.compile(r"(?<=[(\[]) +")


def normalize(text: str) -> str:
    """Rewrite Vietnamese text into the words a synthesizer should say.

    NFC first, then the rules; punctuation stays so that sentences still break. Never raises:
    a rule that cannot read its match leaves the text as it was.
    """
    text = nfc(text)
    for pattern, replace in _RULES:
        text = pattern.sub(replace, text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub("", text)
    text = _SPACE_AFTER_OPENING.sub("", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()
