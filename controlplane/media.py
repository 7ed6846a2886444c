"""Files the control plane hands to devices (a CAP alert's resources), stored by their sha256
in a folder that an HTTP server serves, as program content is: devices fetch the URL and check
the size and hash signed in the command."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from protocol import Media


class MediaFolder:
    """``publish_media`` for ``plan_alert``: writes each file once as ``folder/<sha256>``
    (temporary file, fsync, rename) and returns its ``Media`` at ``base_url/<sha256>``.
    ``store=False`` (a dry run) only computes the ``Media``."""

    def __init__(self, folder: Path, base_url: str, store: bool = True) -> None:
        self.folder = folder
        self.base_url = base_url.rstrip("/")
        self.store = store

    def __call__(self, data: bytes, mime: str) -> Media:
        digest = hashlib.sha256(data).hexdigest()
        if self.store:
            self._write(digest, data)
        return Media(url=f"{self.base_url}/{digest}", sha256=digest, size=len(data), mime=mime)

    def _write(self, digest: str, data: bytes) -> None:
        path = self.folder / digest
        if path.exists() and path.stat().st_size == len(data):
            return  # the same hash: the same file
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # served by another user (the HTTP server)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
