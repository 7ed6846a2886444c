"""Building blocks of the normalizer's regular expressions: word lists, context, guards.

Speed: each pattern begins with the character it needs (a digit, a slash, a letter of a word
list), and what must not come before it is checked after that character or by ``unless_after``
in the replacement. A pattern that begins with a look-behind, an optional group or a
case-insensitive word is tried at every position of the text; one that begins with a character
lets the regex engine jump from one candidate to the next, 5 to 30 times faster per rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = [
    "DASH",
    "LETTER",
    "NO_LETTER_AFTER",
    "NO_LETTER_BEFORE",
    "Replace",
    "Rule",
    "cased",
    "constant",
    "ends_with",
    "one_of",
    "spaced",
    "starts_with",
    "unless_after",
    "when_before",
]

Replace = Callable[[re.Match[str]], str]
Rule = tuple[re.Pattern[str], Replace]

# A digit touching a word is spaced off before a second pass, so only a letter counts as touching.
LETTER = r"[^\W\d_]"
NO_LETTER_BEFORE = r"(?<![^\W\d_])"
NO_LETTER_AFTER = r"(?![^\W\d_])"


def one_of(words: Iterable[str], end: Callable[[str], str] = lambda word: "") -> str:
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


def cased(word: str) -> str:
    """``word`` in either case, letter by letter ("[Nn][Gg][Àà][Yy]"): unlike (?i:ngày), a
    pattern that begins with it still lets the engine jump to candidates."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def unless_after(before: str, replace: Replace) -> Replace:
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


def when_before(context: re.Pattern[str], replace: Replace, reach: int = 40) -> Replace:
    """``replace``, only when the text just before the match ends with ``context``."""

    def checked(m: re.Match[str]) -> str:
        start = m.start()
        if not context.search(m.string, max(0, start - reach), start):
            return m.group(0)
        return replace(m)

    return checked


def spaced(m: re.Match[str], words: str) -> str:
    """Words in place of a match, kept apart from letters or digits that touch it."""
    text = m.string
    before = " " if m.start() > 0 and text[m.start() - 1].isalnum() else ""
    after = " " if m.end() < len(text) and text[m.end()].isalnum() else ""
    return before + words + after


def constant(words: str) -> Replace:
    return lambda m: spaced(m, words)


def ends_with(words: Iterable[str], tail: str = r"\s*[,(:]?\s*$") -> re.Pattern[str]:
    """The end of a text: one of ``words`` as a whole word, then ``tail``."""
    return re.compile(NO_LETTER_BEFORE + "(?:" + one_of(words) + ")" + tail, re.IGNORECASE)


def starts_with(words: Iterable[str]) -> re.Pattern[str]:
    """The start of a text: one of ``words`` as a whole word, maybe after "(" or ","."""
    return re.compile(r"\s*[,(]?\s*(?:" + one_of(words) + r")(?!\w)", re.IGNORECASE)


DASH = r"\s*[-–—]\s*"  # a range's dash, with or without spaces
