"""The pygame screen, by its pixels (SDL's dummy video driver, real fonts, real libVLC)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pygame
import pytest

from agent.config import ScreenConfig
from agent.players import screen_settings
from player import draw
from player.base import PlayEnded, PlayItem, PlayStarted
from player.fonts import Typefaces
from player.layout import Profile, style_for
from player.screen import PygameScreen
from protocol import Bulletin
from tests.helpers import wait_for
from tests.media import mjpeg_avi

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
VOWELS = "aăâeêioôơuưy"
TONES = ("", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323")  # huyền sắc hỏi ngã nặng
NOTICE = Bulletin.model_validate(
    {
        "id": "tiem-chung",
        "title": "Thông báo lịch tiêm chủng",
        "screen": {"kind": "text", "text": "Trạm Y tế phường tiêm chủng sáng thứ Bảy."},
    }
)
ALERT = Bulletin.model_validate(
    {
        "id": "bao-so-9",
        "title": "Cảnh báo bão số 9",
        "level": "emergency",
        "screen": {"kind": "text", "text": "Không ra khỏi nhà từ 18 giờ."},
    }
)


class Finished:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []

    def finished(self, report: PlayEnded) -> None:
        self.calls.append((report.channel, report.key, report.outcome, report.detail))

    def started(self, report: PlayStarted) -> None:
        pass


@pytest.fixture
def open_screen() -> Iterator[Any]:
    screens: list[PygameScreen] = []

    def make(events: Finished | None = None, **kw: Any) -> PygameScreen:
        config = ScreenConfig(**{"width": 640, "height": 360, **kw})
        screen = PygameScreen(screen_settings(config, "Phường 12", TZ), events)
        screen.start()
        screens.append(screen)
        return screen

    yield make
    for screen in screens:
        screen.close()


def rgb(surface: pygame.Surface, pos: tuple[int, int]) -> tuple[int, int, int]:
    r, g, b, _ = surface.get_at(pos)
    return (r, g, b)


def frame_of(screen: PygameScreen) -> pygame.Surface:
    return screen._call(screen._copy_frame, 5)


def settled(screen: PygameScreen) -> pygame.Surface:
    """The frame once the queued work has been drawn (a round trip through the render thread)."""
    screen._call(lambda: None, 5)
    return frame_of(screen)


def colours(surface: pygame.Surface, rect: tuple[int, int, int, int] | None = None) -> list[bytes]:
    part = surface.subsurface(rect) if rect else surface
    raw = pygame.image.tobytes(part, "RGB")
    return [raw[i : i + 3] for i in range(0, len(raw), 3)]


def share(pixels: list[bytes], wanted: set[bytes]) -> float:
    return sum(1 for p in pixels if p in wanted) / len(pixels)


def media_bulletin(bid: str, title: str, kind: str, sha: str, mime: str) -> Bulletin:
    """A bulletin showing one cached file (the tests hand its path to the screen)."""
    media = {"url": f"http://x/{bid}", "sha256": sha, "size": 1, "mime": mime}
    return Bulletin.model_validate(
        {"id": bid, "title": title, "screen": {"kind": kind, "media": media}}
    )


def item(bulletin: Bulletin, origin: str = "rotation", **media: Path) -> PlayItem:
    return PlayItem(bulletin, "screen", f"{bulletin.id}|{time.monotonic()}", origin, media)


def test_the_text_zone_is_inked(open_screen: Any) -> None:
    screen = open_screen()
    screen.show(item(NOTICE))
    frame = settled(screen)
    main = colours(frame, (0, 60, 640, 240))
    background = bytes(draw.LCD_THEME.background)
    inked = 1 - share(main, {background})
    assert inked > 0.03
    # The title's red and the body's near-black are both there.
    assert bytes(draw.LCD_THEME.title) in set(main)
    assert bytes(draw.LCD_THEME.text) in set(main)


@pytest.mark.parametrize("profile", ["lcd", "led"])
def test_the_emergency_screen_fills_the_frame(open_screen: Any, profile: str) -> None:
    screen = open_screen(profile=profile)
    screen.set_ticker(("Tin vắn",))
    screen.show(item(ALERT, origin="emergency"))
    pixels = colours(settled(screen))
    theme = draw.LED_THEME if profile == "led" else draw.LCD_THEME
    # Red, the yellow band and white text: nothing of the header, the ticker or a black edge.
    alert = {bytes(theme.emergency_bg), bytes(theme.emergency_band)}
    assert share(pixels, alert) > 0.75
    assert share(pixels, {bytes(theme.emergency_bg)}) > 0.5
    assert share(pixels, {b"\x00\x00\x00"}) < 0.02


def test_a_speaker_only_emergency_shows_its_title_and_text(open_screen: Any) -> None:
    spoken = Bulletin.model_validate(
        {
            "id": "loa",
            "title": "Cảnh báo lũ",
            "level": "emergency",
            "speaker": {"kind": "tts", "text": "Nước sông đang lên nhanh."},
        }
    )
    screen = open_screen()
    screen.show(item(spoken, origin="emergency"))
    pixels = colours(settled(screen), (0, 80, 640, 280))
    assert bytes(draw.LCD_THEME.emergency_text) in set(pixels)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_turns_the_picture(open_screen: Any, rotation: int) -> None:
    screen = open_screen(rotation=rotation)
    screen.show(item(NOTICE))
    frame = settled(screen)
    assert frame.get_size() == (640, 360)
    assert screen.settings.geometry.canvas == ((360, 640) if rotation % 180 else (640, 360))
    header = draw.LCD_THEME.header_bg
    # The header (the canvas's top rows) ends up on the right, the bottom or the left.
    probe = {90: (637, 180), 180: (320, 357), 270: (2, 180)}[rotation]
    assert rgb(frame, probe) == header
    assert rgb(frame, (320, 2)) != header or rotation == 0


def test_nothing_is_drawn_outside_the_led_region(open_screen: Any) -> None:
    region = (100, 50, 192, 96)
    screen = open_screen(profile="led", region=region)
    screen.set_ticker(("Chào mừng ngày hội đại đoàn kết toàn dân tộc",))
    screen.show(item(NOTICE))
    time.sleep(0.3)  # the ticker scrolls meanwhile
    screen.show(item(ALERT, origin="emergency"))
    for frame in (settled(screen), frame_of(screen)):
        inside = pygame.Rect(region)
        outside = [
            rgb(frame, (x, y))
            for x in range(0, 640, 4)
            for y in range(0, 360, 4)
            if not inside.collidepoint(x, y)
        ]
        assert set(outside) == {(0, 0, 0)}
        assert share(colours(frame, region), {b"\x00\x00\x00"}) < 0.5


def test_an_image_is_letterboxed_with_its_aspect_kept(open_screen: Any, tmp_path: Path) -> None:
    picture = pygame.Surface((400, 100))
    picture.fill((0, 160, 0))
    path = tmp_path / "poster.png"
    pygame.image.save(picture, str(path))
    sha = "a" * 64
    bulletin = media_bulletin("poster", "Áp phích", "image", sha, "image/png")
    screen = open_screen()
    screen.show(PlayItem(bulletin, "screen", "poster", "rotation", {sha: path}))
    frame = settled(screen)
    green = [(x, y) for x in range(640) for y in range(360) if rgb(frame, (x, y)) == (0, 160, 0)]
    xs, ys = [p[0] for p in green], [p[1] for p in green]
    width, height = max(xs) - min(xs) + 1, max(ys) - min(ys) + 1
    _, _, zone_w, zone_h = screen._zones.main
    assert (width, height) == (zone_w, zone_w // 4) and height < zone_h  # bars above and below
    assert abs(width / height - 4.0) < 0.05


def test_a_broken_image_shows_the_title_and_reports_failed(
    open_screen: Any, tmp_path: Path
) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png at all")
    sha = "b" * 64
    bulletin = media_bulletin("broken", "Áp phích hỏng", "image", sha, "image/png")
    events = Finished()
    screen = open_screen(events)
    screen.show(PlayItem(bulletin, "screen", "broken", "rotation", {sha: path}))
    main = colours(settled(screen), (0, 60, 640, 240))
    assert bytes(draw.LCD_THEME.title) in set(main)  # never a black board
    assert events.calls and events.calls[0][:3] == ("screen", "broken", "failed")


@pytest.mark.parametrize("profile", ["lcd", "led"])
def test_every_vietnamese_vowel_with_every_tone_has_a_glyph(profile: Profile) -> None:
    pygame.display.init()
    faces = Typefaces()
    style = style_for(profile, (1920, 1080) if profile == "lcd" else (384, 192))
    letters = [
        ch
        for base in VOWELS + VOWELS.upper()
        for tone in TONES
        for ch in [__import__("unicodedata").normalize("NFC", base + tone)]
    ] + ["đ", "Đ"]
    assert len(letters) == 12 * 2 * 6 + 2
    for chain in (faces.regular, faces.bold):
        assert chain.missing("".join(letters)) == ""
        font = chain.fonts[0]
        size = style.min_text_px
        notdef = font.render("\U0010fffd", size=size)[0]  # no font has a glyph for this
        notdef_bytes = pygame.image.tobytes(notdef, "RGBA")
        for ch in letters:
            index = chain.font_for(ch)
            glyph = chain.fonts[index].render(ch, size=size)[0]
            assert pygame.image.tobytes(glyph, "RGBA") != notdef_bytes, (profile, ch)
            assert glyph.get_bounding_rect().width > 0, (profile, ch)


def test_decomposed_text_is_drawn_as_composed(open_screen: Any) -> None:
    nfd = __import__("unicodedata").normalize("NFD", "Thông báo lịch tiêm chủng")
    decomposed = NOTICE.model_copy(update={"title": nfd})
    screen = open_screen()
    screen.show(item(NOTICE))
    composed_frame = colours(settled(screen), (0, 60, 640, 240))
    screen.show(item(decomposed))
    assert colours(settled(screen), (0, 60, 640, 240)) == composed_frame


def test_a_text_too_long_for_one_page_is_shown_in_pages(open_screen: Any) -> None:
    long_text = " ".join(
        f"Điều {i}: bà con chấp hành quy định phòng chống thiên tai." for i in range(40)
    )
    bulletin = Bulletin.model_validate(
        {"id": "dai", "title": "Quy định", "screen": {"kind": "text", "text": long_text}}
    )
    pygame.display.init()
    faces = Typefaces()
    style = style_for("led", (192, 96))
    pages = draw.fit_text(faces, style, draw.LED_THEME, "Quy định", long_text, (180, 60))
    assert len(pages) > 3
    words = [w for page in pages for block in page for line in block.lines for w in line.split()]
    assert words == ["Quy", "định", *long_text.split()]  # every word, once, in order
    screen = open_screen(profile="led", region=(0, 0, 192, 96))
    screen.show(item(bulletin))
    settled(screen)
    assert len(screen._scene.pages) > 1
    assert screen._scene.page_s >= 5.0


def test_a_static_bulletin_sends_about_one_frame_a_second(open_screen: Any) -> None:
    screen = open_screen()
    screen.show(item(NOTICE))
    settled(screen)
    before = len(screen._frames)
    time.sleep(2.2)
    # The clock's second, and nothing else: no busy loop, no redraw of what did not change.
    assert len(screen._frames) - before <= 4


def test_the_ticker_moves(open_screen: Any) -> None:
    screen = open_screen()
    screen.set_ticker(("Phường 12 chào mừng ngày hội đại đoàn kết",))
    screen.show(item(NOTICE))
    settled(screen)
    ticker = screen._zones.ticker
    assert ticker[3] > 0
    first = colours(frame_of(screen), ticker)
    wait_for(lambda: colours(frame_of(screen), ticker) != first, 5, "the ticker to move")


def test_a_video_plays_to_its_end_in_the_main_zone(open_screen: Any, tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    mjpeg_avi(path, size=(320, 180), fps=10, colors=[(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    sha = "c" * 64
    bulletin = media_bulletin("clip", "Phim", "video", sha, "video/avi")
    events = Finished()
    screen = open_screen(events)
    screen.show(PlayItem(bulletin, "screen", "clip", "rotation", {sha: path}))
    main = screen._zones.main
    centre = (main[0] + main[2] // 2, main[1] + main[3] // 2)
    seen: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and seen[-1:] != ["blue"]:
        r, g, b = rgb(frame_of(screen), centre)
        name = "red" if r > 180 > g else "green" if g > 180 > r else "blue" if b > 180 > g else ""
        if name and seen[-1:] != [name]:
            seen.append(name)
        time.sleep(0.05)
    assert seen[:3] == ["red", "green", "blue"]  # played through to its last part
    assert events.calls == []
    # The frame keeps its aspect (16:9) inside the main zone: letterbox bars left and right.
    frame = frame_of(screen)
    assert rgb(frame, (main[0] + 1, centre[1])) == draw.LCD_THEME.background


def test_switching_items_never_shows_an_empty_main_zone(open_screen: Any) -> None:
    other = NOTICE.model_copy(update={"id": "rac", "title": "Giờ thu gom rác sinh hoạt"})
    screen = open_screen()
    screen.show(item(NOTICE))
    settled(screen)
    main = screen._zones.main
    background = bytes(draw.LCD_THEME.background)
    for i in range(8):
        screen.show(item(other if i % 2 == 0 else NOTICE))
        # Sample the display while the next item is being prepared and after it is up.
        for _ in range(5):
            pixels = colours(frame_of(screen), main)
            assert 1 - share(pixels, {background}) > 0.02, "a blank main zone was on screen"
            assert share(pixels, {b"\x00\x00\x00"}) < 0.01, "a black main zone was on screen"


def test_a_failure_while_drawing_does_not_stop_the_screen(open_screen: Any) -> None:
    screen = open_screen()

    def broken() -> None:
        raise ValueError("a bug while drawing")

    screen._inbox.put(broken)
    screen.show(item(NOTICE))
    pixels = colours(settled(screen), screen._zones.main)
    assert screen.alive
    assert bytes(draw.LCD_THEME.title) in set(pixels)
