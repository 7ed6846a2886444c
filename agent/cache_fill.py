"""Fetches the content of pending programs on its own thread.

Downloads never run on the MQTT network thread (a long download would starve the keepalive on
a slow link) nor on the director's (which must keep deciding what plays). Results go back to the
director as ``("content", ContentResult)`` events.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.cache import ContentCache
from agent.download import DownloadError
from protocol import Media

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContentJob:
    """All the files one pending program needs."""

    topic: str
    doc_id: str
    media: tuple[Media, ...]


@dataclass(frozen=True)
class ContentResult:
    """The outcome of a job: ``reason`` is None on success."""

    topic: str
    doc_id: str
    reason: str | None
    detail: str
    transferred: int


class Jobs(Protocol):
    """Where the conductor hands content jobs."""

    def submit(self, job: ContentJob) -> None: ...

    def cancel(self, doc_id: str) -> None: ...


Queued = tuple[int, float, int, ContentJob | None]  # (priority, not before, seq, job)


class CacheFiller:
    """A single worker thread over a priority queue of jobs: one file at a time per device.

    An emergency's or a ``play.now``'s files go before a program's (a typhoon warning must not
    wait behind a video download on 3G); a cancelled job stops before its next file. A program
    with files to fetch waits a random delay first, up to the cache's ``start_jitter_s``
    (``[cache] fetch_jitter_s``): a group's devices that get it at the same instant spread
    their downloads over that time. Urgent jobs never wait, nor wait behind a delayed one.
    """

    def __init__(
        self,
        cache: ContentCache,
        post: Callable[[ContentResult], None],
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.post = post
        self.rng = rng or random.Random()
        self.monotonic = monotonic
        self._jobs: queue.PriorityQueue[Queued] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fetcher", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: ContentJob) -> None:
        with self._lock:
            self._cancelled.discard(job.doc_id)
        urgent = job.topic.startswith("override:")
        not_before = 0.0
        jitter = self.cache.fetch_settings.start_jitter_s
        if not urgent and jitter > 0 and self._missing(job):
            not_before = self.monotonic() + self.rng.uniform(0, jitter)
        self._jobs.put((0 if urgent else 1, not_before, next(self._seq), job))
        self._arrived.set()

    def _missing(self, job: ContentJob) -> bool:
        return any(not self.cache.has(m.sha256, m.size) for m in job.media)

    def cancel(self, doc_id: str) -> None:
        """Drop a job (superseded, stopped) before its next file; its result is not posted."""
        with self._lock:
            self._cancelled.add(doc_id)

    def _wanted(self, job: ContentJob) -> bool:
        with self._lock:
            return job.doc_id not in self._cancelled and not self._stopping.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current file; a partial download resumes after the next start."""
        self._stopping.set()  # also cancels the file being fetched; its part is resumed later
        self._jobs.put((-1, 0.0, next(self._seq), None))
        self._arrived.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._arrived.clear()  # before get: a job submitted from now on ends the wait below
            priority, not_before, seq, job = self._jobs.get()
            if job is None:
                return
            wait = not_before - self.monotonic()
            if wait > 0:
                # Not due yet: back in the queue, and wait for its time or for a new job
                # (which may be urgent, or due sooner).
                self._jobs.put((priority, not_before, seq, job))
                self._arrived.wait(wait)
                continue
            if not self._wanted(job):
                continue
            try:
                result = self._fetch(job)
            except Exception as exc:  # the worker must outlive any one job
                log.exception("content job %s failed", job.doc_id)
                result = ContentResult(job.topic, job.doc_id, "download_failed", repr(exc), 0)
            if self._wanted(job):
                self.post(result)

    def _fetch(self, job: ContentJob) -> ContentResult:
        transferred = 0
        for media in job.media:
            if not self._wanted(job):
                return ContentResult(job.topic, job.doc_id, "download_failed", "cancelled", 0)
            try:
                fetched = self.cache.ensure(
                    media, keep={m.sha256 for m in job.media}, cancel=self._stopping
                )
            except DownloadError as exc:
                # The detail names the URL already, without its query (it may hold a token).
                log.warning("%s: %s (%s)", job.doc_id, exc.reason, exc.detail)
                return ContentResult(job.topic, job.doc_id, exc.reason, exc.detail, transferred)
            if fetched is not None:
                transferred += fetched.transferred_bytes
        return ContentResult(job.topic, job.doc_id, None, "", transferred)
