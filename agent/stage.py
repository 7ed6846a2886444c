"""The stage: turns arbitration decisions into player calls, and every showing into proof of play.

Owned by the director and called only from its thread. It keeps what arbitration needs beyond
the programs (overrides, the rotation cursor, the screen's turn, what the loudspeakers took in)
and persists the parts that must survive a power cut: an emergency in force is still in force
after a reboot, an announcement already played is not played again, and one that waited still
waits. The loudspeakers' side is ``agent.loudspeakers``; the screen's is here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from agent.arbiter import (
    Cursor,
    Decision,
    Emergency,
    PlayNow,
    ScreenSlot,
    World,
    decide,
    play_now_remaining,
    play_now_screen_open,
)
from agent.loudspeakers import EventSink, Loudspeakers
from agent.playlog import PlaylogRecorder
from agent.programs import Merged, bulletin_fingerprint, bulletin_media
from agent.store import Settings, Store
from agent.turns import Policy
from agent.withdrawals import STOPPED_SETTING, StoppedPlays, Withdrawal
from player.base import PlayEnded, PlayItem, PlayStarted, ScreenPlayer, SpeakerPlayer
from protocol import (
    Bulletin,
    Channel,
    Envelope,
    Level,
    NowPlaying,
    Outcome,
    PowerState,
    format_time,
    parse_time,
)

log = logging.getLogger(__name__)
SCREEN_MODE_SETTING = "power.screen"
AMPLIFIER_MODE_SETTING = "power.amplifier"
RELAY_SETTING = "relay"
VOLUME_SETTING = "volume"
SCREEN_SETTING = "screen.shown"
PowerMode = Literal["auto", "on", "off"]


@dataclass
class _Showing:
    key: str
    slot: ScreenSlot
    token: str
    since: datetime


@runtime_checkable
class TechnicianScreen(Protocol):
    """A real screen also shows the technician's test card and describes itself."""

    def show_test_card(self, seconds: float) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def saved_volume(store: Store, default: int) -> int:
    """The loudspeakers' volume: the last one set (``volume.set``, the technician), else
    ``[speaker] default_volume``."""
    try:
        return int(store.get_setting(VOLUME_SETTING) or default)
    except ValueError:
        return default


def _no_event(severity: Literal["warning", "error"], code: str, detail: str) -> None:
    log.debug("event %s %s: %s", severity, code, detail)


class Stage:
    """Drives the screen and the speaker from ``decide()``."""

    def __init__(
        self,
        store: Store,
        screen: ScreenPlayer,
        speaker: SpeakerPlayer,
        recorder: PlaylogRecorder,
        media_path: Callable[[str], Path],
        tz: ZoneInfo,
        policy: Policy | None = None,
        event: EventSink = _no_event,
    ) -> None:
        self.store = store
        self.screen = screen
        self.speaker = speaker
        self.recorder = recorder
        self.media_path = media_path
        self.world = World(tz=tz, shown=_load_shown(store))
        self.cursor = Cursor()
        self.loudspeakers = Loudspeakers(
            store, speaker, recorder, media_path, policy or Policy(), event
        )
        self.stopped = StoppedPlays(store.get_setting(STOPPED_SETTING))  # play.stop
        self.loudspeakers.withdrawn = self.stopped
        self.showing: _Showing | None = None
        self.screen_on: bool | None = None
        # power.set: "on"/"off" force the screen, "auto" follows screen_hours.
        self.screen_mode = _mode(store.get_setting(SCREEN_MODE_SETTING))
        self.loudspeakers.amplifier_mode = _mode(store.get_setting(AMPLIFIER_MODE_SETTING))
        self.last: Decision | None = None
        # The verified commands behind the overrides, persisted so that they survive a reboot.
        self._docs: dict[str, tuple[Envelope, int, datetime]] = {}

    @property
    def amplifier_mode(self) -> PowerMode:
        return self.loudspeakers.amplifier_mode

    # ------------------------------------------------------------------ inputs

    def set_programs(self, merged: Merged) -> None:
        self.world = replace(
            self.world,
            entries=merged.entries,
            screen_hours=merged.screen_hours,
            went_live_at=merged.went_live_at,
        )
        self.screen.set_ticker(merged.ticker)

    def restore(self, now: datetime) -> None:
        """At boot, before any network: the overrides, the relay and the loudspeakers' queue as
        they were, and the plays a crash left open recorded (``interrupted``)."""
        self.recorder.recover(self.loudspeakers.restore(now))
        relay = self.store.get_setting(RELAY_SETTING)
        if relay:  # a stream.start still wanted when the agent stopped
            try:
                saved = json.loads(relay)
                self.loudspeakers.relay_wanted = (
                    str(saved["url"]),
                    Level(saved.get("level", "normal")).rank,
                )
            except (ValueError, KeyError, TypeError) as exc:
                log.error("the saved relay is unreadable and dropped: %s", exc)
        raw = self.store.get_setting("overrides")
        if not raw:
            return
        for saved in json.loads(raw):
            try:
                env = Envelope.model_validate_json(saved["doc"])
                rank, received = int(saved["rank"]), parse_time(saved["received_at"])
            except (ValueError, KeyError, TypeError) as exc:  # ValidationError is a ValueError
                # One unreadable record (an older format) must not keep the board from booting.
                log.error("a saved override is unreadable and dropped: %s", exc)
                continue
            if env.id in self.stopped:
                continue  # withdrawn (play.stop)
            self.add_override(env, rank, received, now, expire=False)
        self._expire(now)  # once all are back: each one's screen time is kept

    def add_override(
        self, env: Envelope, rank: int, received: datetime, now: datetime, expire: bool = True
    ) -> None:
        """Start an ``emergency.start`` or ``play.now`` (already verified)."""
        expires = parse_time(env.expires_at) if env.expires_at else None
        if env.type == "emergency.start":
            emergency = Emergency(
                env.id, env.body.bulletin, rank, received, expires, env.body.repeat_every_s
            )
            self.world = replace(self.world, emergencies=(*self.world.emergencies, emergency))
        elif env.type == "play.now":
            play_at = parse_time(env.body.play_at) if env.body.play_at else received
            item = PlayNow(
                env.id,
                env.body.bulletin,
                rank,
                parse_time(env.issued_at),
                play_at,
                env.body.repeat or 1,
                expires,
                env.body.play_at is not None,
            )
            self.world = replace(self.world, play_now=(*self.world.play_now, item))
        self._docs[env.id] = (env, rank, received)
        if expire:
            self._expire(now, persist=False)  # the caller saves it with its ack

    def stop_emergency(self, ref: str | None, now: datetime) -> int:
        """End one emergency (or all); return how many ended."""
        kept = tuple(e for e in self.world.emergencies if ref is not None and e.id != ref)
        ended = len(self.world.emergencies) - len(kept)
        for emergency in self.world.emergencies:
            if emergency not in kept:
                self._docs.pop(emergency.id, None)
        self.world = replace(self.world, emergencies=kept)
        self._expire(now, persist=False)  # the caller saves it with its ack
        return ended

    def withdraw(self, ref: str, now: datetime) -> Withdrawal:
        """``play.stop``: take the ``play.now`` ``ref`` (already in ``stopped``) off the
        loudspeakers and the screen. What speaks or shows ends at the next ``reconcile``
        (``interrupted``, not replayed), what waits is skipped ``cancelled``; the caller saves
        the overrides and writes ``entries`` with its ack."""
        item = next((p for p in self.world.play_now if p.id == ref), None)
        speaking, queued, entries = self.loudspeakers.withdraw(ref, item)
        done = Withdrawal(None, False, speaking, queued, entries=entries)
        if item is None:
            return done
        done.bulletin = item.bulletin.id
        screen = item.bulletin.screen
        if screen is not None and self.world.showing == ref:
            done.showing = True
        elif screen is not None and self.world.shown.get(ref, 0) < screen.duration_ms * item.repeat:
            done.screen_turn = True
            entry = self.recorder.skipped_entry(item.bulletin.id, "screen", ref, "cancelled")
            done.entries.append(entry)
        play_now = tuple(p for p in self.world.play_now if p.id != ref)
        self.world = replace(self.world, play_now=play_now)
        self._docs.pop(ref, None)
        self._expire(now, persist=False)
        return done

    def never_played(self, env: Envelope, reason: str) -> list[tuple[str, str]]:
        """The ``skipped`` play-log entries of an accepted ``play.now`` or ``emergency.start``
        that will never be in force (its files could not be had, it was stopped first)."""
        bulletin = env.body.bulletin
        entries = []
        if bulletin.speaker is not None:
            times = (env.body.repeat or 1) if env.type == "play.now" else 1
            entries += [
                self.recorder.skipped_entry(bulletin.id, "speaker", env.id, reason)
                for _ in range(times)
            ]
        if bulletin.screen is not None:
            entries.append(self.recorder.skipped_entry(bulletin.id, "screen", env.id, reason))
        return entries

    def overrides_setting(self) -> dict[str, str | None]:
        """The overrides in force, as the store setting that brings them back after a reboot."""
        saved = [
            {"doc": env.model_dump_json(), "rank": rank, "received_at": format_time(received)}
            for env, rank, received in self._docs.values()
        ]
        return {"overrides": json.dumps(saved)}

    def override_media(self) -> set[str]:
        """Files of the overrides in force, and of what waits for the loudspeakers (they must
        not be evicted)."""
        bulletins = [env.body.bulletin for env, _, _ in self._docs.values()]
        bulletins += [c.bulletin for c in self.loudspeakers.waiting()]
        return {m.sha256 for b in bulletins for m in bulletin_media(b)}

    def _expire(self, now: datetime, persist: bool = True) -> None:
        """Drop overrides that can no longer matter, and persist the rest."""
        emergencies = tuple(
            e for e in self.world.emergencies if e.expires_at is None or e.expires_at > now
        )
        play_now = []
        for item in self.world.play_now:
            if _play_now_end(item, self.world.grace_s) > now:
                play_now.append(item)
            else:
                self._screen_gone(
                    item, "screen_off" if self.screen_on is False else "expired_in_queue"
                )
        live = {e.id for e in emergencies} | {p.id for p in play_now}
        for doc_id in list(self._docs):
            if doc_id not in live:
                del self._docs[doc_id]
        shown = {k: v for k, v in self.world.shown.items() if k in live}
        self.world = replace(
            self.world, emergencies=emergencies, play_now=tuple(play_now), shown=shown
        )
        if persist:
            self.store.record(settings=self.overrides_setting(), now=now.timestamp())

    # ------------------------------------------------------------------ decisions

    def reconcile(self, now: datetime) -> datetime | None:
        """Decide and make the players follow; return when to decide again."""
        self._expire_quietly(now)
        world = replace(self.world, played=frozenset(self.loudspeakers.known))
        decision = decide(world, self.cursor, now)
        self.cursor = decision.cursor
        self.last = decision
        screen_on = self._screen_power(decision)
        if screen_on != self.screen_on:
            self.screen.set_power(screen_on)
            self.screen_on = screen_on
        # A screen switched off shows nothing, so it proves no play.
        self._follow_screen(decision.screen if screen_on else None, now)
        self._screen_skips(screen_on, now)
        wake = self.loudspeakers.follow(decision, world, now)
        changes = [t for t in (decision.next_change, wake) if t is not None]
        return min(changes, default=None)

    def _screen_power(self, decision: Decision) -> bool:
        """``power.set`` forces the screen on or off; an emergency in force is always seen."""
        if self.screen_mode == "on" or self.world.emergencies:
            return True
        if self.screen_mode == "off":
            return False
        return decision.screen_on

    def _expire_quietly(self, now: datetime) -> None:
        ended = any(
            e.expires_at is not None and e.expires_at <= now for e in self.world.emergencies
        )
        grace = self.world.grace_s
        if ended or any(_play_now_end(p, grace) <= now for p in self.world.play_now):
            self._expire(now)

    def _follow_screen(self, slot: ScreenSlot | None, now: datetime) -> None:
        key = _slot_key(slot, self.cursor) if slot is not None else None
        if self.showing is not None and self.showing.key == key:
            return
        if self.showing is not None:
            self._end_showing(now)
        if slot is None or key is None:
            self.screen.show(None)
            return
        item = self._item(slot.bulletin, "screen", key, slot.origin, slot.until)
        self.screen.show(item)
        token = self.recorder.started(slot.bulletin.id, "screen", slot.ref)
        self.showing = _Showing(key, slot, token, now)
        if slot.key:
            self.world = replace(self.world, showing=slot.key, showing_since=now)

    def _end_showing(self, now: datetime, outcome: Outcome | None = None) -> None:
        """The showing ends (``outcome`` None: by itself, or because something took over)."""
        showing, self.showing = self.showing, None
        if showing is None:
            return
        slot = showing.slot
        done = slot.until is not None and slot.until <= now
        fields: dict[str, object] = {}
        settings = None
        if slot.origin == "play_now":
            # Its time counts while it shows: interrupted, it resumes with the rest.
            item = self._play_now(slot)
            left = play_now_remaining(item, self.world, now) if item else timedelta(0)
            if item is not None:
                spent = self.world.shown.get(item.id, 0) + _ms(now - showing.since)
                self.world = replace(self.world, shown={**self.world.shown, item.id: spent})
            done = left <= timedelta(0) and item is not None
            if not done:
                grace = timedelta(seconds=self.world.grace_s)
                alive = item is not None and play_now_screen_open(item, self.world, now, grace)
                fields["replayed"] = alive
            settings = self._shown_setting()
        if self.world.showing == slot.key:
            self.world = replace(self.world, showing=None, showing_since=None)
        final: Outcome = outcome or ("completed" if done else "interrupted")
        if showing.token:  # (not when it failed already)
            self.recorder.ended(showing.token, final, fields, settings)
        elif settings is not None:
            self.store.record(settings=settings, now=now.timestamp())

    def _play_now(self, slot: ScreenSlot) -> PlayNow | None:
        if slot.origin != "play_now":
            return None
        return next((p for p in self.world.play_now if p.id == slot.ref), None)

    def _screen_skips(self, screen_on: bool, now: datetime) -> None:
        """Every ``play.now`` with a screen part ends in the play log: one that can no longer
        take the screen (its time to start passed, or its command expired) is recorded
        ``skipped``: ``screen_off`` when the screen was off then, else ``expired_in_queue``."""
        grace = timedelta(seconds=self.world.grace_s)
        for item in self.world.play_now:
            if item.bulletin.screen is None or item.play_at > now:
                continue
            if self.world.showing == item.id or play_now_remaining(item, self.world, now) <= (
                timedelta(0)
            ):
                continue
            if not play_now_screen_open(item, self.world, now, grace):
                self._screen_gone(item, "expired_in_queue" if screen_on else "screen_off")

    def _screen_gone(self, item: PlayNow, reason: str) -> None:
        """A ``play.now``'s screen part that will not show (any more): recorded ``skipped``."""
        if item.bulletin.screen is None:
            return
        total = item.bulletin.screen.duration_ms * max(1, item.repeat)
        if self.world.shown.get(item.id, 0) >= total or self.world.showing == item.id:
            return
        self.world = replace(self.world, shown={**self.world.shown, item.id: total})
        settings = self._shown_setting()
        self.recorder.skipped(item.bulletin.id, "screen", item.id, reason, settings=settings)
        log.warning("screen: %s (%s) skipped: %s", item.bulletin.id, item.id, reason)

    def _shown_setting(self) -> Settings:
        return {SCREEN_SETTING: json.dumps(dict(self.world.shown))}

    # ------------------------------------------------------------------ player reports

    def started(self, report: PlayStarted) -> None:
        """A player's first sound of an item (a synchronized start is recorded now)."""
        if report.channel == "speaker":
            self.loudspeakers.started(report, self.recorder.clock())

    def finished(self, report: PlayEnded) -> None:
        """A player reports the end of an item (on the director's thread)."""
        if report.channel == "speaker":
            self.loudspeakers.finished(report, self.recorder.clock())
        elif self.showing is not None and self.showing.key == report.key and self.showing.token:
            # The screen shows the title instead until the slot ends: the slot is kept (not
            # shown again at once), and its play ends here with the reason.
            token, self.showing.token = self.showing.token, ""
            fields = (
                {"reason": report.reason or "media_error"} if report.outcome == "failed" else {}
            )
            self.recorder.ended(token, report.outcome, fields)

    def set_volume(self, percent: int) -> None:
        """The volume of every source; the caller saves it (``VOLUME_SETTING``)."""
        self.speaker.set_volume(percent)

    def power_state(self) -> PowerState:
        on = self.screen_on
        return PowerState(
            screen=None if on is None else ("on" if on else "off"),
            screen_mode=self.screen_mode,
            amplifier_mode=self.amplifier_mode,
        )

    def snapshot(self, max_width: int | None) -> bytes | None:
        """The screen's current frame as PNG (None: there is no screen to take it from)."""
        return self.screen.snapshot(max_width)

    def technician_screen(self) -> TechnicianScreen | None:
        """The screen, when it is one that shows a test card (not the null screen)."""
        return self.screen if isinstance(self.screen, TechnicianScreen) else None

    def set_power(
        self, screen: PowerMode | None = None, amplifier: PowerMode | None = None
    ) -> None:
        """``power.set``: force the screen or the amplifier on or off, or release it (``auto``);
        the caller saves the modes with its ack and reconciles."""
        if screen is not None:
            self.screen_mode = screen
        if amplifier is not None:
            self.loudspeakers.amplifier_mode = amplifier
            self.speaker.set_amplifier(amplifier)

    def relay(self, url: str | None, level: Level = Level.NORMAL) -> None:
        """``stream.start`` (a URL) or ``stream.stop`` (None); the caller saves it with its ack
        and reconciles."""
        self.loudspeakers.relay_wanted = None if url is None else (url, level.rank)

    def say(self, text: str, voice: str | None, chime: bool) -> str | None:
        """A technician's ``say`` on the loudspeakers, when they are free (else why not)."""
        return self.loudspeakers.say(say_bulletin(text, voice, chime), self.recorder.clock())

    def close(self) -> None:
        """Silence the speaker and end the open showings (interrupted) before the agent stops."""
        now = self.recorder.clock()
        self.loudspeakers.close(now)
        self.screen.close()
        self._end_showing(now, "interrupted")

    # ------------------------------------------------------------------ helpers

    def now_playing(self) -> NowPlaying:
        """What shows and what speaks now (the status message's ``now``)."""
        speaker, ref, error = self.loudspeakers.now_playing()
        return NowPlaying(
            screen=self.showing.slot.bulletin.id if self.showing is not None else None,
            speaker=speaker,
            speaker_ref=ref,
            start_error_ms=error,
        )

    def _item(
        self, bulletin: Bulletin, channel: Channel, key: str, origin: str, until: datetime | None
    ) -> PlayItem:
        media = {m.sha256: self.media_path(m.sha256) for m in bulletin_media(bulletin, channel)}
        return PlayItem(bulletin, channel, key, origin, media, until)


def say_bulletin(text: str, voice: str | None, chime: bool = False) -> Bulletin:
    """A bulletin for a technician's test: spoken only."""
    return Bulletin.model_validate(
        {
            "id": "technician-test",
            "title": "Thử loa",
            "speaker": {"kind": "tts", "text": text, "voice": voice, "chime": chime},
        }
    )


def _slot_key(slot: ScreenSlot, cursor: Cursor) -> str:
    # The content's fingerprint too: a corrected bulletin under the same id is shown at once.
    content = bulletin_fingerprint(slot.bulletin)
    if slot.origin == "rotation":
        since = cursor.since.isoformat() if cursor.since else "-"
        return f"rotation|{slot.ref}|{slot.bulletin.id}|{content}|{since}"
    until = slot.until.isoformat() if slot.until else "-"
    return f"{slot.origin}|{slot.ref}|{slot.bulletin.id}|{content}|{until}"


def _mode(saved: str | None) -> PowerMode:
    return "on" if saved == "on" else "off" if saved == "off" else "auto"


def _ms(delta: timedelta) -> int:
    return max(0, round(delta.total_seconds() * 1000))


def _play_now_end(item: PlayNow, grace_s: int) -> datetime:
    """When a ``play.now`` can no longer matter: its command's expiry (it may wait for the
    screen, or resume on it, until then), at least its speaker parts' grace."""
    screen = item.bulletin.screen
    length_ms = (screen.duration_ms if screen is not None else 0) * item.repeat
    floor = item.play_at + max(timedelta(milliseconds=length_ms), timedelta(seconds=grace_s))
    return max(floor, item.expires_at) if item.expires_at is not None else floor


def _load_shown(store: Store) -> dict[str, int]:
    try:
        raw = json.loads(store.get_setting(SCREEN_SETTING) or "{}")
        return {str(k): int(v) for k, v in raw.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        log.error("the record of play.now screen time is unreadable and dropped: %s", exc)
        return {}
