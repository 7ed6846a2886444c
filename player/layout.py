"""Screen geometry: the canvas the bulletins are drawn on, its zones, and how it reaches the panel.

Pure arithmetic (no pygame), so every profile and rotation is checked by plain unit tests.

Everything is drawn on an upright *canvas*. The canvas is the shown part of the frame (the LED
controller's ``region``, or the whole frame) turned back by ``rotation``: a portrait-mounted panel
(rotation 90) has a canvas taller than wide. ``Geometry.to_frame`` maps a canvas rectangle to the
frame rectangle it lands on, so that only changed rectangles are turned and sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Rect = tuple[int, int, int, int]  # x, y, w, h
Profile = Literal["lcd", "led"]


@dataclass(frozen=True)
class Geometry:
    """Where the canvas lands in the frame."""

    frame: tuple[int, int]  # the whole frame sent to the display (width, height)
    region: Rect  # the part of the frame that is shown, in frame pixels
    rotation: int  # degrees clockwise the canvas is turned on its way to the frame

    def __post_init__(self) -> None:
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, not {self.rotation}")
        x, y, w, h = self.region
        fw, fh = self.frame
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > fw or y + h > fh:
            raise ValueError(f"region {self.region} is not inside the {fw}x{fh} frame")

    @property
    def canvas(self) -> tuple[int, int]:
        """The upright drawing surface's size."""
        _, _, w, h = self.region
        return (h, w) if self.rotation in (90, 270) else (w, h)

    def to_frame(self, rect: Rect) -> Rect:
        """The frame rectangle that the canvas rectangle ``rect`` is shown in."""
        x, y, w, h = rect
        cw, ch = self.canvas
        if self.rotation == 90:
            x, y, w, h = ch - y - h, x, h, w
        elif self.rotation == 180:
            x, y = cw - x - w, ch - y - h
        elif self.rotation == 270:
            x, y, w, h = y, cw - x - w, h, w
        rx, ry, _, _ = self.region
        return (rx + x, ry + y, w, h)


@dataclass(frozen=True)
class Zones:
    """The canvas split into the header, the main zone and the ticker (height 0: none)."""

    header: Rect
    main: Rect
    ticker: Rect
    full: Rect


@dataclass(frozen=True)
class Style:
    """Sizes that depend on the profile: an LED wall needs larger type and no thin strokes."""

    profile: Profile
    min_text_px: int  # body text never smaller than this
    max_text_px: int
    header_px: int
    ticker_px: int
    margin: int
    bold_body: bool  # LED: bold strokes only
    clock_seconds: bool  # LCD: HH:MM:SS; LED: HH:MM (fewer pixels, fewer redraws)


def style_for(profile: Profile, canvas: tuple[int, int]) -> Style:
    """Type sizes for a canvas: readable from the street, scaled with the canvas."""
    w, h = canvas
    short = min(w, h)
    if profile == "led":
        return Style(
            profile="led",
            min_text_px=max(10, short // 9),
            max_text_px=max(12, short // 3),
            header_px=max(9, short // 9),
            ticker_px=max(10, short // 7),
            margin=max(1, short // 64),
            bold_body=True,
            clock_seconds=False,
        )
    return Style(
        profile="lcd",
        min_text_px=max(12, short // 30),
        max_text_px=max(16, short // 9),
        header_px=max(12, short // 22),
        ticker_px=max(12, short // 20),
        margin=max(4, short // 40),
        bold_body=False,
        clock_seconds=True,
    )


def zones_for(canvas: tuple[int, int], style: Style, ticker: bool) -> Zones:
    """Split the canvas: header on top, the ticker (if any) at the bottom, main in between."""
    w, h = canvas
    header_h = round(style.header_px * 1.6)
    ticker_h = round(style.ticker_px * 1.6) if ticker else 0
    main_h = max(1, h - header_h - ticker_h)
    return Zones(
        header=(0, 0, w, header_h),
        main=(0, header_h, w, main_h),
        ticker=(0, h - ticker_h, w, ticker_h),
        full=(0, 0, w, h),
    )


def fit_inside(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with ``size``'s aspect ratio that fits in ``box`` (letterboxing)."""
    sw, sh = size
    bw, bh = box
    if sw <= 0 or sh <= 0:
        return (0, 0)
    scale = min(bw / sw, bh / sh)
    return (max(1, min(bw, round(sw * scale))), max(1, min(bh, round(sh * scale))))


def centred(size: tuple[int, int], box: Rect) -> Rect:
    """``size`` centred in ``box``."""
    bx, by, bw, bh = box
    w, h = size
    return (bx + (bw - w) // 2, by + (bh - h) // 2, w, h)
