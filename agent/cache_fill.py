"""Fetches the content of pending programs on its own thread.

Downloads never run on the MQTT network thread (a long download would starve the keepalive on
a slow link) nor on the director's (which must keep deciding what plays). Results go back to the
director as ``("content", ContentResult)`` events.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
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


class CacheFiller:
    """A single worker thread over a priority queue of jobs.

    An emergency's or a ``play.now``'s files go before a program's (a typhoon warning must not
    wait behind a video download on 3G); a cancelled job stops before its next file.
    """

    def __init__(self, cache: ContentCache, post: Callable[[ContentResult], None]) -> None:
        self.cache = cache
        self.post = post
        self._jobs: queue.PriorityQueue[tuple[int, int, ContentJob | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fetcher", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: ContentJob) -> None:
        with self._lock:
            self._cancelled.discard(job.doc_id)
        urgent = job.topic.startswith("override:")
        self._jobs.put((0 if urgent else 1, next(self._seq), job))

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
        self._jobs.put((-1, next(self._seq), None))
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            _, _, job = self._jobs.get()
            if job is None:
                return
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
