"""Vietnamese text is data: one normal form (NFC) before it is rendered or spoken."""

from __future__ import annotations

import unicodedata


def nfc(text: str) -> str:
    """Compose combining marks so that every Vietnamese letter is one code point where it can be.

    Text that arrives decomposed (NFD, as some keyboards and Word documents produce) otherwise
    renders with misplaced tone marks and defeats caching by text.
    """
    return unicodedata.normalize("NFC", text)
