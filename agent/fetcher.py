"""Fetches the content of pending programs on its own thread.

Downloads never run on the MQTT network thread (a long download would starve the keepalive on
a slow link) nor on the director's (which must keep deciding what plays). Results go back to the
director as ``("content", ContentResult)`` events.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.cache import ContentCache
from agent.download import DownloadError, safe_url
from agent.protocol import Media

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


class Fetcher:
    """A single worker thread over a job queue."""

    def __init__(self, cache: ContentCache, post: Callable[[str, Any], None]) -> None:
        self.cache = cache
        self.post = post
        self._jobs: queue.SimpleQueue[ContentJob | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fetcher", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: ContentJob) -> None:
        self._jobs.put(job)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current file; a partial download resumes after the next start."""
        self._stopping.set()  # also cancels the file being fetched; its part is resumed later
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            job = self._jobs.get()
            if job is None:
                return
            try:
                result = self._fetch(job)
            except Exception as exc:  # the worker must outlive any one job
                log.exception("content job %s failed", job.doc_id)
                result = ContentResult(job.topic, job.doc_id, "download_failed", repr(exc), 0)
            if not self._stopping.is_set():
                self.post("content", result)

    def _fetch(self, job: ContentJob) -> ContentResult:
        transferred = 0
        for media in job.media:
            if self._stopping.is_set():
                return ContentResult(job.topic, job.doc_id, "download_failed", "stopping", 0)
            try:
                fetched = self.cache.ensure(
                    media, keep={m.sha256 for m in job.media}, cancel=self._stopping
                )
            except DownloadError as exc:
                url = safe_url(media.url)  # a query may hold an access token
                log.warning("%s: %s: %s (%s)", job.doc_id, url, exc.reason, exc.detail)
                return ContentResult(
                    job.topic, job.doc_id, exc.reason, f"{url}: {exc.detail}", transferred
                )
            if fetched is not None:
                transferred += fetched.transferred_bytes
        return ContentResult(job.topic, job.doc_id, None, "", transferred)
