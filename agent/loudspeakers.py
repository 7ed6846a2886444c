"""The loudspeakers' side of the stage: announcements taken in, their turns, their proof of play.

Runs on the director's thread. Each announcement that arbitration reports due (``decide``) is
taken in once, as a ``Call``, and from then on ``agent.turns`` decides when it speaks, waits,
is cut, replayed or skipped; this module carries that out on the speaker player and writes every
outcome to the play log. What waits and what speaks (the ledger) is saved in the same
transaction as each play-log write, so that a restart or a power cut loses no accepted
announcement and plays none twice: one interrupted by it is replayed (by the same rules as any
interruption), one waiting keeps waiting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from agent import turns as rules
from agent.arbiter import Announcement, Decision, PlayNow, World, is_valid
from agent.playlog import PlaylogRecorder
from agent.programs import bulletin_fingerprint, bulletin_media
from agent.store import Settings, Store
from agent.turns import (
    EMERGENCY,
    TECHNICIAN,
    Call,
    Ended,
    Floor,
    Policy,
    Prepare,
    Skip,
    Start,
    Stop,
    Turns,
)
from player.base import PlayEnded, PlayItem, PlayStarted, SpeakerPlayer
from protocol import Bulletin, Level, format_time, parse_time

log = logging.getLogger(__name__)
# Arbitration offers an announcement only within its grace (600 s) of its due time: keys taken
# in are remembered well beyond that (a clock stepped back by NTP included), not for ever.
KNOWN_MEMORY = timedelta(hours=6)
KNOWN_SETTING = "played"  # keys taken in (the name of the days when only plays were kept)
LEDGER_SETTING = "speaker.turns"
STOP_TIMEOUT = timedelta(seconds=5)  # a stop the speaker never answers ends the call anyway
EventSink = Callable[[Literal["warning", "error"], str, str], None]


@dataclass
class _Speaking:
    token: str  # the playlog token; "" until a synchronized call sounds
    start_error_ms: int | None = None


class Loudspeakers:
    """Announcements on the loudspeakers, by the rules of ``agent.turns``."""

    def __init__(
        self,
        store: Store,
        speaker: SpeakerPlayer,
        recorder: PlaylogRecorder,
        media_path: Callable[[str], Path],
        policy: Policy,
        event: EventSink,
    ) -> None:
        self.store = store
        self.speaker = speaker
        self.recorder = recorder
        self.media_path = media_path
        self.policy = policy
        self.event = event
        self.known: dict[str, datetime] = _load_known(store)
        self.turns = Turns()
        self.speaking: _Speaking | None = None
        self.amplifier_mode: Literal["auto", "on", "off"] = "auto"
        self.relay_wanted: tuple[str, int] | None = None  # (url, level)
        self._relaying: str | None = None  # what the speaker was last told to relay
        self._floor = Floor()
        self._stop_asked: datetime | None = None
        self.withdrawn: Container[str] = frozenset()  # play.now ids a play.stop named

    # ------------------------------------------------------------------ boot

    def restore(self, now: datetime) -> dict[str, dict[str, Any]]:
        """Bring back what waited and what spoke when the agent stopped; return, by playlog
        token, the fields the recovered entries of interrupted plays get (``replayed``)."""
        raw = self.store.get_setting(LEDGER_SETTING)
        if not raw:
            return {}
        try:
            saved = json.loads(raw)
        except ValueError as exc:
            log.error("the saved loudspeaker queue is unreadable and dropped: %s", exc)
            return {}
        waiting = [c for c in map(_call_or_none, saved.get("waiting") or []) if c is not None]
        extra: dict[str, dict[str, Any]] = {}
        speaking = saved.get("speaking") or {}
        call = _call_or_none(speaking.get("call")) if speaking else None
        if call is not None:
            token = str(speaking.get("token") or "")
            if not token:
                waiting.append(call)  # it had not sounded yet: it waits again, as it was
            elif token in {p.id for p in self.store.open_plays()}:
                gone = frozenset({call.key} if self._withdrawn(call) else ())
                again = rules.replayable(call, now, Floor(gone=gone), self.policy)
                extra[token] = _fields(call, replayed=again is not None)
                if again is not None:
                    waiting.append(again)
        self.turns = Turns(waiting=tuple(waiting))
        return extra

    # ------------------------------------------------------------------ deciding

    def follow(self, decision: Decision, world: World, now: datetime) -> datetime | None:
        """Take in what became due, apply the rules, and carry out what they say."""
        if self._stop_asked is not None and now - self._stop_asked >= STOP_TIMEOUT:
            self._stop_unanswered(now)
        grace = timedelta(seconds=max(0, world.grace_s))
        arrivals = [
            self._call(a, grace)
            for a in (*decision.speaker_queue, *decision.held)
            if a.key not in self.known
        ]
        arrivals += self._synchronized(world, grace)
        floor = self._floor_of(decision, world, now)
        self._floor = floor
        result = rules.step(self.turns, now, arrivals, floor, self.policy)
        changed = bool(arrivals) or result.turns != self.turns
        self.turns = result.turns
        for call in arrivals:
            self.known[call.key] = now
        wrote = False
        # What is skipped first: each skip saves the ledger as it is after the whole step, so
        # a power cut before a later start leaves that start to be made again, never lost.
        actions = sorted(result.actions, key=lambda a: not isinstance(a, Skip))
        for action in actions:
            wrote = self._carry_out(action, now) or wrote
        if changed and not wrote:
            self._save(now)
        self._follow_relay(floor)
        waits = [t for t in (result.wake, self._stop_deadline()) if t is not None]
        return min(waits, default=None)

    def _call(self, a: Announcement, grace: timedelta, play_at: datetime | None = None) -> Call:
        level = EMERGENCY if a.origin == "emergency" else a.bulletin.level.rank
        start_by = a.due + grace if play_at is None else play_at + self.policy.tolerance
        if a.expires is not None:
            start_by = min(start_by, a.expires)
        series = None if a.origin == "play_now" else f"{a.origin}|{a.ref}|{a.bulletin.id}"
        return Call(
            key=a.key,
            bulletin=a.bulletin,
            origin=a.origin,
            ref=a.ref,
            level=level,
            rank=a.rank,
            due=a.due,
            start_by=start_by,
            expires=a.expires,
            play_at=play_at,
            order=a.order,
            seq=a.seq,
            series=series,
        )

    def _synchronized(self, world: World, grace: timedelta) -> list[Call]:
        """A synchronized ``play.now`` is taken in, every repeat of it, as soon as it arrives:
        it is made ready ahead, and one that arrives late is still accounted for."""
        calls = []
        for item in world.play_now:
            if not item.synchronized or item.bulletin.speaker is None:
                continue
            for seq in range(1, item.repeat + 1):
                announcement = _play_now_announcement(item, seq)
                if announcement.key not in self.known:
                    play_at = item.play_at if seq == 1 else None  # the repeats follow it
                    calls.append(self._call(announcement, grace, play_at))
        return calls

    def _floor_of(self, decision: Decision, world: World, now: datetime) -> Floor:
        calls = [*self.turns.waiting]
        if self.turns.speaking is not None:
            calls.append(self.turns.speaking)
        gone = {c.key for c in calls if not _in_force(c, world, now) or self._withdrawn(c)}
        live = {(e.ref, e.bulletin.id, bulletin_fingerprint(e.bulletin)) for e in world.entries}
        superseded = {
            c.key
            for c in calls
            if c.origin in ("rotation", "scheduled")
            and (c.ref, c.bulletin.id, bulletin_fingerprint(c.bulletin)) not in live
        }
        relay = self.relay_wanted[1] if self.relay_wanted is not None else None
        return Floor(
            emergency=decision.emergency,
            relay_level=relay,
            amplifier_off=self.amplifier_mode == "off",
            gone=frozenset(gone),
            superseded=frozenset(superseded),
        )

    def _withdrawn(self, call: Call) -> bool:
        return call.origin == "play_now" and call.ref in self.withdrawn

    def withdraw(self, ref: str, item: PlayNow | None) -> tuple[bool, int, list[tuple[str, str]]]:
        """``play.stop`` of ``ref`` (already in ``withdrawn``): whether it speaks (it is stopped
        at the next step), how many of its announcements wait (skipped ``cancelled`` then), and
        the ``skipped`` entries of those not taken in yet, for the caller's transaction."""
        speaking = self.turns.speaking is not None and self._withdrawn(self.turns.speaking)
        queued = sum(1 for c in self.turns.waiting if self._withdrawn(c))
        entries = []
        if item is not None and item.bulletin.speaker is not None:
            for seq in range(1, item.repeat + 1):
                key = f"{ref}#{seq}"
                if key not in self.known:
                    self.known[key] = self.recorder.clock()
                    entries.append(
                        self.recorder.skipped_entry(item.bulletin.id, "speaker", ref, "cancelled")
                    )
        return speaking, queued + len(entries), entries

    def _carry_out(self, action: rules.Action, now: datetime) -> bool:
        """Carry out one action; True when it saved the ledger (with its play-log write)."""
        if isinstance(action, Skip):
            self._skipped(action.call, action.reason, action.start_error_ms)
            return True
        if isinstance(action, Stop):
            log.info("speaker: stopping %s: %s", action.call.key, action.why)
            self._stop_asked = now
            self.speaker.stop()  # its end comes back through finished()
        elif isinstance(action, Prepare):
            self.speaker.prepare(self._item(action.call))
        elif isinstance(action, Start):
            call = action.call
            self.speaking = _Speaking("")
            # The player first: a store error must not leave turns that say "speaking" over
            # silent loudspeakers.
            self.speaker.play(self._item(call))
            if not call.synchronized:
                self._open(call, now)
                return True
        return False

    def _item(self, call: Call) -> PlayItem:
        media = {m.sha256: self.media_path(m.sha256) for m in bulletin_media(call.bulletin)}
        tolerance = round(self.policy.tolerance.total_seconds() * 1000)
        return PlayItem(
            call.bulletin,
            "speaker",
            call.key,
            call.origin,
            media,
            start_at=call.play_at,
            start_tolerance_ms=tolerance if call.play_at is not None else None,
        )

    def _open(self, call: Call, now: datetime) -> str:
        """Record that ``call`` started, with the ledger saying so, in one transaction."""
        speaking = self.speaking or _Speaking("")

        def ledger(token: str) -> Settings:
            speaking.token = token
            return self._ledger(now)

        token = self.recorder.started(call.bulletin.id, "speaker", call.ref, ledger)
        self.speaking = speaking
        return token

    def _skipped(self, call: Call, reason: str, start_error_ms: int | None) -> None:
        if reason == "superseded":
            # A new program's copy under the same key is taken in again, as new.
            self.known.pop(call.key, None)
        fields = _fields(call, start_error_ms=start_error_ms)
        now = self.recorder.clock()
        settings = self._ledger(now)
        self.recorder.skipped(call.bulletin.id, "speaker", call.ref, reason, fields, settings)
        where = f"{call.bulletin.id} ({call.ref})"
        log.warning("speaker: %s skipped: %s", where, reason)
        if reason == "late_for_play_at":
            self.event("warning", "late_for_play_at", f"{where}: {start_error_ms} ms late")
        elif reason == "queue_full":
            self.event("warning", "announcement_dropped", f"{where}: the queue is full")
        elif call.level == EMERGENCY and reason == "amplifier_off":
            self.event("error", "emergency_not_heard", f"{where}: the amplifier is forced off")
        if call.synchronized:
            self.recorder.flush()  # the operator waits for this one

    def _follow_relay(self, floor: Floor) -> None:
        url = None
        if self.relay_wanted is not None:
            wanted, level = self.relay_wanted
            url = wanted if not floor.emergency or level == EMERGENCY else None
        if url != self._relaying:
            self._relaying = url
            self.speaker.relay(url)

    def _stop_deadline(self) -> datetime | None:
        return None if self._stop_asked is None else self._stop_asked + STOP_TIMEOUT

    def _stop_unanswered(self, now: datetime) -> None:
        call = self.turns.speaking
        self._stop_asked = None
        if call is not None and self.turns.stopping:
            log.error("speaker: %s did not answer its stop; ending it here", call.key)
            self.finished(PlayEnded("speaker", call.key, "interrupted"), now)

    # ------------------------------------------------------------------ player reports

    def started(self, report: PlayStarted, now: datetime) -> None:
        """The speaker's first sound of a call (a synchronized one is recorded now)."""
        call = self.turns.speaking
        if call is None or call.key != report.key or self.speaking is None:
            return
        self.turns = rules.started(self.turns, report.key)
        self.speaking.start_error_ms = report.start_error_ms
        if report.start_error_ms is not None:
            log.info("speaker: %s started %+d ms from its play_at", call.key, report.start_error_ms)
        if not self.speaking.token:
            self._open(call, now)

    def finished(self, report: PlayEnded, now: datetime) -> None:
        """The speaker reports the end of a call."""
        self.turns, ended = rules.finish(
            self.turns,
            report.key,
            report.outcome,
            now,
            self._floor,
            self.policy,
            report.reason or ("playback_error" if report.outcome == "failed" else None),
            report.start_error_ms,
        )
        if ended is None:
            return
        self._stop_asked = None
        speaking, self.speaking = self.speaking, None
        if report.outcome == "failed":
            log.warning("speaker failed on %s: %s", report.key, report.detail)
        if not self._record(ended, speaking, now):
            self._save(now)

    def _record(self, ended: Ended, speaking: _Speaking | None, now: datetime) -> bool:
        """Write how ``ended`` ended, with the ledger; False when there is nothing to write."""
        call = ended.call
        if ended.outcome == "skipped":
            self._skipped(call, ended.reason or "late_for_play_at", ended.start_error_ms)
            return True
        if not ended.sounded and ended.outcome == "interrupted":
            return False  # a synchronized call stopped before its time: it waits again
        token = speaking.token if speaking is not None else ""
        if not token:  # never sounded (failed before its time): still a play, ended at once
            token = self.recorder.started(call.bulletin.id, "speaker", call.ref)
        error = speaking.start_error_ms if speaking is not None else None
        fields = _fields(call, start_error_ms=error, replayed=ended.replayed)
        if ended.outcome == "failed":
            fields["reason"] = ended.reason
        self.recorder.ended(token, ended.outcome, fields, self._ledger(now))
        if call.synchronized:
            self.recorder.flush()  # the operator waits for this one
        return True

    # ------------------------------------------------------------------ the technician

    def say(self, bulletin: Bulletin, now: datetime) -> str | None:
        """A technician's ``say``: started if the loudspeakers are free (None), else why not."""
        call = Call(
            key=f"say-{now.timestamp():.6f}",
            bulletin=bulletin,
            origin=TECHNICIAN,
            ref=TECHNICIAN,
            level=Level.NORMAL.rank,
            rank=0,
            due=now,
            start_by=now + timedelta(seconds=1),
        )
        why = rules.offer(self.turns, call, now, self._floor, self.policy)
        if why is not None:
            return why
        self.turns = replace(self.turns, speaking=call, sounded=False, stopping=False)
        self._carry_out(Start(call), now)
        return None

    # ------------------------------------------------------------------ the rest

    def now_playing(self) -> tuple[str | None, str | None, int | None]:
        """The bulletin speaking, what asked for it (``ref``), and its start error if any."""
        call = self.turns.speaking
        if call is None:
            return None, None, None
        error = self.speaking.start_error_ms if self.speaking is not None else None
        return call.bulletin.id, call.ref, error

    def waiting(self) -> tuple[Call, ...]:
        return self.turns.waiting

    def close(self, now: datetime) -> None:
        """The agent stops: what speaks is interrupted (and replayed after the next start)."""
        self.speaker.close()
        call = self.turns.speaking
        if call is not None:
            self.finished(PlayEnded("speaker", call.key, "interrupted"), now)

    def _ledger(self, now: datetime) -> Settings:
        """The settings that bring the loudspeakers back as they are now."""
        horizon = now - KNOWN_MEMORY
        self.known = {k: t for k, t in self.known.items() if t > horizon}
        speaking = None
        call = self.turns.speaking
        if call is not None and call.origin != TECHNICIAN:
            token = self.speaking.token if self.speaking is not None else ""
            speaking = {"call": rules.call_to_json(call), "token": token}
        ledger = {
            "waiting": [rules.call_to_json(c) for c in self.turns.waiting],
            "speaking": speaking,
        }
        return {
            KNOWN_SETTING: json.dumps({k: format_time(t) for k, t in self.known.items()}),
            LEDGER_SETTING: json.dumps(ledger, ensure_ascii=False),
        }

    def _save(self, now: datetime) -> None:
        self.store.record(settings=self._ledger(now), now=now.timestamp())


def _play_now_announcement(item: PlayNow, seq: int) -> Announcement:
    return Announcement(
        item.bulletin,
        "play_now",
        item.id,
        item.play_at,
        f"{item.id}#{seq}",
        item.rank,
        -1,
        seq,
        item.expires_at,
    )


def _fields(
    call: Call, start_error_ms: int | None = None, replayed: bool | None = None
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if start_error_ms is not None:
        fields["start_error_ms"] = start_error_ms
    if replayed is not None:
        fields["replayed"] = replayed
    if call.attempt > 1:
        fields["attempt"] = call.attempt
    return fields


def _call_or_none(data: Any) -> Call | None:
    """A saved call, or None (logged) when the record is damaged: one bad record must not take
    the rest of the queue with it."""
    try:
        return rules.call_from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("a saved announcement is unreadable and dropped: %s", exc)
        return None


def _in_force(call: Call, world: World, now: datetime) -> bool:
    """Whether an emergency call's emergency still holds (others always do): its command is
    in force, or its program bulletin is still live and valid."""
    if call.origin != "emergency":
        return True
    if any(e.id == call.ref for e in world.emergencies):
        return True
    return any(
        e.ref == call.ref and e.bulletin.id == call.bulletin.id and is_valid(e.bulletin, now)
        for e in world.entries
    )


def _load_known(store: Store) -> dict[str, datetime]:
    raw = store.get_setting(KNOWN_SETTING)
    try:
        data: Mapping[str, Any] = json.loads(raw or "{}")
        return {str(k): parse_time(v) for k, v in data.items()}
    except (ValueError, AttributeError) as exc:
        log.error("the record of announcements taken in is unreadable and dropped: %s", exc)
        return {}
