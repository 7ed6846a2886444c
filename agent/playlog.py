"""Proof of play: every play of a bulletin becomes a playlog entry, durably, before it is sent.

The path of an entry, each step one SQLite transaction:

1. ``started`` writes the play to ``playlog_open``;
2. ``ended`` moves it to ``playlog_pending`` as a finished entry (``completed``, ``interrupted``
   or ``failed``); ``skipped`` writes a pending entry at once for what never played;
3. ``flush`` moves up to ``max_entries`` pending entries into one outbox message on
   ``dev/{device}/playlog``; the courier sends it and drops it on the broker's PUBACK.

So an entry is never lost (it is always in exactly one table, or acknowledged) and never
duplicated on the device; a redelivery after a lost PUBACK is made harmless by its id.

Plays still open when the agent died (SIGKILL, power cut) are recorded as ``interrupted`` by
``recover`` at the agent's next start. Their ``ended_at`` is the last time the agent was known to
be running while they played: the last ``tick`` (or ``heartbeat``), ``started`` or ``ended`` of
any play. Not the boot time: that would count the whole outage as play time (killed at 21:00,
booted at 06:00: a nine-hour play), and on a board without a real-time clock the time at boot
may be wrong until NTP has answered. So the recovered duration is a lower bound, short of the
truth by at most one tick interval.

The director's part: ``recover()`` once at boot; ``started``/``ended`` around every play;
``tick()`` every few seconds (heartbeat and flush); ``flush()`` at once when ``pending_count()``
reaches ``FLUSH_AT_PENDING``, and at shutdown.

A full disk stops nothing: a write refused for want of space is kept in memory, in order, and
done at a later ``tick`` (a power cut meanwhile loses those entries: nothing can be durable on
a full disk). Once writes succeed again, ``tick`` queues one ``disk_full`` event that says when
and how often they failed, whichever part of the agent met the full disk.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError

from agent.store import DiskFull, OpenPlay, OutboxMessage, Settings, Store, is_disk_full
from protocol import Channel, Event, Outcome, Playlog, PlaylogEntry, Topics, format_time

log = logging.getLogger(__name__)

CHANNELS: tuple[str, ...] = get_args(Channel)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
# The director flushes every few seconds, and at once when this many entries are pending.
FLUSH_AT_PENDING = 50
# Entries per playlog message: about 200 bytes each, far below any payload limit.
MAX_ENTRIES = 100


class Extensions(BaseModel):
    """The optional fields ``ended`` and ``skipped`` accept in ``extra`` (protocol extensions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_error_ms: StrictInt | None = None
    reason: str | None = None
    replayed: StrictBool | None = None
    attempt: StrictInt | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def entry_id(device_id: str, at: datetime) -> str:
    """A unique, time-ordered entry id: the device, milliseconds since 1970 and 40 random bits."""
    return f"{device_id}-{int(at.timestamp() * 1000):011x}{secrets.token_hex(5)}"


class PlaylogRecorder:
    """Records plays in the store and batches them into the outbox.

    Safe from any thread: its state is in the store, but for the set of plays it started itself
    (so that ``recover`` never closes one of those).
    """

    def __init__(
        self,
        store: Store,
        device_id: str,
        topics: Topics,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.device_id = device_id
        self.topic = topics.dev(device_id, "playlog")
        self._clock = clock
        self._mine: set[str] = set()  # plays started by this recorder and not ended yet
        self._plays: dict[str, OpenPlay] = {}  # the same plays, to end one not yet written
        self._backlog: list[Callable[[], object]] = []  # writes refused for want of space
        self._full_report: DiskFull | None = None
        self.event_topic = topics.dev(device_id, "event")

    def _write(self, write: Callable[[], object]) -> bool:
        """Do ``write`` now (after the backlog), or keep it for later when the disk is full;
        True when it was done."""
        self._drain()
        if not self._backlog:
            try:
                write()
                return True
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                log.warning("playlog: the disk is full; keeping plays in memory until it is not")
        self._backlog.append(write)
        return False

    def _drain(self) -> None:
        while self._backlog:
            try:
                self._backlog[0]()
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                return
            self._backlog.pop(0)

    def backlog(self) -> int:
        """Writes waiting for space on the disk."""
        return len(self._backlog)

    def clock(self) -> datetime:
        """The time plays are recorded at."""
        return self._clock()

    def _now(self) -> str:
        return format_time(self._clock())

    def recover(self, extra: Mapping[str, Mapping[str, Any]] | None = None) -> int:
        """Record as ``interrupted`` the plays an earlier agent process left open; return how
        many. Call once at boot, before the network; plays this recorder started are kept.
        ``extra`` adds optional fields to the entries of some plays, by token (``replayed``)."""
        fields = {token: _extensions(values) for token, values in (extra or {}).items()}

        def interrupted(play: OpenPlay) -> str:
            ended_at = max(play.alive_at, play.started_at)
            return _entry_json(play, "interrupted", ended_at, fields.get(play.id))

        left = [p.id for p in self.store.open_plays() if p.id not in self._mine]
        if not left:
            return 0
        try:
            entries = self.store.end_plays(interrupted, ids=left)
        except ValueError as exc:  # pydantic's ValidationError too: a damaged row
            log.error("playlog: cannot recover the plays left open: %s", exc)
            return 0
        if entries:
            log.warning(
                "playlog: %d play(s) open when the agent stopped recorded as interrupted",
                len(entries),
            )
        return len(entries)

    def started(
        self,
        bulletin_id: str,
        channel: Channel,
        ref: str | None = None,
        settings: Callable[[str], Settings] | None = None,
    ) -> str:
        """A play began; return the token to pass to ``ended``. Durable when it returns, with
        ``settings(token)`` (the caller's own state, saved in the same transaction)."""
        if channel not in CHANNELS:
            raise ValueError(f"channel {channel!r}: one of {', '.join(CHANNELS)}")
        if not bulletin_id:
            raise ValueError("bulletin_id: must not be empty")
        now = self._clock()
        at = format_time(now)
        play = OpenPlay(entry_id(self.device_id, now), bulletin_id, channel, ref, at, at)
        try:
            _entry_json(play, "completed", at)  # what ``ended`` will write must be valid
        except ValidationError as exc:
            raise ValueError(f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
        values = settings(play.id) if settings is not None else None
        self._write(lambda: self.store.open_play(play, values))
        self._mine.add(play.id)
        self._plays[play.id] = play
        return play.id

    def ended(
        self,
        token: str,
        outcome: Outcome,
        extra: Mapping[str, Any] | None = None,
        settings: Settings | None = None,
    ) -> PlaylogEntry | None:
        """The play of ``token`` ended: its entry is pending (durably) when this returns, and
        ``settings`` are saved in the same transaction.

        ``extra`` holds optional entry fields (``start_error_ms``); an unknown key or a wrong
        type raises ValueError. Returns the entry, or None when ``token`` is not open (ended
        already, or recovered at boot), which is logged and otherwise ignored.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
        extensions = _extensions(extra or {})
        now = self._now()

        def finish(play: OpenPlay) -> str:
            # A clock stepped back (NTP) must not make a play end before it started.
            return _entry_json(play, outcome, max(now, play.started_at), extensions)

        written: list[str] = []

        def end() -> None:
            written.extend(
                self.store.end_plays(finish, ids=[token], alive_at=now, settings=settings)
            )

        play = self._plays.pop(token, None)
        if not self._write(end) and play is not None:
            written.append(finish(play))  # what will be written once there is space
        self._mine.discard(token)
        if not written:
            log.warning("playlog: play %s ended but is not open (ended already?)", token)
            return None
        return PlaylogEntry.model_validate_json(written[0])

    def skipped(
        self,
        bulletin_id: str,
        channel: Channel,
        ref: str | None,
        reason: str,
        extra: Mapping[str, Any] | None = None,
        settings: Settings | None = None,
    ) -> PlaylogEntry:
        """Record at once, durably, an announcement or showing that was accepted but will never
        play, with the ``reason`` (``expired_in_queue``, ``queue_full``, ``late_for_play_at``…),
        and ``settings`` in the same transaction.
        """
        entry_id, text = self.skipped_entry(bulletin_id, channel, ref, reason, extra)
        self._write(lambda: self.store.add_playlog_entry(entry_id, text, settings))
        return PlaylogEntry.model_validate_json(text)

    def skipped_entry(
        self,
        bulletin_id: str,
        channel: Channel,
        ref: str | None,
        reason: str,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, str]:
        """A ``skipped`` entry ``(id, json)``, not yet written: for ``Store.record(entries=…)``
        in the caller's own transaction."""
        now = self._clock()
        at = format_time(now)
        play = OpenPlay(entry_id(self.device_id, now), bulletin_id, channel, ref, at, at)
        extensions = _extensions({**(extra or {}), "reason": reason})
        try:
            return play.id, _entry_json(play, "skipped", at, extensions)
        except ValidationError as exc:
            raise ValueError(f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None

    def heartbeat(self) -> None:
        """Note that the open plays are still playing (``tick`` does it)."""
        try:
            self.store.touch_open_plays(self._now())
        except Exception as exc:
            if not is_disk_full(exc):
                raise

    def tick(self) -> None:
        """The periodic duty (every few seconds): the writes kept while the disk was full,
        ``heartbeat``, ``flush`` until nothing is pending, and the ``disk_full`` event."""
        self._drain()
        self.heartbeat()
        while self.flush() == MAX_ENTRIES:
            pass
        self._report_disk_full()

    def _report_disk_full(self) -> None:
        self._full_report = self._full_report or self.store.take_disk_full()
        over = self._full_report
        if over is None:
            return
        since = format_time(datetime.fromtimestamp(over.since, UTC))
        detail = (
            f"writes failed for want of space from {since} for {over.until - over.since:.0f} s "
            f"({over.failures} times); nothing was lost, the writes were done later"
        )
        event = Event(at=self._now(), severity="error", code="disk_full", detail=detail)
        try:
            self.store.enqueue("event", self.event_topic, event.payload(), 1, self._now_s())
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            return  # full again: reported when that is over
        self._full_report = None

    def _now_s(self) -> float:
        return self._clock().timestamp()

    def pending_count(self) -> int:
        """Finished entries not yet moved to the outbox."""
        return self.store.playlog_pending_count()

    def open_plays(self) -> list[OpenPlay]:
        """Plays started and not yet ended."""
        return self.store.open_plays()

    def flush(self, max_entries: int = MAX_ENTRIES) -> int:
        """Move up to ``max_entries`` pending entries into one outbox message; return how many.

        Call until it returns less than ``max_entries`` to empty the pending table.
        """
        if max_entries < 1:
            raise ValueError("max_entries: must be at least 1")
        try:
            return self.store.flush_playlog(max_entries, self._message, now=self._now_s())
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            return 0  # the entries stay pending

    def _message(self, raw: list[str]) -> OutboxMessage | None:
        entries: list[PlaylogEntry] = []
        for text in raw:
            try:
                entries.append(PlaylogEntry.model_validate_json(text))
            except ValidationError as exc:
                # Written by this module, so never expected; dropped rather than blocking the
                # playlog forever.
                log.error("playlog: dropping an unreadable pending entry: %s", exc)
        if not entries:
            return None
        payload = Playlog(device=self.device_id, entries=entries).payload()
        return ("playlog", self.topic, payload, 1)


def _extensions(extra: Mapping[str, Any]) -> Extensions:
    try:
        return Extensions.model_validate(dict(extra))
    except ValidationError as exc:
        raise ValueError(f"extra: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


def _entry_json(
    play: OpenPlay, outcome: str, ended_at: str, extensions: Extensions | None = None
) -> str:
    entry = PlaylogEntry.model_validate(
        {
            "id": play.id,
            "bulletin": play.bulletin,
            "channel": play.channel,
            "started_at": play.started_at,
            "ended_at": ended_at,
            "outcome": outcome,
            "ref": play.ref,
            **(extensions.model_dump() if extensions else {}),
        }
    )
    return entry.model_dump_json(exclude_none=True)
