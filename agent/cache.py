"""The content cache: files stored by their sha256, verified before they become visible.

Layout under ``cache_dir``::

    ab/cd/abcd…(64 hex)      a verified file, at the path of its own hash
    .partial/<sha256>.part   a download in progress (same filesystem, so the rename is atomic)

A file appears at its final path only after its size and sha256 were checked: the download is
written to the part, flushed and fsynced, renamed into place, and the directory fsynced. A power
cut at any instant leaves either no file or the whole verified file; a part left behind is
resumed by the next download of the same hash.

Least recently used goes first when room is needed. "Used" is the file's mtime, set by
``touch``: many devices mount their storage ``noatime`` (or ``relatime``, which updates atime at
most once a day), so the access time says nothing. Content that a live or pending program
refers to is never evicted: the director names it with ``set_keep``, and ``ensure``/``gc`` add
their own ``keep`` arguments.

Thread safety: one downloader thread calls ``ensure``; any thread may read ``usage``/``items``
(which only list directories) or call ``touch``/``gc``/``set_keep``. Eviction, room-making and
renames into place hold one lock, so a ``gc`` never races a file coming into the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from agent.config import AgentConfig
from agent.download import CACHE_FULL, Downloader, DownloadError, FetchResult, FetchSettings
from protocol import Media

log = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
PART_SUFFIX = ".part"
STALE_PART_S = 86400  # a part untouched for a day belongs to content nobody asks for any more
PROGRESS_STEP = 1 << 20  # verify reports its progress every MiB
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FAN_RE = re.compile(r"^[0-9a-f]{2}$")


@dataclass(frozen=True)
class CacheItem:
    """A verified file in the cache; ``last_used`` is POSIX seconds (the file's mtime)."""

    sha256: str
    size: int
    last_used: float


class Progress(NamedTuple):
    """How far ``verify`` has come."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int


class ContentCache:
    """Hash-addressed files under ``root``, kept within ``quota_bytes``.

    ``min_free_bytes`` is disk space a download must leave free (the SQLite store and the log
    usually share the disk). ``downloader`` fetches missing content (the cache closes it in
    ``close``); one with the default settings is made when first needed.
    """

    def __init__(
        self,
        root: Path,
        quota_bytes: int,
        *,
        min_free_bytes: int = 0,
        downloader: Downloader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        self.min_free_bytes = min_free_bytes
        self.clock = clock
        self._downloader = downloader
        self._lock = threading.RLock()
        self._keep: frozenset[str] = frozenset()

    @property
    def fetch_settings(self) -> FetchSettings:
        """The settings of the downloader that fills this cache."""
        if self._downloader is None:
            return FetchSettings()
        return self._downloader.settings

    # ------------------------------------------------------------------ paths

    def path(self, sha256: str) -> Path:
        """Where the file with this hash lives (whether or not it is there)."""
        if not _SHA256_RE.match(sha256):
            raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def part_path(self, sha256: str) -> Path:
        """Where the download of this hash is written until it is verified."""
        self.path(sha256)  # validates
        return self.root / PARTIAL_DIR / f"{sha256}{PART_SUFFIX}"

    # ------------------------------------------------------------------ reading

    def has(self, sha256: str, size: int) -> bool:
        """Whether the file is cached with this size (its hash was checked when it came in)."""
        try:
            return self.path(sha256).stat().st_size == size
        except FileNotFoundError:
            return False

    def touch(self, sha256: str) -> bool:
        """Mark the file as just used (mtime = now); False when it is not cached."""
        now = self.clock()
        try:
            os.utime(self.path(sha256), (now, now))
        except FileNotFoundError:
            return False
        return True

    def items(self) -> list[CacheItem]:
        """Every cached file, least recently used first (the order of eviction)."""
        found = [CacheItem(sha, st.st_size, st.st_mtime) for sha, st in self._scan()]
        found.sort(key=lambda item: (item.last_used, item.sha256))
        return found

    def usage(self) -> tuple[int, int]:
        """(bytes, items) of the cached files; lists only the fan-out folders."""
        total = count = 0
        for _, st in self._scan():
            total += st.st_size
            count += 1
        return total, count

    def disk_free_bytes(self) -> int:
        """Free space on the cache's filesystem (0 when it cannot be read)."""
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            return shutil.disk_usage(probe).free
        except OSError:
            return 0

    def _scan(self) -> Iterator[tuple[str, os.stat_result]]:
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                try:
                    entries = list(os.scandir(second))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for entry in entries:
                    name = entry.name
                    if name[:2] != first.name or name[2:4] != second.name:
                        continue
                    if not _SHA256_RE.match(name):
                        continue
                    try:
                        if entry.is_file(follow_symlinks=False):
                            yield name, entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # evicted while we looked

    # ------------------------------------------------------------------ keeping

    def set_keep(self, shas: Collection[str]) -> None:
        """Content that must not be evicted: everything live and pending programs refer to."""
        with self._lock:
            self._keep = frozenset(shas)

    @property
    def keep(self) -> frozenset[str]:
        return self._keep

    # ------------------------------------------------------------------ fetching

    def ensure(
        self,
        media: Media,
        keep: Collection[str] = (),
        cancel: threading.Event | None = None,
    ) -> FetchResult | None:
        """Make ``media`` cached and verified; None when it already was (it is touched then).

        Makes room first, evicting least recently used files that are neither in ``keep`` nor
        in the ``set_keep`` set. Raises DownloadError: ``cache_full`` when the file cannot fit
        even after evicting all that may go (nothing is evicted then), or a reason of
        ``agent.download``. Nothing is ever visible at the final path unless verified.
        """
        sha, size = media.sha256, media.size
        if self.has(sha, size):
            self.touch(sha)
            return None
        part = self.part_path(sha)
        try:
            already = min(part.stat().st_size, size)
        except FileNotFoundError:
            already = 0
        self._make_room(size, size - already, {sha, *keep})
        if self._downloader is None:
            self._downloader = Downloader()
        result = self._downloader.fetch(media.url, part, size, sha, cancel=cancel)
        with self._lock:
            try:
                self._publish(part, self.path(sha))
            except OSError as exc:
                raise DownloadError(
                    "download_failed", f"cannot store {sha[:12]}…: {exc.strerror or exc}"
                ) from None
        log.info(
            "cached %s (%d bytes, %d transferred%s)",
            sha[:12],
            size,
            result.transferred_bytes,
            ", resumed" if result.resumed else "",
        )
        return result

    def _make_room(self, size: int, to_write: int, keep: Collection[str]) -> None:
        """Evict LRU files not kept until ``size`` fits the quota and ``to_write`` the disk.

        Decides first and evicts after, so that a file that cannot fit evicts nothing."""
        with self._lock:
            protected = self._keep | set(keep)
            items = self.items()
            used = sum(item.size for item in items)
            free = self.disk_free_bytes()
            evictable = [item for item in items if item.sha256 not in protected]
            plan: list[CacheItem] = []
            while used + size > self.quota_bytes or free < to_write + self.min_free_bytes:
                if not evictable:
                    raise DownloadError(
                        CACHE_FULL,
                        f"{size} bytes do not fit: {used} of the {self.quota_bytes}-byte quota "
                        f"hold content that must be kept, {free} bytes free on disk "
                        f"(at least {self.min_free_bytes} must stay free)",
                    )
                item = evictable.pop(0)
                plan.append(item)
                used -= item.size
                free += item.size
            for item in plan:
                self._remove(item.sha256, "to make room")

    def _publish(self, part: Path, final: Path) -> None:
        """Rename a verified, fsynced part into place and make the rename durable."""
        created = [d for d in (final.parent.parent, final.parent) if not d.is_dir()]
        final.parent.mkdir(parents=True, exist_ok=True)
        for folder in created:
            _fsync_dir(folder.parent)
        os.replace(part, final)
        _fsync_dir(final.parent)
        now = self.clock()
        os.utime(final, (now, now))

    # ------------------------------------------------------------------ housekeeping

    def gc(self, keep: Collection[str] = (), target_bytes: int | None = None) -> list[str]:
        """Evict least recently used files that are not kept until the cache holds at most
        ``target_bytes`` (default: the quota); drop parts untouched for a day. Returns the
        evicted hashes, in eviction order."""
        target = self.quota_bytes if target_bytes is None else target_bytes
        evicted: list[str] = []
        with self._lock:
            self._drop_stale_parts()
            protected = self._keep | set(keep)
            items = self.items()
            used = sum(item.size for item in items)
            for item in items:
                if used <= target:
                    break
                if item.sha256 in protected:
                    continue
                if self._remove(item.sha256, "over quota"):
                    used -= item.size
                    evicted.append(item.sha256)
        return evicted

    def verify(self, progress: Callable[[Progress], None] | None = None) -> list[str]:
        """Hash every cached file again; remove and return those that do not match their name
        (or cannot be read: a failing SD card). ``progress`` is called every MiB and after
        each file. A PermissionError (not the service user) is raised, not taken as damage."""
        items = self.items()
        total = sum(item.size for item in items)
        bad: list[str] = []
        before = 0  # bytes of the files already verified
        for index, item in enumerate(items):

            def advance(
                read: int, start: int = before, size: int = item.size, files: int = index
            ) -> None:
                if progress is not None:
                    progress(Progress(start + min(read, size), total, files, len(items)))

            try:
                digest, seen = _hash_file(self.path(item.sha256), advance)
            except PermissionError:
                raise
            except OSError as exc:
                log.warning("cache: cannot read %s: %s", item.sha256[:12], exc.strerror or exc)
                digest, seen = "unreadable", None
            # A file evicted while we looked (digest None) is not bad, just gone.
            if digest is not None and digest != item.sha256:
                bad.append(item.sha256)
                self._remove_if_unchanged(item.sha256, seen)
            before += item.size
            if progress is not None:
                progress(Progress(before, total, index + 1, len(items)))
        return bad

    def _remove_if_unchanged(self, sha256: str, seen: os.stat_result | None) -> None:
        path = self.path(sha256)
        with self._lock:
            try:
                now = path.stat()
            except FileNotFoundError:
                return
            # Replaced (renamed over) by a fresh download while we hashed the old one: leave it.
            # (Not the mtime: the agent may touch the file meanwhile.)
            if seen is not None and (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
                return
            log.warning("cache: %s does not match its hash: removed", sha256[:12])
            self._remove(sha256, "corrupted")

    def _remove(self, sha256: str, why: str) -> bool:
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cache: cannot remove %s: %s", sha256[:12], exc.strerror or exc)
            return False
        log.info("cache: removed %s (%s)", sha256[:12], why)
        for folder in (path.parent, path.parent.parent):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty
        return True

    def _drop_stale_parts(self) -> None:
        folder = self.root / PARTIAL_DIR
        cutoff = self.clock() - STALE_PART_S
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    log.info("cache: dropped the stale partial download %s", entry.name)

    def close(self) -> None:
        """Release the downloader's connections."""
        if self._downloader is not None:
            self._downloader.close()
            self._downloader = None


def open_cache(config: AgentConfig, sleep: Callable[[float], None] = time.sleep) -> ContentCache:
    """The cache and downloader that ``config`` describes (``[paths] cache_dir``, ``[cache]``)."""
    c = config.cache
    settings = FetchSettings(
        connect_timeout_s=c.connect_timeout_s,
        read_timeout_s=c.read_timeout_s,
        attempts=c.attempts,
        start_jitter_s=float(c.fetch_jitter_s),
    )
    return ContentCache(
        config.paths.cache_dir,
        c.quota_bytes,
        min_free_bytes=c.min_free_bytes,
        downloader=Downloader(settings, sleep=sleep),
    )


def _subdirs(folder: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if _FAN_RE.match(entry.name) and entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def _hash_file(
    path: Path, advance: Callable[[int], None]
) -> tuple[str | None, os.stat_result | None]:
    """(hexdigest, stat when opened); (None, None) when the file is gone. ``advance`` gets the
    bytes read so far, every PROGRESS_STEP."""
    hasher = hashlib.sha256()
    read = 0
    try:
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            while block := fh.read(PROGRESS_STEP):
                hasher.update(block)
                read += len(block)
                advance(read)
    except FileNotFoundError:
        return None, None
    return hasher.hexdigest(), st


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
