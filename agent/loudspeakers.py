"""The loudspeakers' side of the stage: announcements taken in, their turns, their proof of play.

Runs on the director's thread. Each announcement that arbitration reports due (``decide``) is
taken in once, as a ``Call``, and from then on ``agent.turns`` decides when it speaks, waits,
is cut, replayed or skipped; this module carries that out on the speaker player and writes every
outcome to the play log. What waits (and what speaks) is saved in the store, so that a restart
or a power cut loses no accepted announcement: one interrupted by it is replayed (by the same
rules as any interruption), one waiting keeps waiting.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from agent import turns as rules
from agent.arbiter import Announcement, Decision, World, is_valid
from agent.playlog import PlaylogRecorder
from agent.programs import bulletin_media
from agent.protocol import Bulletin, Level, format_time, parse_time
from agent.store import Store
from agent.turns import (
    EMERGENCY,
    LEVELS,
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

log = logging.getLogger(__name__)
KNOWN_MEMORY = timedelta(days=2)
KNOWN_SETTING = "played"  # keys taken in (the name of the days when only plays were kept)
LEDGER_SETTING = "speaker.turns"
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

    # ------------------------------------------------------------------ boot

    def restore(self, now: datetime) -> dict[str, dict[str, Any]]:
        """Bring back what waited and what spoke when the agent stopped; return, by playlog
        token, the fields the recovered entries of interrupted plays get (``replayed``)."""
        raw = self.store.get_setting(LEDGER_SETTING)
        if not raw:
            return {}
        try:
            saved = json.loads(raw)
            waiting = [rules.call_from_json(c) for c in saved.get("waiting", [])]
            speaking = saved.get("speaking")
            call = rules.call_from_json(speaking["call"]) if speaking else None
        except (ValueError, KeyError, TypeError) as exc:
            log.error("the saved loudspeaker queue is unreadable and dropped: %s", exc)
            return {}
        extra: dict[str, dict[str, Any]] = {}
        if call is not None:
            token = str(speaking.get("token") or "")
            again = rules.replayable(call, now, Floor(), self.policy) if token else call
            if token:
                extra[token] = _fields(call, replayed=again is not None)
            if again is not None:
                waiting.append(again)
        self.turns = Turns(waiting=tuple(waiting))
        return extra

    # ------------------------------------------------------------------ deciding

    def follow(self, decision: Decision, world: World, now: datetime) -> datetime | None:
        """Take in what became due, apply the rules, and carry out what they say."""
        grace = timedelta(seconds=max(0, world.grace_s))
        arrivals = [
            self._call(a, grace)
            for a in (*decision.speaker_queue, *decision.held)
            if a.key not in self.known
        ]
        arrivals += self._synchronized(world)
        floor = self._floor_of(decision, world, now)
        self._floor = floor
        result = rules.step(self.turns, now, arrivals, floor, self.policy)
        changed = bool(arrivals) or result.turns != self.turns
        self.turns = result.turns
        for call in arrivals:
            self.known[call.key] = now
        for action in result.actions:
            self._carry_out(action, now)
        if changed:
            self._save(now)
        self._follow_relay(floor)
        return result.wake

    def _call(self, a: Announcement, grace: timedelta) -> Call:
        level = EMERGENCY if a.origin == "emergency" else LEVELS[a.bulletin.level]
        start_by = a.due + grace
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
            order=a.order,
            seq=a.seq,
            series=series,
        )

    def _synchronized(self, world: World) -> list[Call]:
        """A synchronized ``play.now`` is taken in when it arrives (it is made ready ahead)."""
        calls = []
        for item in world.play_now:
            key = f"{item.id}#1"
            if not item.synchronized or item.bulletin.speaker is None or key in self.known:
                continue
            call = Call(
                key=key,
                bulletin=item.bulletin,
                origin="play_now",
                ref=item.id,
                level=LEVELS[item.bulletin.level],
                rank=item.rank,
                due=item.play_at,
                start_by=item.play_at + self.policy.tolerance,
                expires=item.expires_at,
                play_at=item.play_at,
                order=-1,
                seq=1,
            )
            calls.append(call)
        return calls

    def _floor_of(self, decision: Decision, world: World, now: datetime) -> Floor:
        calls = [*self.turns.waiting]
        if self.turns.speaking is not None:
            calls.append(self.turns.speaking)
        gone = {c.key for c in calls if not _in_force(c, world, now)}
        live = {(e.ref, e.bulletin.id, _fingerprint(e.bulletin)) for e in world.entries}
        superseded = {
            c.key
            for c in self.turns.waiting
            if c.origin in ("rotation", "scheduled")
            and (c.ref, c.bulletin.id, _fingerprint(c.bulletin)) not in live
        }
        relay = self.relay_wanted[1] if self.relay_wanted is not None else None
        return Floor(
            emergency=decision.emergency,
            relay_level=relay,
            amplifier_off=self.amplifier_mode == "off",
            gone=frozenset(gone),
            superseded=frozenset(superseded),
        )

    def _carry_out(self, action: rules.Action, now: datetime) -> None:
        if isinstance(action, Skip):
            self._skipped(action.call, action.reason, action.start_error_ms)
        elif isinstance(action, Stop):
            log.info("speaker: stopping %s: %s", action.call.key, action.why)
            self.speaker.stop()  # its end comes back through finished()
        elif isinstance(action, Prepare):
            self.speaker.prepare(self._item(action.call))
        elif isinstance(action, Start):
            call = action.call
            self.speaking = _Speaking("" if call.synchronized else self._open(call))
            self.speaker.play(self._item(call))

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

    def _open(self, call: Call) -> str:
        return self.recorder.started(call.bulletin.id, "speaker", call.ref)

    def _skipped(self, call: Call, reason: str, start_error_ms: int | None) -> None:
        fields = _fields(call, start_error_ms=start_error_ms)
        self.recorder.skipped(call.bulletin.id, "speaker", call.ref, reason, fields)
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

    # ------------------------------------------------------------------ player reports

    def started(self, report: PlayStarted, now: datetime) -> None:
        """The speaker's first sound of a call (a synchronized one is recorded now)."""
        call = self.turns.speaking
        if call is None or call.key != report.key or self.speaking is None:
            return
        self.turns = rules.started(self.turns, report.key)
        self.speaking.start_error_ms = report.start_error_ms
        if not self.speaking.token:
            self.speaking.token = self._open(call)
        if report.start_error_ms is not None:
            log.info("speaker: %s started %+d ms from its play_at", call.key, report.start_error_ms)
        self._save(now)

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
        speaking, self.speaking = self.speaking, None
        self._record(ended, speaking)
        if report.outcome == "failed":
            log.warning("speaker failed on %s: %s", report.key, report.detail)
        self._save(now)

    def _record(self, ended: Ended, speaking: _Speaking | None) -> None:
        call = ended.call
        if ended.outcome == "skipped":
            self._skipped(call, ended.reason or "late_for_play_at", ended.start_error_ms)
            return
        if not ended.sounded and ended.outcome == "interrupted":
            return  # a synchronized call stopped before its time: it waits again, no play yet
        token = speaking.token if speaking is not None else ""
        if not token:  # never sounded (failed before its time): still a play, ended at once
            token = self._open(call)
        error = speaking.start_error_ms if speaking is not None else None
        fields = _fields(call, start_error_ms=error, replayed=ended.replayed)
        if ended.outcome == "failed":
            fields["reason"] = ended.reason
        self.recorder.ended(token, ended.outcome, fields)
        if call.synchronized:
            self.recorder.flush()  # the operator waits for this one

    # ------------------------------------------------------------------ the technician

    def say(self, bulletin: Bulletin, now: datetime) -> str | None:
        """A technician's ``say``: started if the loudspeakers are free (None), else why not."""
        call = Call(
            key=f"say-{now.timestamp():.6f}",
            bulletin=bulletin,
            origin=TECHNICIAN,
            ref=TECHNICIAN,
            level=LEVELS[Level.NORMAL],
            rank=0,
            due=now,
            start_by=now + timedelta(seconds=1),
        )
        why = rules.offer(self.turns, call, now, self._floor, self.policy)
        if why is not None:
            return why
        self.turns = replace(self.turns, speaking=call, sounded=False, stopping=False)
        self._carry_out(Start(call), now)
        self._save(now)
        return None

    # ------------------------------------------------------------------ the rest

    def now_playing(self) -> str | None:
        call = self.turns.speaking
        return call.bulletin.id if call is not None else None

    def waiting(self) -> tuple[Call, ...]:
        return self.turns.waiting

    def close(self, now: datetime) -> None:
        """The agent stops: what speaks is interrupted (and replayed after the next start)."""
        self.speaker.close()
        call = self.turns.speaking
        if call is not None:
            self.finished(PlayEnded("speaker", call.key, "interrupted"), now)

    def _save(self, now: datetime) -> None:
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
        self.store.record(
            settings={
                KNOWN_SETTING: json.dumps({k: format_time(t) for k, t in self.known.items()}),
                LEDGER_SETTING: json.dumps(ledger, ensure_ascii=False),
            },
            now=now.timestamp(),
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


def _fingerprint(bulletin: Bulletin) -> str:
    return hashlib.sha256(bulletin.model_dump_json().encode()).hexdigest()[:16]


def _load_known(store: Store) -> dict[str, datetime]:
    raw = store.get_setting(KNOWN_SETTING)
    try:
        data: Mapping[str, Any] = json.loads(raw or "{}")
        return {str(k): parse_time(v) for k, v in data.items()}
    except (ValueError, AttributeError) as exc:
        log.error("the record of announcements taken in is unreadable and dropped: %s", exc)
        return {}
