"""Programs on their way in: accepted (pending) while their files are fetched, then live.

Part of the conductor, on the director's thread. A program goes live (ack ``done``) in one
transaction with its version, only once every file is in the cache; a transient failure (a 3G
outage, a file not yet on the server) is retried with a backoff for up to six hours, and
until then, or if it fails for good (ack ``failed``), the previous program keeps playing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from agent.cache import ContentCache
from agent.cache_fill import ContentJob, ContentResult, Jobs
from agent.outbox import Outbox, Seen
from agent.programs import Merged, Program, Ranks, media_of, merge, parse
from agent.store import ProgramRow, Store
from protocol import Ack, Envelope, ProgramBody, Status

log = logging.getLogger(__name__)
TRANSIENT = {"download_failed", "cache_full"}  # worth another try; a bad hash or size is not
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(minutes=30)
GIVE_UP_AFTER = timedelta(hours=6)


class ProgramIntake:
    """The live and the pending program of each topic."""

    def __init__(
        self,
        store: Store,
        cache: ContentCache,
        jobs: Jobs,
        ranks: Ranks,
        outbox: Outbox,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.cache = cache
        self.jobs = jobs
        self.ranks = ranks
        self.ack = outbox.ack
        self.event = outbox.event
        self.clock = clock
        self.live: dict[str, Program] = {}
        self.pending: dict[str, Program] = {}
        self.retries: dict[str, tuple[int, datetime]] = {}  # topic -> (attempts, next try)

    def load(self) -> None:
        """The live and pending programs as they were saved; the pending ones are fetched."""
        for row in self.store.programs("live"):
            program = parse(row, self.ranks.of_program(row.topic))
            if program is not None:
                self.live[row.topic] = program
        for row in self.store.programs("pending"):
            program = parse(row, self.ranks.of_program(row.topic))
            if program is not None:
                self.pending[row.topic] = program
                self._fetch(program)

    def merged(self) -> Merged:
        return merge(self.live.values())

    def accept(self, env: Envelope, topic: str, seen: Seen) -> list[Ack]:
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
        self._fetch(program)
        return acks

    def on_content(self, result: ContentResult) -> bool:
        """A pending program's files arrived (or could not): True when it went live."""
        program = self.pending.get(result.topic)
        if program is None or program.row.doc_id != result.doc_id:
            return False  # superseded meanwhile
        if result.reason in TRANSIENT and self._retry_later(program, result):
            return False
        del self.pending[result.topic]
        self.retries.pop(result.topic, None)
        if result.reason is not None:
            self.ack(
                result.doc_id,
                Status.FAILED,
                result.reason,
                result.detail,
                drop_programs=((result.topic, "pending"),),
            )
            self.event("warning", "program_failed", f"{result.doc_id}: {result.detail}")
            return False
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
        log.info("program %s v%d live on %s", live.doc_id, live.version, result.topic)
        return True

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

    def versions(self) -> dict[str, int]:
        """The live program version of each topic."""
        return {topic: p.row.version for topic, p in self.live.items()}

    def media(self) -> set[str]:
        """The files of the live and pending programs (kept in the cache)."""
        return {
            m.sha256
            for p in (*self.live.values(), *self.pending.values())
            for m in media_of(p.body)
        }

    def _fetch(self, program: Program) -> None:
        self.jobs.submit(
            ContentJob(program.topic, program.row.doc_id, tuple(media_of(program.body)))
        )
