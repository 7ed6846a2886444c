"""Writing release slots: in the agent's own process, or by the root-side slot installer.

On a packaged device the service cannot write ``/opt/ttcs-agent`` (``ProtectSystem=strict``,
root-owned). It writes a small request, ``STATE_DIR/slots/request.json``, and the root unit
``ttcs-agent-slots.service`` (started by ``ttcs-agent-slots.path``) runs ``ttcs-agent
slots-apply`` from the ``current`` slot, which does one operation and answers in
``result.json``:

- ``install``: verifies the artifact (in the content cache) with the release keys of the
  configuration itself, unpacks it into a root-owned ``releases/VERSION``;
- ``commit``: points ``current`` at an existing slot;
- ``remove``: deletes an old slot, never the one in use nor dpkg's.

A malformed request, an artifact outside the cache or one that fails verification gets a
result with a reason and changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.slots import DPKG_STATUS, PARTIAL_PREFIX, Slots, dpkg_version, fsync_dir
from protocol.documents import RELEASE_VERSION_RE
from protocol.release import ReleaseError, unpack, verify, version_key
from protocol.signing import public_key_from_b64

REQUEST = "request.json"
RESULT = "result.json"
MAX_REQUEST_BYTES = 4096
POLL_S = 0.1


def requests_dir(config: AgentConfig) -> Path:
    """The folder the agent writes requests to and the installer its results."""
    return config.paths.state_dir / "slots"


class SlotWriter(Protocol):
    """What the updater asks of whoever writes the slots."""

    mode: str

    def install(self, artifact: Path, version: str, min_free_mb: int) -> str: ...

    def commit(self, version: str) -> None: ...

    def remove(self, version: str) -> None: ...


# ---------------------------------------------------------------------- the operations


def _version(value: Any) -> str:
    if not isinstance(value, str) or not re.match(RELEASE_VERSION_RE, value):
        raise ReleaseError("bad_request", f"{value!r} is not a release version")
    return value


def install(config: AgentConfig, artifact: Path, version: str, min_free_mb: int) -> str:
    """Verify ``artifact`` with the configured release keys and unpack it as a slot; its kid."""
    version = _version(version)
    slots = Slots(config.update.root)
    cache = config.paths.cache_dir.resolve()
    try:
        regular = stat.S_ISREG(artifact.lstat().st_mode)
        inside = artifact.is_absolute() and artifact.resolve().is_relative_to(cache)
    except (OSError, ValueError):
        regular = inside = False
    if not (inside and regular):
        raise ReleaseError("outside_cache", f"{artifact} is not a file in {cache}")
    floor = config.update.min_version
    if floor is not None and version_key(version) < version_key(floor):
        raise ReleaseError("below_floor", f"{version} is older than the floor {floor}")
    if slots.current() == version:
        raise ReleaseError("in_use", f"{version} is the slot in use")
    keys = {k: public_key_from_b64(v) for k, v in config.update.release_keys.items()}
    if not keys:
        raise ReleaseError("not_configured", "no [update] release_keys")
    slots.clean_hidden()
    partial = slots.partial(version)
    # A copy of our own: the cache's owner cannot change it between the check and the unpacking.
    copy = slots.releases / f"{PARTIAL_PREFIX}{version}.artifact"
    try:
        shutil.copyfile(artifact, copy, follow_symlinks=False)
        manifest = verify(copy, keys, version)
        unpack(copy, partial)
        if not (partial / "bin" / "ttcs-agent").is_file():
            raise ReleaseError("bad_release", "the slot has no bin/ttcs-agent")
        if slots.free_bytes() < min_free_mb * 1024 * 1024:
            raise ReleaseError("no_space", "unpacked, less than min_free_mb is left")
        if os.geteuid() == 0:  # the slot is root's, whoever built the artifact
            for path in [partial, *partial.rglob("*")]:
                os.lchown(path, 0, 0)
        slots.publish(partial, version)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        copy.unlink(missing_ok=True)
    return manifest.kid


def commit(config: AgentConfig, version: str) -> None:
    """Point ``current`` at the existing slot ``version``."""
    slots = Slots(config.update.root)
    if not slots.has(_version(version)):
        raise ReleaseError("no_slot", f"no release slot {version}")
    slots.switch(version)


def remove(config: AgentConfig, version: str) -> None:
    """Delete the slot ``version`` unless it is in use or dpkg's (absent: nothing to do)."""
    slots = Slots(config.update.root)
    if slots.current() == _version(version):
        raise ReleaseError("in_use", f"{version} is the slot in use")
    if dpkg_version(DPKG_STATUS) == version:
        raise ReleaseError("dpkg_slot", f"{version} is the slot of the installed package")
    shutil.rmtree(slots.path(version), ignore_errors=True)


@dataclass
class DirectWriter:
    """The agent writes its slots itself (``ROOT/releases`` is writable: development, tests)."""

    config: AgentConfig
    mode: str = "direct"

    def install(self, artifact: Path, version: str, min_free_mb: int) -> str:
        return install(self.config, artifact, version, min_free_mb)

    def commit(self, version: str) -> None:
        commit(self.config, version)

    def remove(self, version: str) -> None:
        remove(self.config, version)


# ---------------------------------------------------------------------- the agent's side


@dataclass
class HelperWriter:
    """The agent asks the root-side installer: a request file, then its result."""

    config: AgentConfig
    timeout_s: float
    mode: str = "helper"

    def install(self, artifact: Path, version: str, min_free_mb: int) -> str:
        answer = self._call("install", version, artifact=str(artifact), min_free_mb=min_free_mb)
        return str(answer.get("kid", ""))

    def commit(self, version: str) -> None:
        self._call("commit", version)

    def remove(self, version: str) -> None:
        self._call("remove", version)

    def _call(self, op: str, version: str, **args: Any) -> dict[str, Any]:
        folder = requests_dir(self.config)
        folder.mkdir(mode=0o750, exist_ok=True)
        (folder / RESULT).unlink(missing_ok=True)
        rid = secrets.token_hex(8)
        _write_json(folder / REQUEST, {"id": rid, "op": op, "version": version, **args})
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            answer = _read_json(folder / RESULT)
            if answer is not None and answer.get("id") == rid:
                (folder / RESULT).unlink(missing_ok=True)
                if answer.get("ok") is True:
                    return answer
                raise ReleaseError(str(answer.get("reason")), str(answer.get("detail", "")))
            time.sleep(POLL_S)
        (folder / REQUEST).unlink(missing_ok=True)
        raise ReleaseError(
            "installer_timeout",
            f"the slot installer (ttcs-agent-slots.path) did not answer {op} in {self.timeout_s} s",
        )


def slot_writer(config: AgentConfig) -> SlotWriter:
    """Direct when ``ROOT/releases`` (or ``ROOT``) is writable, else the installer; or as set."""
    choice = config.update.installer
    if choice == "auto":
        root, releases = config.update.root, config.update.root / "releases"
        target = releases if releases.exists() else root
        choice = "direct" if os.access(target, os.W_OK) else "helper"
    if choice == "direct":
        return DirectWriter(config)
    return HelperWriter(config, config.update.installer_timeout_s)


# ---------------------------------------------------------------------- the root side


def apply_pending(config: AgentConfig) -> int:
    """``ttcs-agent slots-apply``: do the pending request, if any, and write its result."""
    folder = requests_dir(config)
    if folder.is_symlink() or not folder.is_dir():
        print(f"ttcs-agent slots-apply: {folder} is not a folder", flush=True)
        return 1
    try:
        fd = os.open(folder / REQUEST, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return 0  # nothing asked
    except OSError as exc:
        (folder / REQUEST).unlink(missing_ok=True)
        _answer(folder, None, "bad_request", f"cannot open the request: {exc.strerror}")
        return 0
    with os.fdopen(fd, "rb") as fh:
        regular = stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
        raw = fh.read(MAX_REQUEST_BYTES + 1) if regular else b""
    (folder / REQUEST).unlink(missing_ok=True)
    rid: str | None = None
    try:
        if len(raw) > MAX_REQUEST_BYTES or not regular:
            raise ReleaseError("bad_request", f"not a regular file of at most {MAX_REQUEST_BYTES}")
        try:
            req = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ReleaseError("bad_request", f"not JSON: {exc}") from None
        if not isinstance(req, dict) or not isinstance(req.get("id"), str):
            raise ReleaseError("bad_request", "not an object with an id")
        rid = req["id"][:64]
        kid = _dispatch(config, req)
    except ReleaseError as exc:
        _answer(folder, rid, exc.reason, exc.detail)
        print(f"ttcs-agent slots-apply: refused: {exc.reason} ({exc.detail})", flush=True)
        return 0
    except Exception as exc:  # written as a result: the agent must not wait for nothing
        _answer(folder, rid, "install_failed", f"{type(exc).__name__}: {exc}")
        raise
    _write_json(folder / RESULT, {"id": rid, "ok": True, "kid": kid})
    print(f"ttcs-agent slots-apply: {req['op']} {req['version']} done", flush=True)
    return 0


def _dispatch(config: AgentConfig, req: dict[str, Any]) -> str:
    op, version = req.get("op"), _version(req.get("version"))
    if op == "install":
        artifact, min_free = req.get("artifact"), req.get("min_free_mb", 0)
        if not isinstance(artifact, str) or type(min_free) is not int or min_free < 0:
            raise ReleaseError("bad_request", "install needs an artifact path and min_free_mb")
        return install(config, Path(artifact), version, min_free)
    if op == "commit":
        commit(config, version)
    elif op == "remove":
        remove(config, version)
    else:
        raise ReleaseError("bad_request", f"unknown op {op!r}")
    return ""


def _answer(folder: Path, rid: str | None, reason: str, detail: str) -> None:
    _write_json(folder / RESULT, {"id": rid, "ok": False, "reason": reason, "detail": detail})


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomically: a new file of a random name (never through a link), synced, renamed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    if os.geteuid() == 0:  # the folder's owner (the agent) reads and removes it
        owner = path.parent.stat()
        os.fchown(fd, owner.st_uid, owner.st_gid)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
