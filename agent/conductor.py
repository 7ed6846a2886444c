"""The conductor: programs, overrides and what plays, for the director.

Runs only on the director's thread. A program is accepted (ack ``accepted``), its content is
fetched by the ``CacheFiller``, and only then does it go live (ack ``done``), in one transaction
with its version; until then, and if it fails (ack ``failed``), the previous program keeps
playing. ``play.now`` and ``emergency.start`` with files wait for them the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from agent.cache import ContentCache
from agent.cache_fill import ContentJob, ContentResult, Jobs
from agent.playlog import FLUSH_AT_PENDING, PlaylogRecorder
from agent.programs import Program, Ranks, bulletin_media, media_of, merge, parse
from agent.stage import Stage
from agent.store import ProgramRow, Store
from player.base import PlayEnded
from protocol import Ack, Envelope, ProgramBody, Status, format_time, parse_time

log = logging.getLogger(__name__)
WAITING_SETTING = "overrides.waiting"
RETRY_RECONCILE = timedelta(seconds=5)
TRANSIENT = {"download_failed", "cache_full"}  # worth another try; a bad hash or size is not
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(minutes=30)
GIVE_UP_AFTER = timedelta(hours=6)
Seen = tuple[str, float]


class Conductor:
    """Programs, overrides and the stage."""

    def __init__(
        self,
        store: Store,
        cache: ContentCache,
        jobs: Jobs,
        stage: Stage,
        recorder: PlaylogRecorder,
        ranks: Ranks,
        ack: Callable[..., Ack],
        event: Callable[[Literal["warning", "error"], str, str], None],
        wake: Callable[[datetime | None], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.cache = cache
        self.jobs = jobs  # the CacheFiller's thread
        self.stage = stage
        self.recorder = recorder
        self.ranks = ranks
        self.ack = ack
        self.event = event
        self.wake = wake
        self.clock = clock
        self.live: dict[str, Program] = {}
        self.pending: dict[str, Program] = {}
        # Overrides waiting for their files: doc id -> (envelope, rank, received, seen).
        self.waiting: dict[str, tuple[Envelope, int, datetime]] = {}
        self.retries: dict[str, tuple[int, datetime]] = {}  # topic -> (attempts, next try)

    # ------------------------------------------------------------------ boot

    def boot(self) -> None:
        """Play from the cache: live programs and overrides as they were, before any network."""
        now = self.clock()
        for row in self.store.programs("live"):
            program = parse(row, self.ranks.of_program(row.topic))
            if program is not None:
                self.live[row.topic] = program
        self.stage.set_programs(merge(self.live.values()))
        self.stage.restore(now)
        self._restore_waiting()
        for row in self.store.programs("pending"):
            program = parse(row, self.ranks.of_program(row.topic))
            if program is not None:
                self.pending[row.topic] = program
                self._fetch(program)
        self.cache.set_keep(self.keep())
        log.info(
            "booted from cache: %d live programs, %d pending", len(self.live), len(self.pending)
        )
        self.reconcile()
        self.repair()

    def repair(self) -> None:
        """Fetch again the files of live programs that went missing from the cache (removed
        as damaged by ``cache verify``, or lost with the disk)."""
        for topic, program in self.live.items():
            missing = [m for m in media_of(program.body) if not self.cache.has(m.sha256, m.size)]
            if missing:
                log.warning(
                    "%s: %d files of the live program are missing; fetching them again",
                    program.row.doc_id,
                    len(missing),
                )
                self.jobs.submit(ContentJob(f"repair:{topic}", program.row.doc_id, tuple(missing)))

    # ------------------------------------------------------------------ documents

    def on_program(self, env: Envelope, topic: str, seen: Seen) -> list[Ack]:
        body: ProgramBody = env.body
        current = self.pending.get(topic)
        if current is not None and current.body.version >= body.version:
            return [
                self.ack(
                    env.id,
                    Status.REJECTED,
                    "stale",
                    f"version {body.version} <= pending {current.body.version}",
                    seen=seen,
                )
            ]
        now = self.clock()
        row = ProgramRow(
            topic, "pending", env.id, body.version, env.model_dump_json().encode(), now.timestamp()
        )
        acks = []
        if current is not None:
            self.jobs.cancel(current.row.doc_id)
            acks.append(
                self.ack(
                    current.row.doc_id,
                    Status.FAILED,
                    "superseded",
                    f"replaced by version {body.version} before it went live",
                    drop_programs=((topic, "pending"),),
                )
            )
        missing = len([m for m in media_of(body) if not self.cache.has(m.sha256, m.size)])
        acks.append(
            self.ack(
                env.id,
                Status.ACCEPTED,
                detail=f"version {body.version}: {missing} files to fetch",
                seen=seen,
                put_programs=(row,),
            )
        )
        program = Program(row, body, self.ranks.of_program(topic))
        self.pending[topic] = program
        self.retries.pop(topic, None)  # a new version starts with a fresh backoff
        self.cache.set_keep(self.keep())
        self._fetch(program)
        return acks

    def on_override(self, env: Envelope, topic: str, seen: Seen) -> list[Ack]:
        """``play.now`` or ``emergency.start``: in force at once, or once its files are here."""
        rank = self.ranks.of_command(topic)
        media = bulletin_media(env.body.bulletin)
        now = self.clock()
        missing = [m for m in media if not self.cache.has(m.sha256, m.size)]
        if not missing:
            return [self._in_force(env, rank, now, seen)]
        self.waiting[env.id] = (env, rank, now)
        # Saved with its ack: after a restart its files are fetched again and it comes in force.
        ack = self.ack(
            env.id,
            Status.ACCEPTED,
            detail=f"{len(missing)} files to fetch",
            seen=seen,
            settings=self._waiting_setting(),
        )
        self.cache.set_keep(self.keep())
        self.jobs.submit(ContentJob(f"override:{env.id}", env.id, tuple(media)))
        return [ack]

    def on_emergency_stop(self, env: Envelope, seen: Seen) -> list[Ack]:
        ref = env.body.ref
        ended = self.stage.stop_emergency(ref, self.clock())
        for doc_id, (waiting, _, _) in list(self.waiting.items()):
            if waiting.type == "emergency.start" and ref in (None, doc_id):
                # Stopped before its files arrived: it will never start.
                del self.waiting[doc_id]
                self.jobs.cancel(doc_id)
                self._give_up(waiting, "cancelled", f"stopped by {env.id}")
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
        self.reconcile()
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
        program = self.pending.get(result.topic)
        if program is None or program.row.doc_id != result.doc_id:
            return  # superseded meanwhile
        if result.reason in TRANSIENT and self._retry_later(program, result):
            return
        del self.pending[result.topic]
        self.retries.pop(result.topic, None)
        if result.reason is not None:
            self.cache.set_keep(self.keep())
            self.ack(
                result.doc_id,
                Status.FAILED,
                result.reason,
                result.detail,
                drop_programs=((result.topic, "pending"),),
            )
            self.event("warning", "program_failed", f"{result.doc_id}: {result.detail}")
            return
        now = self.clock()
        live = ProgramRow(
            result.topic,
            "live",
            program.row.doc_id,
            program.row.version,
            program.row.payload,
            now.timestamp(),
        )
        self.ack(
            result.doc_id,
            Status.DONE,
            detail=f"version {live.version} live ({result.transferred} bytes fetched)",
            drop_programs=((result.topic, "pending"), (result.topic, "live")),
            put_programs=(live,),
            program=(result.topic, live.version, live.doc_id),
        )
        self.live[result.topic] = Program(live, program.body, program.rank)
        self.cache.set_keep(self.keep())
        self.stage.set_programs(merge(self.live.values()))
        log.info("program %s v%d live on %s", live.doc_id, live.version, result.topic)
        self.reconcile()

    def _retry_later(self, program: Program, result: ContentResult) -> bool:
        """Keep a program pending after a transient failure (a 3G outage, a file not yet on the
        server); False once it has been trying for ``GIVE_UP_AFTER``."""
        now = self.clock()
        if now - program.since >= GIVE_UP_AFTER:
            return False
        attempt = self.retries.get(program.topic, (0, now))[0] + 1
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (attempt - 1))
        self.retries[program.topic] = (attempt, now + delay)
        if attempt == 1:
            self.event(
                "warning",
                "program_fetch_retrying",
                f"{program.row.doc_id}: {result.reason}: {result.detail}",
            )
        log.warning("%s: %s; retrying in %s", program.row.doc_id, result.detail, delay)
        return True

    def retry_due(self) -> None:
        """Hand the programs whose retry time has come back to the fetcher."""
        now = self.clock()
        for topic, (attempt, when) in list(self.retries.items()):
            program = self.pending.get(topic)
            if program is None:
                del self.retries[topic]
            elif when <= now:
                self.retries[topic] = (attempt, now + RETRY_MAX * 100)  # until its result
                self._fetch(program)

    def _override_content(self, result: ContentResult) -> None:
        waiting = self.waiting.pop(result.doc_id, None)
        if waiting is None:
            return
        env, rank, _ = waiting
        if result.reason is not None:
            self._give_up(env, result.reason, result.detail)
            return
        self._in_force(env, rank, self.clock(), None)  # from now: its files are here only now

    def _in_force(self, env: Envelope, rank: int, now: datetime, seen: Seen | None) -> Ack:
        """Put an override in force; it is saved in the same transaction as its ``done``."""
        self.stage.add_override(env, rank, now, now)
        ack = self.ack(
            env.id,
            Status.DONE,
            detail=_override_detail(env),
            seen=seen,
            settings={**self.stage.overrides_setting(), **self._waiting_setting()},
        )
        self.cache.set_keep(self.keep())
        self.reconcile()
        return ack

    def _give_up(self, env: Envelope, reason: str, detail: str) -> None:
        """An accepted override that will never be in force: its ``failed`` ack and the play-log
        entries of what it would have played (``skipped``, ``reason``), in one transaction."""
        self.ack(
            env.id,
            Status.FAILED,
            reason,
            detail,
            settings=self._waiting_setting(),
            entries=self.stage.never_played(env, reason),
        )

    def _waiting_setting(self) -> dict[str, str | None]:
        saved = [
            {"doc": env.model_dump_json(), "rank": rank, "received_at": format_time(received)}
            for env, rank, received in self.waiting.values()
        ]
        return {WAITING_SETTING: json.dumps(saved) if saved else None}

    def _restore_waiting(self) -> None:
        """The overrides that were fetching their files when the agent stopped: fetched again."""
        try:
            saved = json.loads(self.store.get_setting(WAITING_SETTING) or "[]")
        except ValueError as exc:
            log.error("the saved overrides waiting for files are unreadable: %s", exc)
            return
        for record in saved:
            try:
                env = Envelope.model_validate_json(record["doc"])
                rank, received = int(record["rank"]), parse_time(record["received_at"])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("a saved override waiting for files is unreadable: %s", exc)
                continue
            self.waiting[env.id] = (env, rank, received)
            media = tuple(bulletin_media(env.body.bulletin))
            self.jobs.submit(ContentJob(f"override:{env.id}", env.id, media))

    # ------------------------------------------------------------------ playing

    def on_player(self, report: PlayEnded) -> None:
        self.stage.finished(report)
        self.reconcile()

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

    def versions(self) -> dict[str, int]:
        """The live program version of each topic."""
        return {topic: p.row.version for topic, p in self.live.items()}

    def keep(self) -> set[str]:
        """Content that must not be evicted: live, pending and waiting documents' files."""
        keep = {
            m.sha256
            for p in (*self.live.values(), *self.pending.values())
            for m in media_of(p.body)
        }
        keep |= {
            m.sha256
            for env, _, _ in self.waiting.values()
            for m in bulletin_media(env.body.bulletin)
        }
        return keep | self.stage.override_media()

    def close(self) -> None:
        self.stage.close()
        self.recorder.flush()

    def _fetch(self, program: Program) -> None:
        self.jobs.submit(
            ContentJob(program.topic, program.row.doc_id, tuple(media_of(program.body)))
        )


def _override_detail(env: Envelope) -> str:
    if env.type == "emergency.start":
        return f"emergency in force until {env.expires_at}"
    when = f"at {env.body.play_at}" if env.body.play_at else "now"
    return f"playing {env.body.bulletin.id} {when}"
