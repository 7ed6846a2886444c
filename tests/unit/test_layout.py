"""Screen geometry: canvas, rotation, LED region, zones, letterboxing (no pygame)."""

from __future__ import annotations

import pytest

from player.layout import Geometry, centred, fit_inside, style_for, zones_for


@pytest.mark.parametrize(
    ("rotation", "canvas"),
    [(0, (1920, 1080)), (90, (1080, 1920)), (180, (1920, 1080)), (270, (1080, 1920))],
)
def test_rotation_swaps_the_canvas_for_portrait(rotation: int, canvas: tuple[int, int]) -> None:
    assert Geometry((1920, 1080), (0, 0, 1920, 1080), rotation).canvas == canvas


@pytest.mark.parametrize(
    ("rotation", "corner"),
    # Where the canvas's top-left 10x20 block lands when the picture is turned clockwise.
    [(0, (0, 0, 10, 20)), (90, (1900, 0, 20, 10)), (180, (1910, 1060, 10, 20)),
     (270, (0, 1070, 20, 10))],
)  # fmt: skip
def test_to_frame_turns_rectangles_clockwise(
    rotation: int, corner: tuple[int, int, int, int]
) -> None:
    g = Geometry((1920, 1080), (0, 0, 1920, 1080), rotation)
    assert g.to_frame((0, 0, 10, 20)) == corner


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_every_canvas_rectangle_lands_inside_the_led_region(rotation: int) -> None:
    g = Geometry((1920, 1080), (100, 50, 384, 192), rotation)
    cw, ch = g.canvas
    for rect in [(0, 0, cw, ch), (0, 0, 1, 1), (cw - 1, ch - 1, 1, 1), (5, 7, 30, 11)]:
        x, y, w, h = g.to_frame(rect)
        assert x >= 100 and x + w <= 100 + 384 and y >= 50 and y + h <= 50 + 192
        assert w * h == rect[2] * rect[3]
    assert g.to_frame((0, 0, cw, ch)) == (100, 50, 384, 192)


def test_a_region_outside_the_frame_or_a_bad_rotation_is_refused() -> None:
    with pytest.raises(ValueError, match="not inside"):
        Geometry((640, 360), (600, 0, 100, 100), 0)
    with pytest.raises(ValueError, match="rotation"):
        Geometry((640, 360), (0, 0, 640, 360), 45)


def test_zones_tile_the_canvas_and_the_ticker_takes_room_only_when_there_is_one() -> None:
    style = style_for("lcd", (1920, 1080))
    with_ticker = zones_for((1920, 1080), style, ticker=True)
    without = zones_for((1920, 1080), style, ticker=False)
    for z in (with_ticker, without):
        assert z.header[1] == 0
        assert z.main[1] == z.header[3]
        assert z.main[1] + z.main[3] + z.ticker[3] == 1080
    assert without.ticker[3] == 0
    assert without.main[3] > with_ticker.main[3]


def test_led_type_is_larger_for_its_size_and_bold() -> None:
    lcd, led = style_for("lcd", (1920, 1080)), style_for("led", (384, 192))
    assert led.bold_body and not lcd.bold_body
    # Relative to the short side, LED type is at least three times larger.
    assert led.min_text_px / 192 >= 3 * lcd.min_text_px / 1080


@pytest.mark.parametrize(
    ("size", "box", "fitted"),
    [((400, 100), (800, 800), (800, 200)), ((100, 400), (800, 600), (150, 600)),
     ((1920, 1080), (1920, 900), (1600, 900)), ((16, 9), (16, 9), (16, 9))],
)  # fmt: skip
def test_fit_inside_keeps_the_aspect_ratio(
    size: tuple[int, int], box: tuple[int, int], fitted: tuple[int, int]
) -> None:
    assert fit_inside(size, box) == fitted
    assert centred(fitted, (0, 0, *box))[:2] == (
        (box[0] - fitted[0]) // 2,
        (box[1] - fitted[1]) // 2,
    )
