"""The stage: turns arbitration decisions into player calls, and every showing into proof of play.

Owned by the director and called only from its thread. It keeps what arbitration needs beyond
the programs (overrides, the rotation cursor, the announcements already played) and persists
the parts that must survive a power cut: an emergency in force is still in force after a
reboot, and an announcement already played is not played again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from agent.arbiter import (
    LEVEL_RANK,
    Announcement,
    Cursor,
    Decision,
    Emergency,
    PlayNow,
    ScreenSlot,
    World,
    decide,
    is_valid,
)
from agent.playlog import PlaylogRecorder
from agent.programs import Merged, bulletin_media
from agent.protocol import Bulletin, Channel, Envelope, Level, Outcome, format_time, parse_time
from agent.store import Store
from player.base import PlayItem, ScreenPlayer, SpeakerPlayer

log = logging.getLogger(__name__)
PLAYED_MEMORY = timedelta(days=2)
SCREEN_MODE_SETTING = "power.screen"
AMPLIFIER_MODE_SETTING = "power.amplifier"


@dataclass
class _Showing:
    key: str
    bulletin_id: str
    token: str
    until: datetime | None


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
        prepare: timedelta = timedelta(seconds=10),
    ) -> None:
        self.store = store
        self.screen = screen
        self.speaker = speaker
        self.recorder = recorder
        self.media_path = media_path
        self.world = World(tz=tz)
        self.cursor = Cursor()
        self.played: dict[str, datetime] = _load_played(store)
        self.showing: _Showing | None = None
        # (announcement, playlog token): a synchronized start's token is "" until it sounds.
        self.speaking: tuple[Announcement, str] | None = None
        self.start_error_ms: int | None = None
        self.prepare = prepare  # how early a synchronized announcement goes to the speaker
        self.screen_on: bool | None = None
        # power.set: "on"/"off" force the screen, "auto" follows screen_hours.
        self.screen_mode = _mode(store.get_setting(SCREEN_MODE_SETTING))
        self.amplifier_mode = _mode(store.get_setting(AMPLIFIER_MODE_SETTING))
        self.last: Decision | None = None
        # The verified commands behind the overrides, persisted so that they survive a reboot.
        self._docs: dict[str, tuple[Envelope, int, datetime]] = {}

    # ------------------------------------------------------------------ inputs

    def set_programs(self, merged: Merged) -> None:
        self.world = replace(
            self.world,
            entries=merged.entries,
            screen_hours=merged.screen_hours,
            went_live_at=merged.went_live_at,
        )
        self.screen.set_ticker(merged.ticker)

    def restore_overrides(self, now: datetime) -> None:
        """Bring back the emergencies and play.now commands that were in force at shutdown."""
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
            self.add_override(env, rank, received, now)
        self._expire(now)

    def add_override(self, env: Envelope, rank: int, received: datetime, now: datetime) -> None:
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
            )
            self.world = replace(self.world, play_now=(*self.world.play_now, item))
        self._docs[env.id] = (env, rank, received)
        self._expire(now, persist=False)  # the caller saves it with its ack: overrides_setting()

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

    def overrides_setting(self) -> dict[str, str | None]:
        """The overrides in force, as the store setting that brings them back after a reboot."""
        saved = [
            {"doc": env.model_dump_json(), "rank": rank, "received_at": format_time(received)}
            for env, rank, received in self._docs.values()
        ]
        return {"overrides": json.dumps(saved)}

    def override_media(self) -> set[str]:
        """Files of the overrides in force (they must not be evicted)."""
        return {
            m.sha256 for env, _, _ in self._docs.values() for m in bulletin_media(env.body.bulletin)
        }

    def _expire(self, now: datetime, persist: bool = True) -> None:
        """Drop overrides that can no longer matter, and persist the rest."""
        emergencies = tuple(
            e for e in self.world.emergencies if e.expires_at is None or e.expires_at > now
        )
        play_now = tuple(p for p in self.world.play_now if _play_now_end(p) > now)
        live = {e.id for e in emergencies} | {p.id for p in play_now}
        for doc_id in list(self._docs):
            if doc_id not in live:
                del self._docs[doc_id]
        self.world = replace(self.world, emergencies=emergencies, play_now=play_now)
        if persist:
            self.store.record(settings=self.overrides_setting(), now=now.timestamp())

    # ------------------------------------------------------------------ decisions

    def reconcile(self, now: datetime) -> datetime | None:
        """Decide and make the players follow; return when to decide again."""
        self._expire_quietly(now)
        world = replace(self.world, played=frozenset(self.played))
        decision = decide(world, self.cursor, now)
        self.cursor = decision.cursor
        self.last = decision
        screen_on = self._screen_power(decision)
        if screen_on != self.screen_on:
            self.screen.set_power(screen_on)
            self.screen_on = screen_on
        # A screen switched off shows nothing, so it proves no play.
        self._follow_screen(decision.screen if screen_on else None, now)
        self._follow_speaker(decision.speaker_queue, now)
        ahead = self._next_synchronized(now)
        if ahead is not None:
            ready_at = ahead.play_at - self.prepare
            if ready_at > now and (decision.next_change is None or ready_at < decision.next_change):
                return ready_at
        return decision.next_change

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
        if ended or any(_play_now_end(p) <= now for p in self.world.play_now):
            self._expire(now)

    def _follow_screen(self, slot: ScreenSlot | None, now: datetime) -> None:
        key = _slot_key(slot, self.cursor) if slot is not None else None
        if self.showing is not None and self.showing.key == key:
            return
        if self.showing is not None:
            done = self.showing.until is not None and self.showing.until <= now
            self.recorder.ended(self.showing.token, "completed" if done else "interrupted")
            self.showing = None
        if slot is None or key is None:
            self.screen.show(None)
            return
        item = self._item(slot.bulletin, "screen", key, slot.origin, slot.until)
        self.screen.show(item)
        token = self.recorder.started(slot.bulletin.id, "screen", slot.ref)
        self.showing = _Showing(key, slot.bulletin.id, token, slot.until)

    def _follow_speaker(self, queue: tuple[Announcement, ...], now: datetime) -> None:
        if self.speaking is not None:
            current, _ = self.speaking
            cut_in = queue and _level(queue[0]) > _level(current)
            # Only a higher level cuts in (an emergency interrupts everything at once); and a
            # cancelled or expired emergency stops sounding at once.
            if cut_in or not self._in_force(current, now):
                self.speaker.stop()  # reports "interrupted" through finished()
            return
        if queue:
            nxt = queue[0]
        else:
            # Nothing due: a synchronized play.now close enough is handed over early, so that
            # it is ready (synthesized, amplifier warm) and starts on the clock.
            ahead = self._next_synchronized(now)
            if ahead is None or ahead.play_at - self.prepare > now:
                return
            nxt = Announcement(ahead.bulletin, "play_now", ahead.id, ahead.play_at, f"{ahead.id}#1")
        item = self._item(nxt.bulletin, "speaker", nxt.key, nxt.origin, None)
        self.start_error_ms = None
        start_at = self._synchronized_start(nxt)
        if start_at is None:
            self._mark_played(nxt.key, now)
            token = self.recorder.started(nxt.bulletin.id, "speaker", nxt.ref)
        else:
            # Played, and recorded, when it sounds (``started``): an agent restarted while it
            # waits for its time hands it over again.
            token = ""
            item = replace(item, start_at=start_at)
        self.speaking = (nxt, token)
        self.speaker.play(item)

    def _synchronized_start(self, item: Announcement) -> datetime | None:
        """The ``play_at`` a ``play.now``'s first announcement must start at, if it has one
        (also when it comes late: its start error is then measured, not hidden)."""
        doc = self._docs.get(item.ref)
        if item.origin != "play_now" or doc is None or item.key != f"{item.ref}#1":
            return None
        env = doc[0]
        return parse_time(env.body.play_at) if env.body.play_at else None

    def _next_synchronized(self, now: datetime) -> PlayNow | None:
        """The next ``play.now`` with a ``play_at`` ahead and a speaker part not yet played."""
        ahead = [
            p
            for p in self.world.play_now
            if p.play_at > now and p.bulletin.speaker is not None and f"{p.id}#1" not in self.played
        ]
        return min(ahead, key=lambda p: p.play_at, default=None)

    def started(self, channel: Channel, key: str, start_error_ms: int | None) -> None:
        """The speaker's first sound of ``key`` (a synchronized start is recorded now)."""
        if channel != "speaker" or self.speaking is None or self.speaking[0].key != key:
            return
        current, token = self.speaking
        self.start_error_ms = start_error_ms
        if not token:
            self._mark_played(key, self.recorder.clock())
            token = self.recorder.started(current.bulletin.id, "speaker", current.ref)
            self.speaking = (current, token)
        if start_error_ms is not None:
            log.info("speaker: %s started %+d ms from its play_at", key, start_error_ms)

    def _in_force(self, item: Announcement, now: datetime) -> bool:
        """Whether an emergency announcement's emergency still holds (others always do)."""
        if item.origin != "emergency":
            return True
        if any(e.id == item.ref for e in self.world.emergencies):
            return True
        return any(
            entry.ref == item.ref
            and entry.bulletin.id == item.bulletin.id
            and is_valid(entry.bulletin, now)
            for entry in self.world.entries
        )

    def finished(self, channel: Channel, key: str, outcome: Outcome, detail: str) -> None:
        """A player reports the end of an item (on the director's thread)."""
        if channel == "speaker" and self.speaking is not None and self.speaking[0].key == key:
            current, token = self.speaking
            self.speaking = None
            if not token:  # never sounded: still a play, ended at once
                self._mark_played(key, self.recorder.clock())
                token = self.recorder.started(current.bulletin.id, "speaker", current.ref)
            error = self.start_error_ms
            self.recorder.ended(token, outcome, {} if error is None else {"start_error_ms": error})
            if outcome == "failed":
                log.warning("speaker failed on %s: %s", key, detail)
        elif channel == "screen" and self.showing is not None and self.showing.key == key:
            self.recorder.ended(self.showing.token, outcome)
            self.showing = None

    def close(self) -> None:
        """Silence the speaker and end the open showings (interrupted) before the agent stops."""
        self.speaker.close()
        self.screen.close()
        if self.showing is not None:
            self.recorder.ended(self.showing.token, "interrupted")
            self.showing = None
        if self.speaking is not None and self.speaking[1]:
            self.recorder.ended(self.speaking[1], "interrupted")
        self.speaking = None

    # ------------------------------------------------------------------ helpers

    def now_playing(self) -> tuple[str | None, str | None]:
        screen = self.showing.bulletin_id if self.showing is not None else None
        speaker = self.speaking[0].bulletin.id if self.speaking is not None else None
        return screen, speaker

    def _item(
        self, bulletin: Bulletin, channel: Channel, key: str, origin: str, until: datetime | None
    ) -> PlayItem:
        media = {m.sha256: self.media_path(m.sha256) for m in bulletin_media(bulletin, channel)}
        return PlayItem(bulletin, channel, key, origin, media, until)

    def _mark_played(self, key: str, now: datetime) -> None:
        self.played[key] = now
        horizon = now - PLAYED_MEMORY
        self.played = {k: t for k, t in self.played.items() if t > horizon}
        saved = {k: format_time(t) for k, t in self.played.items()}
        self.store.record(settings={"played": json.dumps(saved)}, now=now.timestamp())


def _load_played(store: Store) -> dict[str, datetime]:
    raw = store.get_setting("played")
    try:
        return {str(k): parse_time(v) for k, v in json.loads(raw or "{}").items()}
    except (ValueError, AttributeError) as exc:
        log.error("the record of announcements played is unreadable and dropped: %s", exc)
        return {}


def _slot_key(slot: ScreenSlot, cursor: Cursor) -> str:
    # The content's fingerprint too: a corrected bulletin under the same id is shown at once.
    content = hashlib.sha256(slot.bulletin.model_dump_json().encode()).hexdigest()[:16]
    if slot.origin == "rotation":
        since = cursor.since.isoformat() if cursor.since else "-"
        return f"rotation|{slot.ref}|{slot.bulletin.id}|{content}|{since}"
    until = slot.until.isoformat() if slot.until else "-"
    return f"{slot.origin}|{slot.ref}|{slot.bulletin.id}|{content}|{until}"


def _mode(saved: str | None) -> Literal["auto", "on", "off"]:
    return "on" if saved == "on" else "off" if saved == "off" else "auto"


def _level(item: Announcement) -> int:
    # An emergency command cuts in whatever its bulletin's own level.
    level = Level.EMERGENCY if item.origin == "emergency" else item.bulletin.level
    return LEVEL_RANK[level]


def _play_now_end(item: PlayNow) -> datetime:
    screen = item.bulletin.screen
    length_ms = (screen.duration_ms if screen is not None else 0) * item.repeat
    # Speaker parts may still be waiting to start within the grace period.
    return item.play_at + max(timedelta(milliseconds=length_ms), timedelta(minutes=10))
