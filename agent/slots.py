"""Release slots on disk (``ROOT/releases/VERSION``, ``ROOT/current``) and the update's record.

Every step that a power cut may interrupt leaves a whole state behind: a slot is unpacked
under a hidden name and renamed into place once synced; ``current`` is replaced by renaming a
new symbolic link over it; the update's record is written to a temporary file, synced and
renamed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from protocol.release import version_key

log = logging.getLogger(__name__)

# Names in releases/ starting with "." are never a slot: being unpacked, or being removed.
PARTIAL_PREFIX = ".partial-"
OLD_PREFIX = ".old-"
DPKG_STATUS = Path("/var/lib/dpkg/status")
PACKAGE = "ttcs-agent"
Phase = Literal["staging", "trial", "committed", "rolled_back"]


class Slots:
    """The release slots under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.current_link = root / "current"
        self.dpkg_status = DPKG_STATUS

    def path(self, version: str) -> Path:
        return self.releases / version

    def launcher(self, version: str) -> Path:
        """The program a slot runs as: ``releases/VERSION/bin/ttcs-agent``."""
        return self.path(version) / "bin" / "ttcs-agent"

    def current(self) -> str | None:
        """The version ``current`` points at (None: no link, or not into ``releases``)."""
        try:
            target = Path(os.readlink(self.current_link))
        except OSError:
            return None
        if target.parent.name != "releases" or not self.has(target.name):
            return None
        return target.name

    def has(self, version: str) -> bool:
        return self.launcher(version).is_file()

    def versions(self) -> list[str]:
        try:
            return sorted(p.name for p in self.releases.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def partial(self, version: str) -> Path:
        """Where ``version`` is unpacked before it is complete (removed first if left over)."""
        path = self.releases / f"{PARTIAL_PREFIX}{version}"
        shutil.rmtree(path, ignore_errors=True)
        self.releases.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, partial: Path, version: str) -> None:
        """Make an unpacked slot durable, then visible under its version's name."""
        os.sync()  # every file of the slot on disk before its name says it is complete
        final = self.path(version)
        old = self.releases / f"{OLD_PREFIX}{version}"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():  # an older copy of the same version: out of the way in one rename
            os.rename(final, old)
        os.rename(partial, final)
        fsync_dir(self.releases)
        shutil.rmtree(old, ignore_errors=True)

    def switch(self, version: str) -> None:
        """Point ``current`` at ``version`` in one rename (a new link replaces the old)."""
        if not self.has(version):
            raise FileNotFoundError(f"no release slot {version} in {self.releases}")
        tmp = self.root / ".current.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"releases/{version}", tmp)
        os.replace(tmp, self.current_link)
        fsync_dir(self.root)
        log.info("current -> releases/%s", version)

    def clean(self, keep: set[str], keep_previous: int) -> list[str]:
        """Remove left-over hidden entries and all but ``keep_previous`` older slots."""
        removed = self.clean_hidden()
        for version in self.stale(keep, keep_previous):
            shutil.rmtree(self.path(version), ignore_errors=True)
            removed.append(version)
        return removed

    def clean_hidden(self) -> list[str]:
        """Remove what an interrupted unpacking or removal left (names starting with ".")."""
        removed = []
        with contextlib.suppress(FileNotFoundError):
            for path in self.releases.iterdir():
                if path.name.startswith("."):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
        return removed

    def stale(self, keep: set[str], keep_previous: int) -> list[str]:
        """The slots to remove: all but ``keep``, ``current``, dpkg's and the newest others."""
        keep = keep | {v for v in (self.current(), dpkg_version(self.dpkg_status)) if v}
        others = [v for v in self.versions() if v not in keep]
        others.sort(key=_order, reverse=True)
        return others[keep_previous:]

    def free_bytes(self) -> int:
        folder = self.releases if self.releases.exists() else self.root
        return shutil.disk_usage(folder).free


def dpkg_version(status: Path = DPKG_STATUS) -> str | None:
    """The version of the ``ttcs-agent`` package dpkg has installed (its slot), if any."""
    try:
        text = status.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Package") == PACKAGE and fields.get("Status", "").endswith(" installed"):
            return fields.get("Version")
    return None


def _order(version: str) -> tuple[int, ...]:
    try:
        return version_key(version)
    except ValueError:  # not a release's name: first to go
        return (-1,)


@dataclass(frozen=True)
class UpdateRecord:
    """What an update under way has done so far, kept in ``STATE_DIR/update.json``."""

    cmd: str
    from_version: str
    to_version: str
    phase: Phase
    starts: int = 0  # starts of the new version so far
    deadline: float | None = None  # wall clock (s) by which it must be healthy
    detail: str = ""

    def but(self, **changes: Any) -> UpdateRecord:
        return replace(self, **changes)


class UpdateJournal:
    """The update record on disk: read, written atomically, removed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> UpdateRecord | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return UpdateRecord(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            # Written by rename, so never half: a record this version cannot read is dropped.
            log.error("update record %s unreadable, dropped: %s", self.path, exc)
            self.clear()
            return None

    def write(self, record: UpdateRecord) -> UpdateRecord:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(asdict(record), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        return record

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            fsync_dir(self.path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
