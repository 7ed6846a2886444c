"""The public screen, drawn with pygame: header, bulletin, ticker; emergency screen; video.

One render thread owns pygame and the display; ``show``, ``set_ticker`` and ``set_power`` only
queue work for it, so the director never waits for a frame. The thread sleeps until something is
due: the clock's next second, the ticker's next frame (``ticker_fps``), the next video frame, or
a command. A static bulletin therefore costs one small redraw a second, and only the rectangles
that changed are turned (``rotation``) and sent to the display.

What replaces a bulletin is prepared off-screen first (text fitted, image decoded and scaled,
video's first frame decoded) while the previous one stays up: the board never goes black
between items.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from player import draw
from player.base import PlayEnded, PlayerEvents, PlayItem, PlayStarted
from player.fonts import Typefaces
from player.layout import Geometry, Profile, Rect, Zones, style_for, zones_for
from player.power import PowerHook
from player.sdl import pygame
from protocol import Level
from protocol.text import nfc

if TYPE_CHECKING:
    from player.video import VideoClip, VideoEngine

log = logging.getLogger(__name__)
T = TypeVar("T")
VIDEO_POLL_S = 1 / 30  # how often a playing video is checked for a new frame
FIRST_FRAME_WAIT_S = 3.0  # the previous item stays up this long while a video opens
MIN_PAGE_S = 5.0  # a page of a long bulletin stays up at least this long
FPS_WINDOW_S = 2.0


class ScreenError(Exception):
    """The display cannot be opened."""


@dataclass(frozen=True)
class ScreenSettings:
    """What the screen needs from the configuration."""

    geometry: Geometry
    profile: Profile
    driver: str  # window | headless
    fullscreen: bool
    ward: str
    fonts: tuple[Path, ...]
    ticker_fps: int
    tz: tzinfo
    video_aout: str = "adummy"


@dataclass
class _Scene:
    """What the main zone (or, full screen, the whole canvas) shows."""

    kind: str  # idle, text, image, video, emergency, test
    key: str | None = None
    pages: list[draw.Page] = field(default_factory=list)
    clip: VideoClip | None = None
    page: int = 0
    page_s: float = 0.0  # how long each page stays (text too long for one page)
    page_due: float = float("inf")
    shown_serial: int = -1
    clock_rect: Rect | None = None  # the emergency band's clock
    clock_text: str = ""
    opened_at: float = 0.0
    full: bool = False  # covers header and ticker
    info: dict[str, Any] = field(default_factory=dict)

    def paint(self, surface: pygame.Surface, at: tuple[int, int]) -> bool:
        """Paint the current page; False when there is none (a video's picture instead)."""
        if not self.pages:
            return False
        self.pages[self.page].paint(surface, at)
        return True


class _Quiet:
    """Where the screen reports when nobody listens (the technician's test card)."""

    def finished(self, report: PlayEnded) -> None:
        log.info("%s %s: %s %s", report.channel, report.key, report.outcome, report.detail)

    def started(self, report: PlayStarted) -> None:
        pass


class PygameScreen:
    """The screen player (``player.base.ScreenPlayer``) on pygame."""

    def __init__(
        self,
        settings: ScreenSettings,
        events: PlayerEvents | None = None,
        power: PowerHook | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.events: PlayerEvents = events or _Quiet()
        self.power = power
        self.monotonic = monotonic
        self.on = True
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._main, name="screen", daemon=True)
        self._frames: collections.deque[float] = collections.deque()
        # Render-thread state:
        self._item: PlayItem | None = None
        self._ticker_lines: tuple[str, ...] = ()
        self._scene = _Scene("idle")
        self._needs_full = True
        self._ticker_due = 0.0
        self._ticker_t0 = monotonic()
        self._test_until = 0.0
        self._video: VideoEngine | None = None
        self._errors = 0

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 15.0) -> None:
        """Open the display on the render thread; raise ScreenError if it cannot be opened."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ScreenError(f"the display did not open within {timeout:.0f} s")
        if self._failure is not None:
            raise ScreenError(f"cannot open the display: {self._failure}") from self._failure

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._inbox.put(lambda: None)  # wake the thread
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.power is not None:
            self.power.close()

    # ------------------------------------------------------------------ ScreenPlayer

    def show(self, item: PlayItem | None) -> None:
        self._inbox.put(lambda: self._show(item))

    def set_ticker(self, lines: tuple[str, ...]) -> None:
        self._inbox.put(lambda: self._set_ticker(lines))

    def set_power(self, on: bool) -> None:
        self.on = on
        if self.power is not None:
            self.power.set(on)
        self._inbox.put(self._power_changed)

    def snapshot(self, max_width: int | None = None, timeout: float = 5.0) -> bytes:
        """A PNG of the exact frame now on the display, scaled down to ``max_width``."""
        frame = self._call(self._copy_frame, timeout)
        if max_width is not None and frame.get_width() > max_width:
            w, h = frame.get_size()
            frame = pygame.transform.smoothscale(
                frame, (max_width, max(1, round(h * max_width / w)))
            )
        out = io.BytesIO()
        pygame.image.save(frame, out, "frame.png")
        return out.getvalue()

    # ------------------------------------------------------------------ technician

    def show_test_card(self, seconds: float) -> None:
        """Colour bars, the Vietnamese pangram and live figures, for ``seconds``."""
        self._inbox.put(lambda: self._start_test(seconds))

    @property
    def fps(self) -> float:
        """Frames sent to the display per second, over the last two seconds."""
        frames = list(self._frames)
        now = self.monotonic()
        recent = [t for t in frames if t > now - FPS_WINDOW_S]
        return len(recent) / FPS_WINDOW_S

    def describe(self) -> dict[str, Any]:
        g = self.settings.geometry
        return {
            "frame": list(g.frame),
            "region": list(g.region),
            "canvas": list(g.canvas),
            "rotation": g.rotation,
            "profile": self.settings.profile,
            "driver": self.settings.driver,
            "fps": round(self.fps, 1),
            "power": "on" if self.on else "off",
            "fonts": self._faces.regular.names if hasattr(self, "_faces") else [],
        }

    # ------------------------------------------------------------------ render thread

    def _call(self, fn: Callable[[], T], timeout: float) -> T:
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        if not self._thread.is_alive():
            raise ScreenError("the screen is not running")
        self._inbox.put(run)
        return future.result(timeout)

    def _main(self) -> None:
        try:
            self._open()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop()
        except Exception:
            log.exception("the screen's render thread failed")
        finally:
            self._release()

    def _open(self) -> None:
        if self.settings.driver == "headless":
            os.environ["SDL_VIDEODRIVER"] = "dummy"
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame's audio is never used
        pygame.display.init()
        flags = (
            pygame.FULLSCREEN
            if self.settings.driver == "window" and self.settings.fullscreen
            else 0
        )
        self._display = pygame.display.set_mode(self.settings.geometry.frame, flags)
        pygame.display.set_caption(f"ttcs — {self.settings.ward}")
        if self.settings.driver == "window":
            pygame.mouse.set_visible(False)
        self._display.fill((0, 0, 0))  # nothing is ever drawn outside the region
        self._faces = Typefaces(self.settings.fonts)
        self._style = style_for(self.settings.profile, self.settings.geometry.canvas)
        self._theme = draw.theme_for(self._style)
        g = self.settings.geometry
        # Upright, the canvas is the shown part of the display surface itself (one 1080p
        # surface fewer, 8 MB); turned, it is drawn apart and turned rectangle by rectangle.
        self._canvas = (
            self._display.subsurface(pygame.Rect(g.region))
            if g.rotation == 0
            else pygame.Surface(g.canvas)
        )
        self._relayout()
        self._present([(0, 0, *self.settings.geometry.canvas)])
        log.info(
            "screen open: %dx%d frame, region %s, rotation %d, %s profile, %s, fonts %s",
            *self.settings.geometry.frame,
            self.settings.geometry.region,
            self.settings.geometry.rotation,
            self.settings.profile,
            pygame.display.get_driver(),
            ", ".join(self._faces.regular.names),
        )

    def _release(self) -> None:
        self._stop_clip()
        if self._video is not None:
            self._video.close()
        pygame.display.quit()

    def _loop(self) -> None:
        while not self._closing:
            wait = self._next_due() - self.monotonic()
            try:
                job = self._inbox.get(timeout=None if wait == float("inf") else max(0.0, wait))
            except queue.Empty:
                job = None
            try:
                while job is not None:
                    job()
                    job = self._inbox.get_nowait() if not self._inbox.empty() else None
                if self.settings.driver == "window":
                    pygame.event.pump()  # keep the window responsive to the window system
                if not self._closing:
                    self._frame()
            except Exception:
                # One bad item or frame must not freeze the board: log it, redraw everything at
                # the next due time, carry on.
                log.exception("screen: drawing failed")
                self._needs_full = True
                self._errors += 1
                time.sleep(min(1.0, 0.05 * self._errors))
            else:
                self._errors = 0

    @property
    def alive(self) -> bool:
        """Whether the render thread runs (the agent's watchdog asks)."""
        return self._thread.is_alive() and not self._closing

    def _next_due(self) -> float:
        if not self.on:
            return float("inf")
        now = self.monotonic()
        due = now + (1.0 - time.time() % 1.0)  # the clock's next second
        scene = self._scene
        if self._ticker.active and not scene.full:
            due = min(due, self._ticker_due)
        if scene.clip is not None:
            due = min(due, now + VIDEO_POLL_S)
        if self._test_until:
            due = min(due, now + 1 / self.settings.ticker_fps, self._test_until)
        return min(due, scene.page_due)

    def _relayout(self) -> None:
        canvas = self.settings.geometry.canvas
        self._zones: Zones = zones_for(canvas, self._style, bool(self._ticker_lines))
        self._header = draw.Header(
            self._faces, self._style, self._theme, self._zones.header, self.settings.ward
        )
        self._ticker = draw.Ticker(self._faces, self._style, self._theme, self._zones.ticker)
        self._ticker.set_lines(self._ticker_lines)
        self._needs_full = True

    # ------------------------------------------------------------------ commands (render thread)

    def _show(self, item: PlayItem | None) -> None:
        self._item = item
        if self._test_until:
            return  # shown when the test card ends
        self._switch(self._prepare(item))
        if item is None:
            log.info("screen: idle")
        else:
            log.info("screen: %s (%s) %s", item.bulletin.id, item.origin, self._scene.kind)

    def _set_ticker(self, lines: tuple[str, ...]) -> None:
        lines = tuple(nfc(line) for line in lines if line.strip())
        if lines == self._ticker_lines:
            return
        had = bool(self._ticker_lines)
        self._ticker_lines = lines
        self._relayout()
        self._ticker_t0 = self.monotonic()
        if had != bool(lines):  # the main zone changed size
            self._switch(self._prepare(self._item))

    def _power_changed(self) -> None:
        self._needs_full = True
        if not self.on:
            self._stop_clip()

    def _start_test(self, seconds: float) -> None:
        self._test_until = self.monotonic() + seconds
        self._frames.clear()
        self._switch(_Scene("test", full=True))

    def _copy_frame(self) -> pygame.Surface:
        return self._display.copy()  # on the render thread: never a half-drawn frame

    # ------------------------------------------------------------------ scenes

    def _prepare(self, item: PlayItem | None) -> _Scene:
        """Build what ``item`` shows, off-screen, without touching what is on the display."""
        if item is None:
            size = self._zone_size(self._zones.main)
            card = draw.idle_card(self._faces, self._style, self._theme, size, self.settings.ward)
            return _Scene("idle", pages=[card])
        bulletin, screen = item.bulletin, item.bulletin.screen
        if item.origin == "emergency" or bulletin.level == Level.EMERGENCY:
            text = (screen.text if screen is not None else None) or (
                bulletin.speaker.text if bulletin.speaker is not None else None
            )
            pages, clock_rect = draw.emergency_card(
                self._faces,
                self._style,
                self._theme,
                self.settings.geometry.canvas,
                nfc(bulletin.title),
                nfc(text or ""),
            )
            scene = _Scene("emergency", item.key, pages, clock_rect=clock_rect, full=True)
            return self._paged(scene, item)
        size = self._zone_size(self._zones.main)
        try:
            if screen is not None and screen.kind == "image" and screen.media is not None:
                path = item.media[screen.media.sha256]
                return _Scene("image", item.key, [draw.image_card(path, self._theme, size)])
            if screen is not None and screen.kind == "video" and screen.media is not None:
                return self._open_video(item, item.media[screen.media.sha256], size)
        except (pygame.error, OSError, KeyError, RuntimeError) as exc:
            detail = f"{bulletin.id}: {type(exc).__name__}: {exc}"[:200]
            log.error("screen cannot show %s", detail)
            self.events.finished(PlayEnded("screen", item.key, "failed", detail, "media_error"))
            # Never a black board: the bulletin's title and text instead.
        body = (screen.text if screen is not None else None) or (
            bulletin.speaker.text if bulletin.speaker is not None else ""
        )
        pages = draw.text_card(
            self._faces, self._style, self._theme, size, nfc(bulletin.title), nfc(body or "")
        )
        return self._paged(_Scene("text", item.key, pages), item)

    def _paged(self, scene: _Scene, item: PlayItem) -> _Scene:
        """Share the item's time among its pages (at least ``MIN_PAGE_S`` each)."""
        if len(scene.pages) > 1:
            screen = item.bulletin.screen
            slot_s = (screen.duration_ms if screen is not None else 15000) / 1000
            scene.page_s = max(MIN_PAGE_S, slot_s / len(scene.pages))
            scene.page_due = self.monotonic() + scene.page_s
        return scene

    def _open_video(self, item: PlayItem, path: Path, size: tuple[int, int]) -> _Scene:
        screen = item.bulletin.screen
        sound = bool(screen is not None and getattr(screen, "sound", False))
        if self._video is None:
            # libVLC is loaded with the first video (tens of MB a text-only board never needs).
            from player.video import VideoEngine

            self._video = VideoEngine(aout=self.settings.video_aout)
        clip = self._video.open(path, size, sound=sound, loop=True)
        clip.start()
        return _Scene("video", item.key, clip=clip, opened_at=self.monotonic())

    def _switch(self, scene: _Scene) -> None:
        old = self._scene
        if old.clip is not None and old.clip is not scene.clip:
            old.clip.stop()
        self._scene = scene
        if scene.full or old.full or scene.clip is None:
            self._needs_full = True
        # A video keeps the previous picture in the main zone until its first frame is ready.

    def _stop_clip(self) -> None:
        if self._scene.clip is not None:
            self._scene.clip.stop()
            self._scene.clip = None

    def _zone_size(self, rect: Rect) -> tuple[int, int]:
        return (rect[2], rect[3])

    # ------------------------------------------------------------------ frames

    def _frame(self) -> None:
        canvas, scene, now = self._canvas, self._scene, self.monotonic()
        if not self.on:
            if self._needs_full:
                self._needs_full = False
                canvas.fill((0, 0, 0))
                self._present([self._zones.full])
            return
        if scene.kind == "test":
            if now >= self._test_until:
                self._test_until = 0.0
                self._switch(self._prepare(self._item))
                return self._frame()
            self._draw_test()
            self._present([self._zones.full])
            return
        local = datetime.now(self.settings.tz)
        dirty: list[Rect] = []
        if now >= scene.page_due:
            scene.page = (scene.page + 1) % len(scene.pages)
            scene.page_due = now + scene.page_s
            scene.info["drawn"] = False
            self._needs_full = self._needs_full or scene.full
        full = self._needs_full
        self._needs_full = False
        if scene.full:
            if full and scene.paint(canvas, (0, 0)):
                dirty.append(self._zones.full)
            dirty += self._band_clock(scene, local, full)
        else:
            if full:
                if not scene.paint(canvas, self._zones.main[:2]) and scene.clip is not None:
                    canvas.fill(self._theme.background, self._zones.main)
                dirty.append(self._zones.full)
            elif scene.info.get("drawn") is not True and scene.paint(canvas, self._zones.main[:2]):
                dirty.append(self._zones.main)
            scene.info["drawn"] = True
            dirty += self._header.draw(canvas, local, force=full)
            if self._ticker.active and (full or now >= self._ticker_due):
                dirty.append(self._ticker.draw(canvas, now - self._ticker_t0))
                self._ticker_due = now + 1.0 / self.settings.ticker_fps
            elif full:
                self._ticker.draw(canvas, 0.0)
            if scene.clip is not None:
                dirty += self._video_frame(scene, now)
        if dirty:
            self._present(_merge(dirty, self._zones.full))

    def _video_frame(self, scene: _Scene, now: float) -> list[Rect]:
        clip = scene.clip
        assert clip is not None
        if clip.error is not None:
            item = self._item
            log.error("video failed: %s", clip.error)
            clip.stop()
            scene.clip = None
            if item is not None:
                self.events.finished(
                    PlayEnded("screen", item.key, "failed", clip.error[:200], "media_error")
                )
                fallback = draw.text_card(
                    self._faces,
                    self._style,
                    self._theme,
                    self._zone_size(self._zones.main),
                    nfc(item.bulletin.title),
                    "",
                )
                scene.pages, scene.kind = fallback, "text"
                scene.info["drawn"] = False
            return []
        frame = clip.frame()
        if frame is None or frame.serial == scene.shown_serial:
            if (
                frame is None
                and now - scene.opened_at > FIRST_FRAME_WAIT_S
                and not scene.info.get("blank")
            ):
                scene.info["blank"] = True  # no picture yet: at least the zone's background
                self._canvas.fill(self._theme.background, self._zones.main)
                return [self._zones.main]
            return []
        scene.shown_serial = frame.serial
        picture = pygame.image.frombuffer(frame.data, (frame.width, frame.height), "BGRA")
        draw.frame_into(self._canvas, picture, self._zones.main, self._theme.background)
        return [self._zones.main]

    def _band_clock(self, scene: _Scene, local: datetime, force: bool) -> list[Rect]:
        if scene.clock_rect is None:
            return []
        text = draw.clock_text(local, self._style.clock_seconds)
        if text == scene.clock_text and not force:
            return []
        scene.clock_text = text
        draw.draw_band_clock(
            self._canvas, self._faces, self._style, self._theme, scene.clock_rect, text
        )
        return [scene.clock_rect]

    def _draw_test(self) -> None:
        """The test card, redrawn each second, with a bar sweeping across it every frame.

        Every frame sends the whole canvas, so the rate shown is what a full-frame change
        (a video, say) can reach on this board.
        """
        g = self.settings.geometry
        second = int(time.time())
        scene = self._scene
        card = scene.info.get("card")
        if card is None or scene.info.get("second") != second:
            card = scene.info["card"] = self._test_card()
            scene.info["second"] = second
        self._canvas.blit(card, (0, 0))
        w, h = g.canvas
        x = int((self.monotonic() % 2.0) / 2.0 * w)
        pygame.draw.rect(self._canvas, (255, 255, 255), (x, 0, max(2, w // 200), h // 3))

    def _test_card(self) -> pygame.Surface:
        g = self.settings.geometry
        info = [
            f"Khung hình / frame {g.frame[0]}×{g.frame[1]}, vùng / region {list(g.region)}, "
            f"xoay / rotation {g.rotation}°",
            f"Hồ sơ / profile {self.settings.profile}, {pygame.display.get_driver()}, "
            f"{self.fps:.1f} khung/giây (fps)",
            datetime.now(self.settings.tz).strftime("%H:%M:%S"),
        ]
        return draw.test_card(self._faces, self._style, g.canvas, info)

    def _present(self, rects: list[Rect]) -> None:
        """Send canvas rectangles to the display, turned by ``rotation``."""
        g = self.settings.geometry
        out = []
        for rect in rects:
            target = g.to_frame(rect)
            if g.rotation != 0:
                part = self._canvas.subsurface(pygame.Rect(rect))
                self._display.blit(pygame.transform.rotate(part, -g.rotation), target[:2])
            out.append(pygame.Rect(target))
        pygame.display.update(out)
        now = self.monotonic()
        self._frames.append(now)
        while self._frames and self._frames[0] < now - FPS_WINDOW_S:
            self._frames.popleft()


def _merge(rects: list[Rect], full: Rect) -> list[Rect]:
    """One full-canvas rectangle if it is among them, else the rectangles as they are."""
    return [full] if full in rects else rects
