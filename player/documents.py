"""Numbers of Vietnamese legal documents, read as an announcer reads them on the radio.

"Thông tư 39/2020/TT-BTTTT" is "Thông tư số ba mươi chín, năm hai nghìn không trăm hai mươi của
bộ thông tin và truyền thông": the number after "số", the year after a pause (so that "năm" is
heard as the year, not as five), then the issuing body after "của". The kind of document ("TT")
is said only when the text has not just said it; the issuer only when the text does not name it
itself right after ("… ngày 18/11/2020 của Bộ Thông tin và Truyền thông"). The codes come from
the tables in ``player.readings``; a code not in them is left as written.
"""

from __future__ import annotations

import re

from player.numbers import read_integer, read_number
from player.readings import (
    ABBREVIATIONS,
    DOCUMENT_BODIES,
    DOCUMENT_TERM_BODIES,
    DOCUMENT_TYPE_NAMES,
    DOCUMENT_TYPES,
)

__all__ = ["DOCUMENT_NUMBER", "read_document_number"]

_CODE = r"[A-ZĐ][A-Za-zĐđ]*\d*"
# State documents "số/năm/LOẠI-CƠ QUAN" and letters "số/CƠ QUAN-ĐƠN VỊ"; the Party's "số-LOẠI/CƠ
# QUAN". Whether the codes are known is checked in read_document_number.
DOCUMENT_NUMBER = re.compile(
    r"(?<![\w/.,\-])(?:(?P<so>[Ss]ố)\s+)?(?P<n>\d{1,6})(?:/(?P<y>\d{4}))?"
    r"(?P<sep>[/\-])(?P<codes>" + _CODE + r"(?:[\-/]" + _CODE + r")*)(?![\w&])"
)

# The text names the issuer itself right after the number (and its date, if any).
_ISSUER_NAMED_AFTER = re.compile(
    r"\s*,?\s*(?:(?i:ngày)\s+\d{1,2}(?:[/.\-]\d{1,2}[/.\-]\d{4}|\s+(?i:tháng)\s+\d{1,2}"
    r"\s+(?i:năm)\s+\d{4})\s*,?\s*)?(?i:của|do)\s"
)
_TERM = re.compile(r"(?P<body>[A-ZĐ][A-Za-zĐđ]*?)(?P<term>\d+)")


def read_document_number(m: re.Match[str]) -> str:
    """The words for a match of DOCUMENT_NUMBER, or the match itself when its codes are not
    those of a document (the first must be a known kind or body)."""
    codes = re.split(r"[\-/]", m.group("codes"))
    kind = DOCUMENT_TYPES.get(codes[0])
    if kind is None and (m.group("sep") == "-" or _body(codes[0]) is None):
        return m.group(0)
    bodies = codes[1:] if kind is not None else codes
    words: list[str] = []
    said = m.group("so") or "số"
    if kind is not None and not _kind_named_before(m, codes[0], kind):
        words.append(kind.capitalize() if said[0].isupper() else kind)
        said = "số"
    words.append(f"{said} {read_integer(m.group('n'))}")
    if m.group("y"):
        words[-1] += ","
        words.append(f"năm {read_number(int(m.group('y')))}")
    if bodies and not _ISSUER_NAMED_AFTER.match(m.string, m.end()):
        words.append("của " + ", ".join(_body(code) or code for code in bodies))
    return " ".join(words)


def _body(code: str) -> str | None:
    if code in DOCUMENT_BODIES:
        return DOCUMENT_BODIES[code]
    term = _TERM.fullmatch(code)
    if term and term.group("body") in DOCUMENT_TERM_BODIES:
        name = DOCUMENT_BODIES[term.group("body")]
        return f"{name} khóa {read_number(int(term.group('term')))}"
    return ABBREVIATIONS.get(code)


def _kind_named_before(m: re.Match[str], code: str, kind: str) -> bool:
    before = m.string[max(0, m.start() - 30) : m.start()].rstrip().lower()
    for name in (kind, code.lower(), *DOCUMENT_TYPE_NAMES.get(code, ())):
        if before.endswith(name) and not before[: -len(name)][-1:].isalpha():
            return True
    return False
