"""What the screen draws: text cards fitted to their zone, images, the emergency screen, the header,
the ticker, the idle card and the technician's test card.

Each function draws onto a surface it is given or returns a new one; none touches the display.
Text is normalized to NFC before it is measured or drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from player.fonts import Color, FontChain, Typefaces
from player.layout import Rect, Style, centred, fit_inside
from player.sdl import pygame
from protocol.text import nfc

WEEKDAYS = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật")
ELLIPSIS = "…"
LINE_SPACING = 1.2
# Every Vietnamese vowel with every tone mark, and đ: what the test card shows.
PANGRAM = (
    "Tiếng Việt: a à á ả ã ạ ă ằ ắ ẳ ẵ ặ â ầ ấ ẩ ẫ ậ e è é ẻ ẽ ẹ ê ề ế ể ễ ệ i ì í ỉ ĩ ị "
    "o ò ó ỏ õ ọ ô ồ ố ổ ỗ ộ ơ ờ ớ ở ỡ ợ u ù ú ủ ũ ụ ư ừ ứ ử ữ ự y ỳ ý ỷ ỹ ỵ đ Đ"
)


@dataclass(frozen=True)
class Theme:
    """Colours of one profile."""

    background: Color
    text: Color
    title: Color
    header_bg: Color
    header_text: Color
    ticker_bg: Color
    ticker_text: Color
    emergency_bg: Color = (200, 0, 0)
    emergency_band: Color = (255, 214, 0)
    emergency_text: Color = (255, 255, 255)
    emergency_band_text: Color = (0, 0, 0)


# LCD: dark text on white for daylight; LED: lit strokes on black (black is an LED that is off).
LCD_THEME = Theme(
    background=(250, 250, 245),
    text=(20, 20, 20),
    title=(160, 0, 0),
    header_bg=(170, 20, 20),
    header_text=(255, 236, 140),
    ticker_bg=(10, 50, 120),
    ticker_text=(255, 255, 255),
)
LED_THEME = Theme(
    background=(0, 0, 0),
    text=(255, 255, 255),
    title=(255, 220, 0),
    header_bg=(0, 0, 0),
    header_text=(0, 230, 0),
    ticker_bg=(0, 0, 0),
    ticker_text=(255, 220, 0),
)


def theme_for(style: Style) -> Theme:
    return LED_THEME if style.profile == "led" else LCD_THEME


def vietnamese_date(now: datetime) -> str:
    """``Thứ Năm, 26/11/2026``."""
    return f"{WEEKDAYS[now.weekday()]}, {now.day:02d}/{now.month:02d}/{now.year}"


def clock_text(now: datetime, seconds: bool) -> str:
    return now.strftime("%H:%M:%S" if seconds else "%H:%M")


# --------------------------------------------------------------------------- text layout


def wrap(chain: FontChain, text: str, size: int, width: int) -> list[str]:
    """Word-wrap ``text`` (paragraphs kept) into lines no wider than ``width``."""
    lines: list[str] = []
    for paragraph in nfc(text).split("\n"):
        words = paragraph.split()
        line = ""
        for word in words:
            candidate = f"{line} {word}" if line else word
            if chain.width(candidate, size) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            # A word longer than the line (a URL, say) is cut where it must be.
            while chain.width(word, size) > width and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and chain.width(word[:cut], size) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return lines


@dataclass(frozen=True)
class Block:
    """Wrapped lines at one size."""

    chain: FontChain
    size: int
    lines: list[str]
    color: Color

    @property
    def step(self) -> int:
        return round(self.chain.line_height(self.size) * LINE_SPACING)

    @property
    def height(self) -> int:
        return self.step * len(self.lines)


def fit_text(
    faces: Typefaces,
    style: Style,
    theme: Theme,
    title: str,
    body: str,
    box: tuple[int, int],
    title_scale: float = 1.25,
) -> list[list[Block]]:
    """The largest type at which the title and the body fit ``box``: one page of blocks, or,
    when even the smallest readable type does not fit, as many pages as it takes."""
    width, height = box
    body_chain = faces.bold if style.bold_body else faces.regular

    def layout(size: int) -> list[Block]:
        title_size = round(size * title_scale)
        blocks = []
        if title:
            lines = wrap(faces.bold, title, title_size, width)
            blocks.append(Block(faces.bold, title_size, lines, theme.title))
        if body:
            blocks.append(Block(body_chain, size, wrap(body_chain, body, size, width), theme.text))
        return blocks

    def total(blocks: list[Block]) -> int:
        gap = blocks[0].step // 2 if len(blocks) > 1 else 0
        return sum(b.height for b in blocks) + gap

    low, high = style.min_text_px, max(style.min_text_px, style.max_text_px)
    best = layout(low)
    if total(best) <= height:
        while low < high:  # the largest size that fits
            mid = (low + high + 1) // 2
            candidate = layout(mid)
            if total(candidate) <= height:
                low, best = mid, candidate
            else:
                high = mid - 1
        return [best]
    # Too long for the zone even at the smallest readable size: pages, nothing cut off.
    return paginate(best, height)


def paginate(blocks: list[Block], height: int) -> list[list[Block]]:
    """Split blocks into pages of ``height`` (a line taller than a page still gets one)."""
    pages: list[list[Block]] = []
    page: list[Block] = []
    used = 0
    for block in blocks:
        lines = list(block.lines)
        while lines:
            gap = page[0].step // 2 if page else 0
            room = (height - used - gap) // block.step
            if room <= 0 and page:
                pages.append(page)
                page, used = [], 0
                continue
            take, lines = lines[: max(1, room)], lines[max(1, room) :]
            page.append(Block(block.chain, block.size, take, block.color))
            used += gap + block.step * len(take)
    if page:
        pages.append(page)
    return pages or [[]]


def draw_blocks(
    surface: pygame.Surface, blocks: list[Block], box: Rect, centre: bool = False
) -> None:
    """Draw fitted blocks in ``box``, vertically centred; lines centred when ``centre``."""
    if not blocks:
        return
    bx, by, bw, bh = box
    total = sum(b.height for b in blocks) + (blocks[0].step // 2 if len(blocks) > 1 else 0)
    y = by + max(0, (bh - total) // 2)
    for index, block in enumerate(blocks):
        if index:
            y += blocks[0].step // 2
        for line in block.lines:
            baseline = y + block.chain.ascender(block.size)
            x = bx
            if centre:
                x += max(0, (bw - block.chain.width(line, block.size)) // 2)
            block.chain.draw(surface, (x, baseline), line, block.color, block.size)
            y += block.step


# --------------------------------------------------------------------------- cards


class Page:
    """One page of a card: laid out once, painted onto the canvas when it is shown.

    Pages hold their layout, not their pixels: a 1080p page would cost 8 MB of memory each.
    """

    def __init__(
        self,
        size: tuple[int, int],
        background: Color,
        blocks: list[Block],
        box: Rect,
        centre: bool = False,
        band: tuple[Rect, Color] | None = None,
        label: tuple[FontChain, tuple[int, int], str, Color, int] | None = None,
        picture: pygame.Surface | None = None,
    ) -> None:
        self.size, self.background, self.blocks, self.box = size, background, blocks, box
        self.centre, self.band, self.label, self.picture = centre, band, label, picture

    def paint(self, surface: pygame.Surface, at: tuple[int, int]) -> None:
        """Paint the page with its top-left corner at ``at`` of ``surface``."""
        x, y = at
        surface.fill(self.background, (x, y, *self.size))
        if self.band is not None:
            (bx, by, bw, bh), colour = self.band
            surface.fill(colour, (x + bx, y + by, bw, bh))
        if self.label is not None:
            chain, (lx, ly), text, colour, size = self.label
            chain.draw(surface, (x + lx, y + ly), text, colour, size)
        if self.picture is not None:
            px, py, _, _ = centred(self.picture.get_size(), (0, 0, *self.size))
            surface.blit(self.picture, (x + px, y + py))
        bx, by, bw, bh = self.box
        draw_blocks(surface, self.blocks, (x + bx, y + by, bw, bh), self.centre)


def text_card(
    faces: Typefaces, style: Style, theme: Theme, size: tuple[int, int], title: str, body: str
) -> list[Page]:
    """A text bulletin filling ``size``: one page, or more when it is too long for one."""
    m = style.margin
    inner = (m, m, size[0] - 2 * m, size[1] - 2 * m)
    return [
        Page(size, theme.background, blocks, inner)
        for blocks in fit_text(faces, style, theme, title, body, (inner[2], inner[3]))
    ]


def image_card(path: Path, theme: Theme, size: tuple[int, int]) -> Page:
    """An image scaled into ``size`` with its aspect ratio kept (letterboxed)."""
    picture = pygame.image.load(str(path))
    # A transparent poster is composited over the zone's background, not over black.
    picture = (
        picture.convert_alpha() if picture.get_flags() & pygame.SRCALPHA else picture.convert()
    )
    picture = pygame.transform.smoothscale(picture, fit_inside(picture.get_size(), size))
    return Page(size, theme.background, [], (0, 0, *size), picture=picture)


def frame_into(
    surface: pygame.Surface, frame: pygame.Surface, box: Rect, background: Color
) -> None:
    """Blit a decoded video frame centred in ``box`` (letterboxed), scaling it if it must."""
    _, _, bw, bh = box
    if frame.get_size() != fit_inside(frame.get_size(), (bw, bh)):
        frame = pygame.transform.scale(frame, fit_inside(frame.get_size(), (bw, bh)))
    x, y, w, h = centred(frame.get_size(), box)
    if (w, h) != (bw, bh):
        surface.fill(background, box)
    surface.blit(frame, (x, y))


def emergency_card(
    faces: Typefaces, style: Style, theme: Theme, size: tuple[int, int], headline: str, text: str
) -> tuple[list[Page], Rect]:
    """The emergency screen: full frame, high contrast; its pages and the band's clock rect."""
    w, h = size
    band_h = max(style.header_px * 2, h // 7)
    label_size = max(style.min_text_px, round(band_h * 0.55))
    chain = faces.bold
    baseline = (band_h - chain.line_height(label_size)) // 2 + chain.ascender(label_size)
    alert = Theme(**{**theme.__dict__, "title": theme.emergency_text, "text": theme.emergency_text})
    m = style.margin * 2
    inner = (m, band_h + m, w - 2 * m, h - band_h - 2 * m)
    bold = Style(**{**style.__dict__, "bold_body": True})  # no thin strokes on an alert
    label = (chain, (m, baseline), "KHẨN CẤP", theme.emergency_band_text, label_size)
    pages = [
        Page(
            size,
            theme.emergency_bg,
            blocks,
            inner,
            centre=True,
            band=((0, 0, w, band_h), theme.emergency_band),
            label=label,
        )
        for blocks in fit_text(faces, bold, alert, headline, text, (inner[2], inner[3]), 1.4)
    ]
    clock_w = chain.width("00:00:00", label_size) + 2 * style.margin
    return pages, (w - clock_w - style.margin, 0, clock_w, band_h)


def draw_band_clock(
    surface: pygame.Surface, faces: Typefaces, style: Style, theme: Theme, rect: Rect, text: str
) -> None:
    x, y, w, h = rect
    surface.fill(theme.emergency_band, rect)
    size = max(style.min_text_px, round(h * 0.55))
    chain = faces.bold
    baseline = y + (h - chain.line_height(size)) // 2 + chain.ascender(size)
    tw = chain.width(text, size)
    chain.draw(surface, (x + w - tw, baseline), text, theme.emergency_band_text, size)


def idle_card(
    faces: Typefaces, style: Style, theme: Theme, size: tuple[int, int], ward: str
) -> Page:
    """Nothing scheduled: the ward's name, never a black board."""
    m = style.margin
    inner = (m, m, size[0] - 2 * m, size[1] - 2 * m)
    pages = fit_text(faces, style, theme, ward, "Bản tin thông tin cơ sở", (inner[2], inner[3]))
    return Page(size, theme.background, pages[0], inner, centre=True)


class Header:
    """The ward's name, the Vietnamese date and the clock; redraws only what changed."""

    def __init__(self, faces: Typefaces, style: Style, theme: Theme, rect: Rect, ward: str):
        self.faces, self.style, self.theme, self.rect = faces, style, theme, rect
        self.ward = nfc(ward)
        self.size = max(6, round(rect[3] / 1.6)) if rect[3] else 0
        self.shown: tuple[str, str] | None = None
        chain = faces.bold
        self.clock_w = chain.width("00:00:00" if style.clock_seconds else "00:00", self.size)

    def draw(self, surface: pygame.Surface, now: datetime, force: bool = False) -> list[Rect]:
        """Draw what changed since the last call (everything when ``force``); return the rects."""
        if not self.rect[3]:
            return []
        x, y, w, h = self.rect
        m = self.style.margin
        date, clock = vietnamese_date(now), clock_text(now, self.style.clock_seconds)
        chain = self.faces.bold
        baseline = y + (h - chain.line_height(self.size)) // 2 + chain.ascender(self.size)
        clock_rect = (x + w - self.clock_w - m, y, self.clock_w + m, h)
        if not force and self.shown is not None and self.shown[0] == date:
            if self.shown[1] == clock:
                return []
            self.shown = (date, clock)
            surface.fill(self.theme.header_bg, clock_rect)
            chain.draw(surface, (clock_rect[0], baseline), clock, self.theme.header_text, self.size)
            return [clock_rect]
        self.shown = (date, clock)
        surface.fill(self.theme.header_bg, self.rect)
        room = w - self.clock_w - 3 * m
        # The ward and the date when both fit (LCD), else the ward alone, cut if it must be.
        choices = [f"{self.ward}  ·  {date}", self.ward] if self.style.profile == "lcd" else []
        left = next((c for c in choices if chain.width(c, self.size) <= room), self.ward)
        while left and chain.width(left, self.size) > room:
            left = left[:-2].rstrip() + ELLIPSIS if len(left) > 2 else ""
        chain.draw(surface, (x + m, baseline), left, self.theme.header_text, self.size)
        chain.draw(surface, (clock_rect[0], baseline), clock, self.theme.header_text, self.size)
        return [self.rect]


class Ticker:
    """The program's ticker lines, scrolling right to left at a steady speed."""

    GAP = "     •     "

    def __init__(self, faces: Typefaces, style: Style, theme: Theme, rect: Rect) -> None:
        self.style, self.theme, self.rect = style, theme, rect
        self.chain = faces.bold if style.profile == "led" else faces.regular
        self.size = max(6, round(rect[3] / 1.6)) if rect[3] else 0
        self.speed = max(20.0, rect[3] * 2.2)  # pixels per second: readable while walking by
        self.pieces: list[pygame.Surface] = []
        self.length = 0

    def set_lines(self, lines: tuple[str, ...]) -> None:
        """Pre-render the lines (a few surfaces, not one very wide one)."""
        self.pieces = []
        if not self.rect[3] or not lines:
            self.length = 0
            return
        height = self.rect[3]
        baseline = (height - self.chain.line_height(self.size)) // 2 + self.chain.ascender(
            self.size
        )
        for line in lines:
            text = nfc(line) + self.GAP
            piece = pygame.Surface((max(1, self.chain.width(text, self.size)), height))
            piece.fill(self.theme.ticker_bg)
            self.chain.draw(piece, (0, baseline), text, self.theme.ticker_text, self.size)
            self.pieces.append(piece)
        self.length = sum(p.get_width() for p in self.pieces)

    @property
    def active(self) -> bool:
        return self.length > 0

    def draw(self, surface: pygame.Surface, seconds: float) -> Rect:
        """Draw the ticker as it is ``seconds`` after it started; return its rect."""
        x, y, w, _ = self.rect
        surface.fill(self.theme.ticker_bg, self.rect)
        if not self.active:
            return self.rect
        # One cycle: the text enters on the right and leaves on the left, then again.
        offset = int(seconds * self.speed) % (self.length + w)
        pos = x + w - offset
        clip = surface.get_clip()
        surface.set_clip(self.rect)
        for piece in self.pieces:
            pw = piece.get_width()
            if pos + pw > x and pos < x + w:
                surface.blit(piece, (pos, y))
            pos += pw
        surface.set_clip(clip)
        return self.rect

    def next_frame_in(self, fps: int) -> float:
        return 1.0 / fps if self.active else math.inf


def test_card(
    faces: Typefaces, style: Style, size: tuple[int, int], info: list[str]
) -> pygame.Surface:
    """Colour bars, the Vietnamese pangram with every tone mark, and ``info`` lines."""
    w, h = size
    surface = pygame.Surface(size)
    bars = [
        (255, 255, 255),
        (255, 255, 0),
        (0, 255, 255),
        (0, 255, 0),
        (255, 0, 255),
        (255, 0, 0),
        (0, 0, 255),
        (0, 0, 0),
    ]
    bar_h = h // 3
    for i, colour in enumerate(bars):
        x0, x1 = i * w // len(bars), (i + 1) * w // len(bars)
        pygame.draw.rect(surface, colour, (x0, 0, x1 - x0, bar_h))
    # A grey ramp: a panel that crushes blacks or whites shows it at once.
    for i in range(16):
        x0, x1 = i * w // 16, (i + 1) * w // 16
        grey = i * 17
        pygame.draw.rect(surface, (grey, grey, grey), (x0, bar_h, x1 - x0, h // 12))
    top = bar_h + h // 12
    surface.fill((0, 0, 0), (0, top, w, h - top))
    m = style.margin
    theme = Theme(**{**LED_THEME.__dict__, "title": (255, 220, 0), "text": (255, 255, 255)})
    box = (m, top + m, w - 2 * m, h - top - 2 * m)
    pages = fit_text(faces, style, theme, PANGRAM, "\n".join(info), (box[2], box[3]), 1.0)
    draw_blocks(surface, pages[0], box)
    # A one-pixel border shows whether the panel (or the LED region) crops the frame.
    pygame.draw.rect(surface, (255, 255, 255), (0, 0, w, h), 1)
    return surface
