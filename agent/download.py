"""Fetches content over HTTP(S) into a partial file: streamed, resumable, verified.

The only module that imports requests (and urllib3, its transport). A fetch writes into a
``.part`` file and returns only when that file holds exactly the declared ``size`` bytes hashing
to the declared ``sha256``, flushed to disk; making it visible (the rename) is the content
cache's job.

- Only ``http`` and ``https``, also for redirects (followed here, hop by hop, so that each
  target's scheme is checked).
- Never more than the declared size: a ``Content-Length`` that disagrees is refused before the
  body is read, and a body that runs past the size stops the transfer at the first extra chunk.
- Resumed with ``Range: bytes=N-``: after a cut connection (retried with a short back-off), and
  from a ``.part`` left by an earlier process (its bytes are hashed again first). A server that
  ignores the range (``200``) is read from the start; one that refuses it (``416``) gets the
  whole file again.
- A hash mismatch deletes the part, so bad bytes are never resumed; if the bytes came from more
  than one response (a resume), the file is fetched once more from scratch before giving up.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

log = logging.getLogger(__name__)

# Reason codes of DownloadError; they travel in the ``reason`` of a ``failed`` ack.
DOWNLOAD_FAILED = "download_failed"  # network or server trouble that retries did not cure
HASH_MISMATCH = "hash_mismatch"  # the bytes do not hash to the signed sha256
SIZE_MISMATCH = "size_mismatch"  # the server's file is longer or shorter than the signed size
BAD_URL = "bad_url"  # not an http(s) URL, or a redirect to one that is not
CACHE_FULL = "cache_full"  # the file does not fit in the quota or on the disk (see agent.cache)
REASONS = frozenset({DOWNLOAD_FAILED, HASH_MISMATCH, SIZE_MISMATCH, BAD_URL, CACHE_FULL})

CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
MAX_BACKOFF_S = 30.0
# A server's ``Retry-After`` (on 429 and 503) is obeyed up to this long.
MAX_RETRY_AFTER_S = 600.0
_HASH_BLOCK = 1 << 20
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
# Answers worth another try: the server (or a proxy before it) is busy or briefly broken.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE_RE = re.compile(r"^bytes\s+\*/(\d+)$")


class DownloadError(Exception):
    """A fetch that failed for good; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FetchResult:
    """What a successful fetch cost: body bytes received over the network (all attempts,
    discarded ones included), whether bytes from before were kept, and the HTTP attempts."""

    transferred_bytes: int
    resumed: bool
    attempts_used: int


@dataclass(frozen=True)
class FetchSettings:
    """Timeouts (per connect and per read, not for the whole file) and the retry budget."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    attempts: int = 5
    backoff_s: float = 1.0
    chunk_bytes: int = CHUNK_BYTES
    # Not used by a fetch: the CacheFiller's random delay before a program's downloads begin.
    start_jitter_s: float = 0.0


class _Retry(Exception):
    """This attempt failed in a way that another attempt may cure; ``after``: the server's
    ``Retry-After``, in seconds."""

    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP date), within
    0..MAX_RETRY_AFTER_S; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


class _Restart(Exception):
    """The part was discarded; start again from zero at once."""


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (which may hold tokens), for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_url(url: str) -> None:
    """Raise DownloadError ``bad_url`` unless ``url`` is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise DownloadError(BAD_URL, f"unparsable URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        scheme = parts.scheme or "no scheme"
        raise DownloadError(BAD_URL, f"only http and https are fetched, not {scheme}")
    if not parts.hostname:
        raise DownloadError(BAD_URL, "the URL has no host")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise DownloadError(BAD_URL, "the URL contains white space or control characters")


class Downloader:
    """``fetch`` with fixed settings over one reused HTTP session (kept-alive connections save
    a TLS handshake per file on a 3G link). Not thread-safe: use it from one thread."""

    def __init__(
        self,
        settings: FetchSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or FetchSettings()
        self.sleep = sleep
        self._session: requests.Session | None = None

    def fetch(
        self,
        url: str,
        dest_part: Path,
        size: int,
        sha256: str,
        *,
        cancel: threading.Event | None = None,
    ) -> FetchResult:
        if self._session is None:
            self._session = requests.Session()
        s = self.settings
        return fetch(
            url,
            dest_part,
            size,
            sha256,
            session=self._session,
            connect_timeout_s=s.connect_timeout_s,
            read_timeout_s=s.read_timeout_s,
            attempts=s.attempts,
            backoff_s=s.backoff_s,
            chunk_bytes=s.chunk_bytes,
            sleep=self.sleep,
            cancel=cancel,
        )

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def fetch(
    url: str,
    dest_part: Path,
    size: int,
    sha256: str,
    *,
    session: requests.Session | None = None,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 30.0,
    attempts: int = 5,
    backoff_s: float = 1.0,
    chunk_bytes: int = CHUNK_BYTES,
    sleep: Callable[[float], None] = time.sleep,
    cancel: threading.Event | None = None,
) -> FetchResult:
    """Download ``url`` into ``dest_part`` until it holds ``size`` bytes hashing to ``sha256``.

    An existing ``dest_part`` is resumed. On success the part is complete, verified and
    fsynced. Raises DownloadError; after ``download_failed`` (or ``cancel`` being set) the part
    is kept for a later resume, after any other reason it is deleted.
    """
    check_url(url)
    if not _SHA256_RE.match(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    if size < 0 or attempts < 1 or chunk_bytes < 1:
        raise ValueError("size must be >= 0, attempts and chunk_bytes >= 1")
    own = session is None
    transfer = _Transfer(
        url=url,
        part=dest_part,
        size=size,
        sha256=sha256,
        session=session or requests.Session(),
        timeout=(connect_timeout_s, read_timeout_s),
        chunk_bytes=chunk_bytes,
        cancel=cancel,
    )
    try:
        return transfer.run(attempts, backoff_s, sleep)
    finally:
        transfer.close()
        if own:
            transfer.session.close()


class _Transfer:
    """The state of one fetch: the part file, its running hash, and the bytes received."""

    def __init__(
        self,
        *,
        url: str,
        part: Path,
        size: int,
        sha256: str,
        session: requests.Session,
        timeout: tuple[float, float],
        chunk_bytes: int,
        cancel: threading.Event | None,
    ) -> None:
        self.url = url
        self.shown = safe_url(url)  # for messages
        self.part = part
        self.size = size
        self.sha256 = sha256
        self.session = session
        self.timeout = timeout
        self.chunk_bytes = chunk_bytes
        self.cancel = cancel
        self.offset = 0  # bytes in the part, all of them hashed
        self.hasher = hashlib.sha256()
        self.transferred = 0
        self.responses = 0  # responses whose bytes are in the part
        self.kept = False  # the part holds bytes written before this fetch began
        self._fh: IO[bytes] | None = None

    # ------------------------------------------------------------------ the loop

    def run(self, attempts: int, backoff_s: float, sleep: Callable[[float], None]) -> FetchResult:
        self._open()
        if self.kept:
            log.info("resuming %s from byte %d", self.shown, self.offset)
        used = 0
        fresh_retry = False
        while True:
            if self.offset == self.size:
                if self.hasher.hexdigest() == self.sha256:
                    self._sync()
                    return FetchResult(self.transferred, self.resumed, used)
                pieced = self.resumed
                self._discard()
                if not pieced or fresh_retry or used >= attempts:
                    self._delete()
                    raise DownloadError(
                        HASH_MISMATCH,
                        f"{self.shown}: the content does not hash to {self.sha256[:12]}…",
                    )
                # The kept bytes and the server's may be of different versions of the file:
                # one fresh, whole download decides.
                log.warning("hash mismatch after a resume of %s: fetching again", self.shown)
                fresh_retry = True
            if self.cancel is not None and self.cancel.is_set():
                raise DownloadError(DOWNLOAD_FAILED, "cancelled")
            used += 1
            try:
                self._attempt()
            except _Restart:
                continue
            except _Retry as exc:
                if used >= attempts:
                    raise DownloadError(
                        DOWNLOAD_FAILED, f"{self.shown}: {exc} (after {used} attempts)"
                    ) from None
                delay = min(MAX_BACKOFF_S, backoff_s * 2 ** (used - 1))
                # Jitter: a district's devices that lost the link together do not all come back
                # to the media server in the same instant. A server that said when to come back
                # is waited for at least that long (spread over a quarter more).
                if exc.after is not None and exc.after > delay:
                    delay = exc.after * random.uniform(1.0, 1.25)
                else:
                    delay *= random.uniform(0.5, 1.0)
                log.info("%s: %s; retrying in %.1f s", self.shown, exc, delay)
                if exc.after is not None and self.cancel is not None:
                    self.cancel.wait(delay)  # a long wait: the agent's stop cuts it short
                else:
                    sleep(delay)
            except DownloadError as exc:
                if exc.reason != DOWNLOAD_FAILED:
                    self._delete()
                raise

    @property
    def resumed(self) -> bool:
        """Whether the part's bytes came from more than one response (or an earlier process)."""
        return self.kept or self.responses > 1

    def _attempt(self) -> None:
        """One request; appends what arrives to the part (even when the connection is cut)."""
        headers = {"Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
        response = self._get(headers)
        with response:
            status = response.status_code
            if status == 416 and self.offset:
                self._unsatisfiable(response)
            if status in _RETRY_STATUS:
                after = response.headers.get("Retry-After") if status in (429, 503) else None
                raise _Retry(f"HTTP {status}", retry_after(after))
            if status == 206 and self.offset:
                self._check_range(response)
            elif status == 200:
                if self.offset:
                    log.info("%s ignored the byte range: reading from the start", self.shown)
                    self._discard()
            else:
                raise DownloadError(DOWNLOAD_FAILED, f"{self.shown}: HTTP {status}")
            self._check_length(response)
            self._read_body(response)

    def _get(self, headers: dict[str, str]) -> requests.Response:
        """GET, following up to MAX_REDIRECTS redirects to http(s) targets only."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self.session.get(
                    url, headers=headers, stream=True, allow_redirects=False, timeout=self.timeout
                )
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
                raise DownloadError(BAD_URL, f"{safe_url(url)}: {type(exc).__name__}") from None
            except requests.RequestException as exc:
                raise _Retry(_describe(exc, connecting=True)) from None
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECT_STATUS or not location:
                return response
            response.close()
            target = urljoin(url, location)
            try:
                check_url(target)
            except DownloadError as exc:
                raise DownloadError(
                    BAD_URL, f"redirect from {safe_url(url)}: {exc.detail}"
                ) from None
            url = target
        raise DownloadError(DOWNLOAD_FAILED, f"{self.shown}: too many redirects")

    def _unsatisfiable(self, response: requests.Response) -> None:
        match = _UNSATISFIED_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if match and int(match[1]) != self.size:
            raise DownloadError(
                SIZE_MISMATCH,
                f"{self.shown}: the server's file has {match[1]} bytes, not {self.size}",
            )
        log.info("%s refused the byte range: fetching the whole file", self.shown)
        self._discard()
        raise _Restart

    def _check_range(self, response: requests.Response) -> None:
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != self.offset:
            # Not the bytes we asked for: start over without a range.
            self._discard()
            raise _Retry(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
        if match[3] != "*" and int(match[3]) != self.size:
            raise DownloadError(
                SIZE_MISMATCH,
                f"{self.shown}: the server's file has {match[3]} bytes, not {self.size}",
            )

    def _check_length(self, response: requests.Response) -> None:
        raw = response.headers.get("Content-Length")
        if raw is None or not raw.strip().isdigit():
            return
        expected = self.size - self.offset
        if int(raw) != expected:
            raise DownloadError(
                SIZE_MISMATCH,
                f"{self.shown}: the server announces {int(raw) + self.offset} bytes, "
                f"not {self.size}",
            )

    def _read_body(self, response: requests.Response) -> None:
        raw: urllib3.HTTPResponse = response.raw
        first = True
        try:
            # read1 hands over whatever has arrived. iter_content (urllib3's read(amt)) would
            # wait to fill each chunk and drop the partial one when the connection is cut: up
            # to a chunk fetched again after every cut on a flaky 3G link. One byte more than
            # the rest of the size is asked for, to see a longer body without reading it.
            while chunk := raw.read1(min(self.chunk_bytes, self.size - self.offset + 1)):
                if first:
                    self.responses += 1
                    first = False
                self.transferred += len(chunk)
                if self.offset + len(chunk) > self.size:
                    raise DownloadError(
                        SIZE_MISMATCH,
                        f"{self.shown}: the server sent more than {self.size} bytes",
                    )
                self._write(chunk)
                if self.cancel is not None and self.cancel.is_set():
                    raise DownloadError(DOWNLOAD_FAILED, "cancelled")
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise _Retry(_describe(exc, connecting=False)) from None
        if self.offset < self.size:
            raise _Retry(f"the connection ended after {self.offset} of {self.size} bytes")

    # ------------------------------------------------------------------ the part file

    def _open(self) -> None:
        """Open the part for appending and hash what it already holds."""
        try:
            self.part.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.part, "ab", buffering=0)  # noqa: SIM115 - closed in close()
            existing = os.fstat(self._fh.fileno()).st_size
            if existing > self.size:
                self._discard()
                return
            with open(self.part, "rb") as fh:
                while block := fh.read(_HASH_BLOCK):
                    self.hasher.update(block)
                    self.offset += len(block)
        except OSError as exc:
            raise _local_error(self.part, exc) from None
        self.kept = self.offset > 0

    def _write(self, chunk: bytes) -> None:
        assert self._fh is not None
        try:
            self._fh.write(chunk)
        except OSError as exc:
            raise _local_error(self.part, exc) from None
        self.hasher.update(chunk)
        self.offset += len(chunk)

    def _discard(self) -> None:
        """Empty the part (its bytes are of no use) and start the hash again."""
        assert self._fh is not None
        try:
            self._fh.truncate(0)
        except OSError as exc:
            raise _local_error(self.part, exc) from None
        self.offset = 0
        self.responses = 0
        self.kept = False
        self.hasher = hashlib.sha256()

    def _sync(self) -> None:
        assert self._fh is not None
        try:
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise _local_error(self.part, exc) from None

    def _delete(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.part.unlink()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _local_error(path: Path, exc: OSError) -> DownloadError:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    reason = CACHE_FULL if full else DOWNLOAD_FAILED
    return DownloadError(reason, f"cannot write {path.name}: {exc.strerror or exc}")


def _describe(exc: Exception, connecting: bool) -> str:
    """A short cause, without the URL (whose query may carry a token)."""
    if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.ConnectionError) and connecting:
        return "cannot connect"
    if isinstance(
        exc,
        requests.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        | urllib3.exceptions.ProtocolError,
    ):
        return "the connection was cut"
    return type(exc).__name__
