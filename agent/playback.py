"""What the director needs of playback, and the null playback of a device without players.

``agent.conductor.Conductor`` is the real one. ``NullPlayback`` serves tools and tests that run
the director alone: it executes no playback command (they are acked ``not_supported``) except
``volume.set``, which it saves for the loudspeakers of the next start.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from agent.cache_fill import ContentResult
from agent.outbox import Outbox, Seen
from agent.stage import VOLUME_SETTING, saved_volume
from agent.store import Store
from player.base import PlayEnded, PlayStarted
from protocol import Ack, CacheUsage, Envelope, NowPlaying, PowerState, Status, VolumeSetBody


class Playback(Protocol):
    """The one owner of what plays; the director routes verified commands here."""

    def execute(self, env: Envelope, topic: str, seen: Seen) -> list[Ack] | None:
        """Carry out a playback command or program, ack included (None: not one of these)."""

    def set_volume(
        self, percent: int, env: Envelope | None = None, seen: Seen | None = None
    ) -> Ack | None: ...

    @property
    def volume(self) -> int: ...

    def on_content(self, result: ContentResult) -> None: ...

    def on_player(self, report: PlayEnded) -> None: ...

    def on_started(self, report: PlayStarted) -> None: ...

    def reconcile(self) -> None: ...

    def retry_due(self) -> None: ...

    def repair(self) -> None: ...

    def screenshot(self, max_width: int | None) -> bytes | None: ...

    def say(self, text: str, voice: str | None, chime: bool) -> str | None: ...

    def screen_info(self, test_card_s: float | None = None) -> dict[str, object] | None: ...

    def collect_garbage(self) -> list[str]: ...

    def now_playing(self) -> NowPlaying: ...

    def versions(self) -> dict[str, int]: ...

    def power_state(self) -> PowerState | None: ...

    def cache_usage(self) -> CacheUsage: ...

    def disk_free_bytes(self) -> int: ...

    def dead_player(self) -> str | None: ...

    def boot(self) -> None: ...

    def close(self) -> None: ...


class NullPlayback:
    """No screen, no loudspeakers, no cache: the director alone."""

    def __init__(self, store: Store, outbox: Outbox, cache_dir: Path, default_volume: int) -> None:
        self.store = store
        self.outbox = outbox
        self.cache_dir = cache_dir
        self.default_volume = default_volume

    def execute(self, env: Envelope, topic: str, seen: Seen) -> list[Ack] | None:
        if env.type != "volume.set":
            return None
        body: VolumeSetBody = env.body
        return [a for a in (self.set_volume(body.percent, env, seen),) if a is not None]

    def set_volume(
        self, percent: int, env: Envelope | None = None, seen: Seen | None = None
    ) -> Ack | None:
        # Without loudspeakers there is nothing to apply: kept for the next start.
        settings = {VOLUME_SETTING: str(percent)}
        if env is None:
            self.store.record(settings=settings, now=self.outbox.clock().timestamp())
            return None
        detail = f"volume {percent}%"
        return self.outbox.ack(env.id, Status.DONE, detail=detail, seen=seen, settings=settings)

    @property
    def volume(self) -> int:
        return saved_volume(self.store, self.default_volume)

    def on_content(self, result: ContentResult) -> None:
        pass

    def on_player(self, report: PlayEnded) -> None:
        pass

    def on_started(self, report: PlayStarted) -> None:
        pass

    def reconcile(self) -> None:
        pass

    def retry_due(self) -> None:
        pass

    def repair(self) -> None:
        pass

    def screenshot(self, max_width: int | None) -> bytes | None:
        return None

    def say(self, text: str, voice: str | None, chime: bool) -> str | None:
        return "this agent has no loudspeakers"

    def screen_info(self, test_card_s: float | None = None) -> dict[str, object] | None:
        return None

    def collect_garbage(self) -> list[str]:
        return []

    def now_playing(self) -> NowPlaying:
        return NowPlaying()

    def versions(self) -> dict[str, int]:
        return {}

    def power_state(self) -> PowerState | None:
        return None

    def cache_usage(self) -> CacheUsage:
        return CacheUsage()

    def disk_free_bytes(self) -> int:
        path = self.cache_dir
        try:
            return shutil.disk_usage(path if path.exists() else path.parent).free
        except OSError:
            return 0

    def dead_player(self) -> str | None:
        return None

    def boot(self) -> None:
        pass

    def close(self) -> None:
        pass
