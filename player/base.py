"""The interfaces through which the director drives the screen and the speaker.

A player runs its own thread (or none); it reports the end of what it played through
``PlayerEvents.finished``, which must not block (the director puts it on its queue).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from protocol import Bulletin, Channel, Outcome


@dataclass(frozen=True)
class PlayItem:
    """One thing to show or play: a bulletin's screen or speaker part, with its cached files."""

    bulletin: Bulletin
    channel: Channel
    key: str  # unique per showing / announcement occurrence
    origin: str  # rotation, scheduled, play_now, emergency, technician
    media: dict[str, Path] = field(default_factory=dict)  # sha256 -> file in the content cache
    until: datetime | None = None  # screen: when the slot ends, if known
    start_at: datetime | None = None  # speaker: start exactly then (a synchronized play_at)
    # speaker: ready later than this after ``start_at``, it is not played (skipped, late)
    start_tolerance_ms: int | None = None


@dataclass(frozen=True)
class PlayStarted:
    """A player's report: the first sound of ``key`` left (``start_error_ms`` against its
    ``start_at``, when it had one)."""

    channel: Channel
    key: str
    start_error_ms: int | None = None


@dataclass(frozen=True)
class PlayEnded:
    """A player's report: ``key`` ended. ``reason`` is a short code for ``failed`` and
    ``skipped`` (``late_for_play_at``, ``media_error``, ``speech_error``, ``playback_error``…)."""

    channel: Channel
    key: str
    outcome: Outcome
    detail: str = ""
    reason: str | None = None
    start_error_ms: int | None = None


class PlayerEvents(Protocol):
    """Where players report; called from any thread, must not block."""

    def finished(self, report: PlayEnded) -> None: ...

    def started(self, report: PlayStarted) -> None: ...


class ScreenPlayer(Protocol):
    """The public screen."""

    def show(self, item: PlayItem | None) -> None:
        """Show ``item`` now (None: the idle screen); replaces what is shown without a gap."""

    def set_ticker(self, lines: tuple[str, ...]) -> None:
        """The scrolling ticker's lines (empty: no ticker)."""

    def set_power(self, on: bool) -> None:
        """Switch the screen (and its backlight or HDMI sink) on or off."""

    def snapshot(self, max_width: int | None = None) -> bytes | None:
        """A PNG of the frame on the display now (None: this screen has no frame)."""

    @property
    def alive(self) -> bool:
        """False once the screen's own thread is gone (the watchdog then stops its pings)."""

    def close(self) -> None: ...


class SpeakerPlayer(Protocol):
    """The loudspeakers."""

    audible: bool  # False: nobody hears it (a live relay is refused)

    @property
    def alive(self) -> bool:
        """False once the loudspeakers' own thread is gone."""

    def play(self, item: PlayItem) -> None:
        """Start ``item``; ``finished`` reports its end (completed, or failed with a reason)."""

    def stop(self) -> None:
        """Interrupt what is playing; ``finished`` reports it as interrupted."""

    def prepare(self, item: PlayItem) -> None:
        """Make ``item`` quick to start later (its speech synthesized ahead), without sound."""

    def set_volume(self, percent: int) -> None:
        """The volume of every source, 0–100."""

    def set_amplifier(self, mode: Literal["auto", "on", "off"]) -> None:
        """``power.set``: force the amplifier on or off, or let it follow the sound."""

    def relay(self, url: str | None) -> None:
        """Relay a live stream whenever no announcement plays (None: stop)."""

    def close(self) -> None: ...
