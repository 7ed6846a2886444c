"""Fonts for the screen: a chain of typefaces so that no Vietnamese glyph is ever missing.

Text is drawn run by run: each character takes the first font of the chain that has a glyph for
it (Noto Sans, then DejaVu Sans, after any fonts the configuration puts first). pygame.freetype
reports a missing glyph as ``None`` metrics, which is what the chain asks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from player.sdl import pygame
from protocol.text import nfc

log = logging.getLogger(__name__)

_NOTO = Path("/usr/share/fonts/truetype/noto")
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
REGULAR = (_NOTO / "NotoSans-Regular.ttf", _DEJAVU / "DejaVuSans.ttf")
BOLD = (_NOTO / "NotoSans-Bold.ttf", _DEJAVU / "DejaVuSans-Bold.ttf")
Color = tuple[int, int, int]


class FontChain:
    """Typefaces tried in order for each character, drawn with their baseline as the origin."""

    def __init__(self, paths: Iterable[Path]) -> None:
        if not pygame.freetype.get_init():
            pygame.freetype.init()
        self.fonts: list[pygame.freetype.Font] = []
        self.names: list[str] = []
        for path in paths:
            if not path.is_file():
                continue
            font = pygame.freetype.Font(str(path))
            font.origin = True  # render_to's position is the baseline origin
            font.pad = False
            self.fonts.append(font)
            self.names.append(path.name)
        if not self.fonts:
            log.error("none of the screen fonts is installed; Vietnamese marks may be missing")
            font = pygame.freetype.Font(None)
            font.origin = True
            self.fonts.append(font)
            self.names.append("pygame default")
        self._which: dict[str, int] = {}
        self._advances: dict[tuple[int, int], dict[str, float]] = {}

    def font_for(self, char: str) -> int:
        """Index of the first font with a glyph for ``char`` (the first font if none has it)."""
        index = self._which.get(char)
        if index is None:
            index = next(
                (i for i, f in enumerate(self.fonts) if f.get_metrics(char, size=16)[0]), 0
            )
            self._which[char] = index
        return index

    def missing(self, text: str) -> str:
        """The characters of ``text`` that no font of the chain has (whitespace aside)."""
        return "".join(
            sorted(
                {
                    c
                    for c in nfc(text)
                    if not c.isspace() and not any(f.get_metrics(c, size=16)[0] for f in self.fonts)
                }
            )
        )

    def runs(self, text: str) -> list[tuple[int, str]]:
        """``text`` cut into runs that one font (by index) draws."""
        out: list[tuple[int, str]] = []
        start, current = 0, -1
        for i, char in enumerate(text):
            index = current if char == " " and current >= 0 else self.font_for(char)
            if index != current and i > start:
                out.append((current, text[start:i]))
                start = i
            current = index
        if start < len(text):
            out.append((max(current, 0), text[start:]))
        return out

    def _advance(self, index: int, run: str, size: int) -> float:
        """The advance width of ``run`` in font ``index``; per-character widths are cached.

        Asking freetype for metrics at another size costs about a millisecond, and fitting a
        bulletin measures hundreds of candidate lines: one call per new character and size.
        """
        known = self._advances.setdefault((index, size), {})
        new = "".join({c for c in run if c not in known})
        if new:
            for char, metric in zip(
                new, self.fonts[index].get_metrics(new, size=size), strict=True
            ):
                known[char] = metric[4] if metric is not None else 0.0
        return sum(known[c] for c in run)

    def width(self, text: str, size: int) -> int:
        """The advance width of ``text`` at ``size`` pixels."""
        return round(sum(self._advance(i, run, size) for i, run in self.runs(text)))

    def ascender(self, size: int) -> int:
        return int(self.fonts[0].get_sized_ascender(size))

    def line_height(self, size: int) -> int:
        return int(self.fonts[0].get_sized_height(size))

    def draw(
        self, surface: pygame.Surface, origin: tuple[int, int], text: str, color: Color, size: int
    ) -> int:
        """Draw ``text`` with its baseline starting at ``origin``; return the advance width."""
        x: float = origin[0]
        for index, run in self.runs(text):
            self.fonts[index].render_to(
                surface, (round(x), origin[1]), run, fgcolor=color, size=size
            )
            x += self._advance(index, run, size)
        return round(x - origin[0])


class Typefaces:
    """The regular and the bold chains, built once per screen."""

    def __init__(self, extra: Sequence[Path] = ()) -> None:
        self.regular = FontChain([*extra, *REGULAR])
        self.bold = FontChain([*extra, *BOLD])
