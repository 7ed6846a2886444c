"""Vietnamese text normalization for speech: what the announcer would say, in words.

Piper and espeak-ng read "08/9" digit by digit and "UBND" letter by letter, so text is rewritten
before synthesis: numbers by the northern reading rules (``player.numbers``), legal document
numbers (``player.documents``), dates, fractions, ranges, times, units, phone numbers digit by
digit, and the abbreviations of ward notices. What each written form is read as lives in tables
(``player.readings``); this module holds the rules that find the forms and pick a reading by
context. Rules run in a fixed order, the most specific first: a document number is claimed
before its codes can look like abbreviations, a phone number before it can look like a date, a
date before it can look like a range. Text that no rule claims keeps its case and punctuation,
so sentence breaks survive. Pure Python, no I/O, and it never raises. The dates and fractions
are in ``player.dates``; ``player.patterns`` says why every pattern begins with a character.
"""

from __future__ import annotations

import re

from player.dates import DATE_RULES
from player.documents import DOCUMENT_NUMBER, read_document_number
from player.numbers import (
    read_decimals,
    read_digits,
    read_integer,
    read_number,
    read_ordinal,
)
from player.patterns import (
    DASH,
    LETTER,
    NO_LETTER_AFTER,
    Rule,
    cased,
    constant,
    ends_with,
    one_of,
    spaced,
    unless_after,
    when_before,
)
from player.readings import (
    ABBREVIATIONS,
    ADDRESS_WORDS,
    CALL_WORDS,
    CONTEXT_ABBREVIATIONS,
    COUNTED_PER_UNIT,
    DIVISIONS,
    FIXED_READINGS,
    HOUR_WORDS,
    MONEY_WORDS,
    RATIO_WORDS,
    ROADS,
    ROADS_ATTACHED_ONLY,
    SYLLABLE_KEYS,
    UNITS,
)
from protocol.text import nfc

__all__ = ["ABBREVIATIONS", "normalize", "read_digits", "read_number"]


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
    return spaced(m, words)


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
    keys = one_of({*ABBREVIATIONS, *_CONTEXT}, _abbreviation_end)
    # The dot of "KP.3" belongs to the abbreviation, not to a decimal number.
    return re.compile("(?P<key>" + keys + r")(?:\.(?=\d))?")


def _abbreviation_end(key: str) -> str:
    if key[-1].isalnum():
        return NO_LETTER_AFTER
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
    return spaced(m, name)


def _road(m: re.Match[str]) -> str:
    code, dot, number = m.group(1), m.group(2), m.group(3)
    if code in ROADS_ATTACHED_ONLY and dot.isspace():
        return m.group(0)
    return spaced(m, f"{ROADS[code]} {number}")


def _plate(m: re.Match[str]) -> str:
    """51A-123.45: the province, the series, then the number in groups, digit by digit."""
    series = re.sub(r"(\d)", lambda d: " " + read_digits(d.group(1)), m.group(2))
    groups = ", ".join(read_digits(g) for g in m.group(3).split("."))
    return spaced(m, f"{read_digits(m.group(1))} {series}, {groups}")


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
            return spaced(m, spoken) + rest
        if count > wanted[-1]:
            break
    return m.group(0)


def _digit_groups(m: re.Match[str]) -> str:
    return spaced(m, ", ".join(read_digits(g) for g in re.split(r"[ .\-]", m.group(0))))


def _digits_one_by_one(m: re.Match[str]) -> str:
    return spaced(m, read_digits(m.group(0)))


def _fixed(m: re.Match[str]) -> str:
    return spaced(m, FIXED_READINGS[m.group(0)])


_ADDRESS_BEFORE = ends_with(ADDRESS_WORDS, r"\s+$")


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
    return spaced(m, spoken)


# ------------------------------------------------------------------ ranges, times, units

_HOUR_IN_G = re.compile(r"\d{1,2}g(?:\d{2})?(?!\w)")
_HOUR_WORD_BEFORE = ends_with(HOUR_WORDS, r"\s+$")
_RATIO_BEFORE = ends_with(RATIO_WORDS, r"\s*:?\s*$")
_CALL_BEFORE = ends_with(CALL_WORDS, r"\s*:?\s*$")


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
    return spaced(m, words)


def _ratio(m: re.Match[str]) -> str:
    return f"{m.group(1)} trên {m.group(2)}"


def _ordinal_number(m: re.Match[str]) -> str:
    return f"{m.group(1)} {read_ordinal(int(m.group(2)))}"


_UNIT_KEYS = one_of(UNITS)
# What a unit is per: "/người", "/3 giờ", "/100 ml".
_PER = r"/(?:(\d+)\s*(giờ|ngày|" + _UNIT_KEYS + ")|(" + LETTER + r"[^\W_]*))"
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
    return spaced(m, words)


_NEXT_NUMBER = re.compile(r"[^\S\n]+[-+]?\d")


_RULES: tuple[Rule, ...] = (
    (DOCUMENT_NUMBER, read_document_number),
    (
        re.compile("(" + one_of(ROADS) + r")(\.\s?|\s|)(\d{1,3}[A-Z]?)(?![\d.,]\d|\w)"),
        unless_after(LETTER, _road),
    ),
    (
        re.compile(r"(\d\d)([A-Z]{1,2}\d?)-(\d{3}\.\d{2}|\d{4,5})(?!\w|[.,]\d)"),
        unless_after(r"[\w.\-]", _plate),
    ),
    (re.compile("(?:" + one_of(FIXED_READINGS) + r")(?![\d/])"), unless_after(r"[\d/]", _fixed)),
    (_abbreviation_pattern(), unless_after(LETTER, _abbreviation)),
    (
        re.compile("([" + "".join(DIVISIONS) + r"])(?:\.\s*|(?=\d))(?=(\w))"),
        unless_after(LETTER, _division),
    ),
    (re.compile("&"), constant(" và ")),
    # Digits read one by one: phone numbers, hotlines, short numbers called by phone.
    (
        re.compile(r"(?:\+84[ .\-]?|0)(?:\d{9,10}|\d{1,4}(?:[ .\-]\d{2,4}){1,3})(?!\w)"),
        unless_after(r"[\w+.,]", _phone),
    ),
    (
        re.compile(r"1[89]00[ .\-]?(?:\d{4}|\d{3}[ .\-]?\d{3})(?![\w.,]\d|\w)"),
        unless_after(r"[\w.,]", _digit_groups),
    ),
    (
        re.compile(r"\d\d{2,4}(?!\w)"),
        unless_after(r"[\d.,]", when_before(_CALL_BEFORE, _digits_one_by_one)),
    ),
    (
        re.compile(r"\d+[A-Z]?(?:/\d+[A-Z]?)+(?![\w/])"),
        unless_after(r"[\w/.,\-]", _address),
    ),
    *DATE_RULES,
    # A dash between quantities is a range; one before a lone number is a minus sign.
    (
        re.compile(
            r"(?P<a>\d\d*(?:[.,:]\d+)*(?:[hg](?:\d{2})?|\s?(?:"
            + _UNIT_KEYS
            + r"))?)"
            + DASH
            + r"(?=\d)"
        ),
        unless_after(r"[^\W_]", _range),
    ),
    (
        re.compile(r"(\d\d?)g(?!\w)"),
        unless_after(r"\w", when_before(_HOUR_WORD_BEFORE, _hour_in_g)),
    ),
    (re.compile(r"-(?<![\w\-]-)(?=\d)"), constant("âm ")),
    (re.compile(r"(\d\d*):(\d+)(?![\d:])"), when_before(_RATIO_BEFORE, _ratio)),
    (
        re.compile(r"(\d\d?):(\d{2})(?::(\d{2}))?(?![\d:])"),
        unless_after(r"[\d.,]", _time),
    ),
    (
        re.compile(r"(\d\d?)[hg](\d{2})(?:\s*phút)?(?!\w)"),
        unless_after(r"[\d.,]", _time),
    ),
    (
        re.compile("(" + cased("thứ") + r")\s+(\d{1,3})(?![\d]|[.,]\d)"),
        unless_after(LETTER, _ordinal_number),
    ),
    (
        re.compile(r"(\d)\s*(" + _UNIT_KEYS + r")(?P<per>(?:" + _PER + r")*)(?!\w)"),
        _unit,
    ),
    (
        re.compile(
            "("
            + one_of(COUNTED_PER_UNIT)
            + ")/("
            + one_of(k for k in UNITS if len(k) > 1)
            + ")"
            + NO_LETTER_AFTER
        ),
        unless_after(LETTER, _per_unit),
    ),
    (
        re.compile("(" + one_of(MONEY_WORDS) + r")((?:/[^\W_]+)+)"),
        unless_after(LETTER, _per),
    ),
    (re.compile(r"/(?<=\d/)(?=\d)"), constant(" trên ")),
    (
        re.compile(
            r"(\d(?:\d{0,2}(?:\.\d{3})+(?!\d)|\d{0,2}(?:,\d{3}){2,}(?!\d)|\d*))(?:[,.](\d+))?"
        ),
        _number,
    ),
    (re.compile(r"-(?:(?<=\w-)(?=[^\W\d_])|(?<=[^\W\d_]-)(?=\w))"), constant(" ")),
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
