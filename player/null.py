"""Players for a box with no screen or speaker attached (or before the real ones exist).

They log what they would do and keep honest time: a speaker item "plays" for as long as it
would take to say its text, so the director's timing and proof of play stay realistic.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Literal

from player.base import PlayEnded, PlayerEvents, PlayItem, PlayStarted
from protocol import speaking_time_s

log = logging.getLogger(__name__)


class NullScreen:
    """Logs what the screen would show."""

    def __init__(self) -> None:
        self.current: PlayItem | None = None
        self.on = True

    def show(self, item: PlayItem | None) -> None:
        self.current = item
        if item is None:
            log.info("screen: idle")
        else:
            log.info("screen: %s (%s) %s", item.bulletin.id, item.origin, item.bulletin.title)

    def set_ticker(self, lines: tuple[str, ...]) -> None:
        log.debug("screen ticker: %d lines", len(lines))

    def set_power(self, on: bool) -> None:
        if on != self.on:
            log.info("screen power %s", "on" if on else "off")
        self.on = on

    def snapshot(self, max_width: int | None = None) -> bytes | None:
        return None

    @property
    def alive(self) -> bool:
        return True

    def close(self) -> None:
        self.current = None


class NullSpeaker:
    """Logs what the speaker would say, and reports it finished after its speaking time."""

    audible = False  # nobody hears it (a live relay is refused)
    alive = True

    def __init__(self, events: PlayerEvents, time_scale: float = 1.0) -> None:
        self.events = events
        self.time_scale = time_scale
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._current: PlayItem | None = None

    def play(self, item: PlayItem) -> None:
        self.stop()
        wait = 0.0
        if item.start_at is not None:
            wait = max(0.0, (item.start_at - datetime.now(UTC)).total_seconds())
        timer = threading.Timer(wait, self._start, args=(item,))
        timer.daemon = True
        with self._lock:
            self._current, self._timer = item, timer
        timer.start()

    def _start(self, item: PlayItem) -> None:
        seconds = speaking_time_s(item.bulletin.speaker) * self.time_scale
        error_ms = None
        if item.start_at is not None:
            error_ms = round((datetime.now(UTC) - item.start_at).total_seconds() * 1000)
            tolerance = item.start_tolerance_ms
            if tolerance is not None and error_ms > tolerance:
                with self._lock:
                    if self._current is not item:
                        return
                    self._current, self._timer = None, None
                late = PlayEnded("speaker", item.key, "skipped", "", "late_for_play_at", error_ms)
                self.events.finished(late)
                return
        timer = threading.Timer(seconds, self._done, args=(item,))
        timer.daemon = True
        with self._lock:
            if self._current is not item:
                return
            self._timer = timer
            # Reported under the lock: a stop meanwhile cannot report its end before this.
            self.events.started(PlayStarted("speaker", item.key, error_ms))
        log.info("speaker: %s (%s) for %.1f s", item.bulletin.id, item.origin, seconds)
        timer.start()

    def prepare(self, item: PlayItem) -> None:
        log.debug("speaker: preparing %s", item.key)

    def set_volume(self, percent: int) -> None:
        log.info("speaker volume %d%%", percent)

    def set_amplifier(self, mode: Literal["auto", "on", "off"]) -> None:
        log.info("amplifier %s", mode)

    def relay(self, url: str | None) -> None:
        log.info("speaker relay: %s", url or "stopped")

    def _done(self, item: PlayItem) -> None:
        with self._lock:
            if self._current is not item:
                return
            self._current, self._timer = None, None
        self.events.finished(PlayEnded("speaker", item.key, "completed"))

    def stop(self) -> None:
        with self._lock:
            item, timer = self._current, self._timer
            self._current, self._timer = None, None
        if timer is not None:
            timer.cancel()
        if item is not None:
            self.events.finished(PlayEnded("speaker", item.key, "interrupted"))

    def close(self) -> None:
        with self._lock:
            timer = self._timer
            self._current, self._timer = None, None
        if timer is not None:
            timer.cancel()
