"""The conductor: the one owner of playback (programs, overrides, power, volume, relays).

The director verifies a command and hands it here; the conductor changes what plays, writes
the ack with the change in one transaction, and drives the stage. It runs only on the
director's thread. A program is accepted (ack ``accepted``), its content is fetched by the
``CacheFiller``, and only then does it go live (ack ``done``), in one transaction with its
version; until then, and if it fails (ack ``failed``), the previous program keeps playing.
``play.now`` and ``emergency.start`` with files wait for them the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from agent.cache import ContentCache
from agent.cache_fill import ContentJob, ContentResult, Jobs
from agent.intake import ProgramIntake
from agent.outbox import Outbox, Seen
from agent.playlog import FLUSH_AT_PENDING, PlaylogRecorder
from agent.programs import Ranks, bulletin_media
from agent.stage import (
    AMPLIFIER_MODE_SETTING,
    RELAY_SETTING,
    SCREEN_MODE_SETTING,
    VOLUME_SETTING,
    Stage,
    saved_volume,
)
from agent.store import Settings, Store
from agent.waiting import WAITING_SETTING, WaitingOverrides
from player.base import PlayEnded, PlayStarted
from protocol import (
    Ack,
    CacheUsage,
    Envelope,
    NowPlaying,
    PowerSetBody,
    PowerState,
    ScreenshotBody,
    Status,
    StreamStartBody,
    VolumeSetBody,
)

log = logging.getLogger(__name__)
RETRY_RECONCILE = timedelta(seconds=5)


class Conductor:
    """Programs, overrides and the stage; the ``agent.playback.Playback`` of a real device."""

    def __init__(
        self,
        store: Store,
        cache: ContentCache,
        jobs: Jobs,
        stage: Stage,
        recorder: PlaylogRecorder,
        ranks: Ranks,
        outbox: Outbox,
        wake: Callable[[datetime | None], None],
        clock: Callable[[], datetime],
        default_volume: int,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.cache = cache
        self.jobs = jobs  # the CacheFiller's thread
        self.stage = stage
        self.recorder = recorder
        self.ranks = ranks
        self.outbox = outbox
        self.ack = outbox.ack
        self.event = outbox.event
        self.wake = wake
        self.clock = clock
        self.default_volume = default_volume
        self.busy = busy  # more events wait in the director's inbox
        self.programs = ProgramIntake(store, cache, jobs, ranks, outbox, clock)
        self.waiting = WaitingOverrides()

    # ------------------------------------------------------------------ boot

    def boot(self) -> None:
        """Play from the cache: live programs and overrides as they were, before any network."""
        now = self.clock()
        self.programs.load()
        self.stage.set_programs(self.programs.merged())
        self.stage.restore(now)
        self._restore_waiting()
        self.cache.set_keep(self.keep())
        live, pending = len(self.programs.live), len(self.programs.pending)
        log.info("booted from cache: %d live programs, %d pending", live, pending)
        self.reconcile()
        self.repair()

    # ------------------------------------------------------------------ documents

    def on_override(self, env: Envelope, topic: str, seen: Seen) -> list[Ack]:
        """``play.now`` or ``emergency.start``: in force at once, or once its files are here."""
        stopped = self.stage.stopped.get(env.id) if env.type == "play.now" else None
        if stopped is not None:
            # Its play.stop came first (a reconnection, a redelivery): it is not played.
            log.warning("play.now %s was withdrawn by %s before it came", env.id, stopped.by)
            detail = f"withdrawn by play.stop {stopped.by} before it came"
            entries = self.stage.never_played(env, "cancelled")
            ack = self.ack(env.id, Status.FAILED, "cancelled", detail, seen=seen, entries=entries)
            return [ack]
        rank = self.ranks.of_command(topic)
        media = bulletin_media(env.body.bulletin)
        now = self.clock()
        missing = [m for m in media if not self.cache.has(m.sha256, m.size)]
        if not missing:
            return [self._in_force(env, rank, now, seen)]
        self.waiting.add(env, rank, now)
        # Saved with its ack: after a restart its files are fetched again and it comes in force.
        ack = self.ack(
            env.id,
            Status.ACCEPTED,
            detail=f"{len(missing)} files to fetch",
            seen=seen,
            settings=self.waiting.setting(),
        )
        self.cache.set_keep(self.keep())
        self.jobs.submit(ContentJob(f"override:{env.id}", env.id, tuple(media)))
        return [ack]

    def on_emergency_stop(self, env: Envelope, seen: Seen) -> list[Ack]:
        ref = env.body.ref
        ended = self.stage.stop_emergency(ref, self.clock())
        for waiting in self.waiting:
            if waiting.env.type == "emergency.start" and ref in (None, waiting.env.id):
                # Stopped before its files arrived: it will never start.
                self.waiting.pop(waiting.env.id)
                self.jobs.cancel(waiting.env.id)
                self._give_up(waiting.env, "cancelled", f"stopped by {env.id}")
                ended += 1
        if ended == 0 and ref is not None:
            return [
                self.ack(
                    env.id, Status.FAILED, "not_found", f"no emergency {ref} in force", seen=seen
                )
            ]
        # The stop is saved in the same transaction as its ack.
        ack = self.ack(
            env.id,
            Status.DONE,
            detail=f"{ended} emergencies ended",
            seen=seen,
            settings=self.stage.overrides_setting(),
        )
        self.cache.set_keep(self.keep())
        self.decide()
        return [ack]

    def on_play_stop(self, env: Envelope, seen: Seen) -> list[Ack]:
        """``play.stop``: the ``play.now`` ``ref`` is withdrawn wherever it is, and its id is
        remembered (with the ack) so that it is not played if it comes later."""
        ref, now = env.body.ref, self.clock()
        self.stage.stopped.add(ref, env.id, env.expires_at, now)
        stopped = self.stage.stopped.setting(now)
        done = self.stage.withdraw(ref, now)
        waiting = next((w for w in self.waiting if w.env.id == ref), None)
        if waiting is not None and waiting.env.type == "play.now":
            self.waiting.pop(ref)
            self.jobs.cancel(ref)
            why = f"withdrawn by play.stop {env.id}"
            self._give_up(waiting.env, "cancelled", why, stopped)
            done.files, done.bulletin = True, waiting.env.body.bulletin.id
        log.info("play.stop %s: %s", env.id, done.detail(ref))
        ack = self.ack(
            env.id,
            Status.DONE,
            None if done.found else "not_found",
            done.detail(ref),
            seen=seen,
            settings={**self.stage.overrides_setting(), **stopped},
            entries=done.entries,
        )
        self.cache.set_keep(self.keep())
        self.decide()
        return [ack]

    def on_content(self, result: ContentResult) -> None:
        if result.topic.startswith("override:"):
            self._override_content(result)
            return
        if result.topic.startswith("repair:"):
            if result.reason is not None:
                log.warning("repairing %s failed: %s", result.doc_id, result.detail)
            self.reconcile()
            return
        if self.programs.on_content(result):
            self.stage.set_programs(self.programs.merged())
        self.cache.set_keep(self.keep())
        self.reconcile()

    def _override_content(self, result: ContentResult) -> None:
        waiting = self.waiting.pop(result.doc_id)
        if waiting is None:
            return
        if result.reason is not None:
            self._give_up(waiting.env, result.reason, result.detail)
            return
        # In force from now: its files are here only now.
        self._in_force(waiting.env, waiting.rank, self.clock(), None)

    def _in_force(self, env: Envelope, rank: int, now: datetime, seen: Seen | None) -> Ack:
        """Put an override in force; it is saved in the same transaction as its ``done``."""
        self.stage.add_override(env, rank, now, now)
        ack = self.ack(
            env.id,
            Status.DONE,
            detail=_override_detail(env),
            seen=seen,
            settings={**self.stage.overrides_setting(), **self.waiting.setting()},
        )
        self.cache.set_keep(self.keep())
        self.decide()
        return ack

    def decide(self) -> None:
        """Decide now or, when more events wait in the director's inbox (the burst a broker
        delivers at reconnection: a ``play.now`` and its ``play.stop``), right after them."""
        if self.busy():
            self.wake(self.clock())  # a Tick, queued behind them
        else:
            self.reconcile()

    def _give_up(
        self, env: Envelope, reason: str, detail: str, settings: Settings | None = None
    ) -> None:
        """An accepted override that will never be in force: its ``failed`` ack and the play-log
        entries of what it would have played (``skipped``, ``reason``), in one transaction."""
        self.ack(
            env.id,
            Status.FAILED,
            reason,
            detail,
            settings={**self.waiting.setting(), **(settings or {})},
            entries=self.stage.never_played(env, reason),
        )

    def _restore_waiting(self) -> None:
        """The overrides that were fetching their files when the agent stopped: fetched again."""
        for waiting in self.waiting.restore(self.store.get_setting(WAITING_SETTING)):
            job = ContentJob(f"override:{waiting.env.id}", waiting.env.id, waiting.media)
            self.jobs.submit(job)

    # ------------------------------------------------------------------ playing

    def on_player(self, report: PlayEnded) -> None:
        self.stage.finished(report)
        self.reconcile()

    def on_started(self, report: PlayStarted) -> None:
        self.stage.started(report)

    def reconcile(self) -> None:
        """Decide what plays now and when to decide again."""
        now = self.clock()
        wake: datetime | None = now + RETRY_RECONCILE
        try:
            wake = self.stage.reconcile(now)
        finally:
            # Even when deciding failed (a full disk under the store), decide again soon:
            # a board whose last wake-up is lost would freeze on one item.
            self.wake(wake)
        if self.recorder.pending_count() >= FLUSH_AT_PENDING:
            self.recorder.flush()

    # ------------------------------------------------------------------ commands

    def execute(self, env: Envelope, topic: str, seen: Seen) -> list[Ack] | None:
        """Carry out a verified playback command or program (None: not one of these)."""
        match env.type:
            case "program":
                acks = self.programs.accept(env, topic, seen)
                self.cache.set_keep(self.keep())
                return acks
            case "play.now" | "emergency.start":
                return self.on_override(env, topic, seen)
            case "emergency.stop":
                return self.on_emergency_stop(env, seen)
            case "play.stop":
                return self.on_play_stop(env, seen)
            case "volume.set":
                body: VolumeSetBody = env.body
                return [a for a in (self.set_volume(body.percent, env, seen),) if a is not None]
            case "power.set":
                return self.on_power_set(env, seen)
            case "stream.start":
                return self.on_stream_start(env, seen)
            case "stream.stop":
                return self.on_stream_stop(env, seen)
            case "screenshot":
                return self.on_screenshot(env, seen)
        return None

    def set_volume(
        self, percent: int, env: Envelope | None = None, seen: Seen | None = None
    ) -> Ack | None:
        """``volume.set`` (with its command) or the technician's ``volume`` (without): saved,
        with the ack when there is one, then applied."""
        settings: Settings = {VOLUME_SETTING: str(percent)}
        ack = None
        if env is None:
            self.store.record(settings=settings, now=self.clock().timestamp())
        else:
            detail = f"volume {percent}%"
            ack = self.ack(env.id, Status.DONE, detail=detail, seen=seen, settings=settings)
        self.stage.set_volume(percent)
        log.info("volume set to %d%%", percent)
        return ack

    @property
    def volume(self) -> int:
        return saved_volume(self.store, self.default_volume)

    def on_power_set(self, env: Envelope, seen: Seen) -> list[Ack]:
        body: PowerSetBody = env.body
        if body.screen is None and body.amplifier is None:
            detail = "give screen and/or amplifier: on, off or auto"
            return [self.ack(env.id, Status.FAILED, "nothing_to_set", detail, seen=seen)]
        settings: dict[str, str | None] = {}
        parts = []
        if body.screen is not None:
            settings[SCREEN_MODE_SETTING] = None if body.screen == "auto" else body.screen
            parts.append(f"screen {body.screen}")
        if body.amplifier is not None:
            settings[AMPLIFIER_MODE_SETTING] = None if body.amplifier == "auto" else body.amplifier
            parts.append(f"amplifier {body.amplifier}")
        # The mode and its ack in one transaction; then the screen follows at once.
        ack = self.ack(env.id, Status.DONE, detail=", ".join(parts), seen=seen, settings=settings)
        self.stage.set_power(body.screen, body.amplifier)
        log.info("power set: %s", ", ".join(parts))
        self.reconcile()
        return [ack]

    def on_stream_start(self, env: Envelope, seen: Seen) -> list[Ack]:
        body: StreamStartBody = env.body
        if "speaker" not in body.channels:
            detail = "this agent relays streams to the loudspeakers only"
            return [self.ack(env.id, Status.FAILED, "not_supported", detail, seen=seen)]
        if not self.stage.speaker.audible:
            detail = "no loudspeakers here ([speaker] enabled = false, or no sound output)"
            return [self.ack(env.id, Status.FAILED, "no_speaker", detail, seen=seen)]
        # Saved with the ack: a relay still wanted after a restart starts again.
        relay = json.dumps({"url": body.url, "level": body.level.value})
        detail = self.outbox.redactor(f"relaying {body.url}")
        settings: Settings = {RELAY_SETTING: relay}
        ack = self.ack(env.id, Status.DONE, detail=detail, seen=seen, settings=settings)
        self.stage.relay(body.url, body.level)
        self.reconcile()
        return [ack]

    def on_stream_stop(self, env: Envelope, seen: Seen) -> list[Ack]:
        settings: Settings = {RELAY_SETTING: None}
        ack = self.ack(env.id, Status.DONE, detail="relay stopped", seen=seen, settings=settings)
        self.stage.relay(None)
        self.reconcile()
        return [ack]

    def on_screenshot(self, env: Envelope, seen: Seen) -> list[Ack]:
        body: ScreenshotBody = env.body
        try:
            png = self.screenshot(body.max_width)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return [self.ack(env.id, Status.FAILED, "screenshot_failed", detail, seen=seen)]
        if png is None:
            detail = "this device shows nothing on a screen ([screen] enabled = false?)"
            return [self.ack(env.id, Status.FAILED, "no_screen", detail, seen=seen)]
        extra = [("screenshot", self.outbox.topic(f"screenshot/{env.id}"), png, 1)]
        detail = f"{len(png)} bytes PNG"
        return [self.ack(env.id, Status.DONE, detail=detail, seen=seen, extra=extra)]

    # ------------------------------------------------------------------ the technician

    def screenshot(self, max_width: int | None) -> bytes | None:
        """The screen's current frame as PNG (None: no screen to take it from)."""
        return self.stage.snapshot(max_width)

    def say(self, text: str, voice: str | None, chime: bool) -> str | None:
        """The technician's ``say`` on the loudspeakers when they are free (else why not)."""
        return self.stage.say(text, voice, chime)

    def screen_info(self, test_card_s: float | None = None) -> dict[str, object] | None:
        """The screen's description, after starting its test card for ``test_card_s``
        (None: there is no real screen)."""
        screen = self.stage.technician_screen()
        if screen is None:
            return None
        if test_card_s is not None:
            screen.show_test_card(test_card_s)
        return screen.describe()

    def collect_garbage(self) -> list[str]:
        """Evict least-recently-used content over the quota, never what a program needs."""
        evicted = self.cache.gc(self.keep())
        if evicted:
            log.info("cache: evicted %d items", len(evicted))
        return evicted

    # ------------------------------------------------------------------ status

    def now_playing(self) -> NowPlaying:
        return self.stage.now_playing()

    def power_state(self) -> PowerState | None:
        return self.stage.power_state()

    def cache_usage(self) -> CacheUsage:
        size, items = self.cache.usage()
        return CacheUsage(bytes=size, items=items)

    def disk_free_bytes(self) -> int:
        return self.cache.disk_free_bytes()

    def dead_player(self) -> str | None:
        """The player whose own thread is gone ("screen's render", "speaker"), or None: the
        watchdog withholds its ping and an update on trial is not healthy."""
        if not self.stage.screen.alive:
            return "screen's render"
        if not self.stage.speaker.alive:
            return "speaker"
        return None

    def versions(self) -> dict[str, int]:
        """The live program version of each topic."""
        return self.programs.versions()

    def repair(self) -> None:
        self.programs.repair()

    def retry_due(self) -> None:
        self.programs.retry_due()

    def keep(self) -> set[str]:
        """Content that must not be evicted: live, pending and waiting documents' files."""
        return self.programs.media() | self.waiting.media() | self.stage.override_media()

    def close(self) -> None:
        self.stage.close()
        self.recorder.flush()


def _override_detail(env: Envelope) -> str:
    if env.type == "emergency.start":
        return f"emergency in force until {env.expires_at}"
    when = f"at {env.body.play_at}" if env.body.play_at else "now"
    return f"playing {env.body.bulletin.id} {when}"
