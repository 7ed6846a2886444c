"""Release artifacts: a signed manifest and a release slot, packed, checked and unpacked.

An artifact is an uncompressed tar with exactly two members, in this order:

- ``release.json``: the manifest ``{"v":1,"kind":"ttcs-agent.release","version",
  "payload":{"name","sha256","size"},"created_at","kid","sig"}``, signed with a *release*
  key over the same canonical signing input as commands (``protocol.signing``);
- ``slot.tar.gz``: the release slot (``bin/ttcs-agent`` and what it runs), paths relative to
  the slot.

The manifest names the payload's hash, so the one signature covers every byte of the slot.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.documents import RELEASE_VERSION_RE
from protocol.signing import sign, signature_valid
from protocol.wire import SHA256_RE, format_time

MANIFEST = "release.json"
PAYLOAD = "slot.tar.gz"
KIND = "ttcs-agent.release"
MAX_MANIFEST_BYTES = 64 * 1024
CHUNK = 1 << 20


class ReleaseError(Exception):
    """An artifact that must not be installed; ``reason`` is the ack's reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Manifest:
    """A verified manifest."""

    version: str
    kid: str
    payload_sha256: str
    payload_size: int
    created_at: str


def version_key(version: str) -> tuple[int, ...]:
    """``"0.10.1"`` -> ``(0, 10, 1, 0)``: versions compare as numbers, padded to four."""
    if not re.match(RELEASE_VERSION_RE, version):
        raise ValueError(f"{version!r} is not a release version")
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


# --------------------------------------------------------------------------- building


def pack_slot(slot: Path, version: str, out: Path, key: Ed25519PrivateKey, kid: str) -> Manifest:
    """Pack the slot directory ``slot`` into a signed artifact at ``out``."""
    version_key(version)
    if not (slot / "bin" / "ttcs-agent").is_file():
        raise ReleaseError("bad_release", f"{slot} has no bin/ttcs-agent: not a release slot")
    payload = out.with_name(out.name + ".payload")
    try:
        with tarfile.open(payload, "w:gz", compresslevel=6) as tar:
            for path in sorted(slot.rglob("*")):
                if "__pycache__" in path.parts and path.suffix != ".pyc":
                    continue
                tar.add(path, arcname=path.relative_to(slot).as_posix(), recursive=False)
        manifest = {
            "v": 1,
            "kind": KIND,
            "version": version,
            "payload": {
                "name": PAYLOAD,
                "sha256": _sha256(payload),
                "size": payload.stat().st_size,
            },
            "created_at": format_time(time.time()),
        }
        write_artifact(out, manifest, payload, key, kid)
    finally:
        payload.unlink(missing_ok=True)
    return verify(out, {kid: key.public_key()})


def write_artifact(
    out: Path, manifest: dict[str, Any], payload: Path, key: Ed25519PrivateKey, kid: str
) -> None:
    """Write ``manifest`` (signed now by ``key``) and ``payload`` as the artifact ``out``."""
    signed = sign({**manifest, "kid": kid}, key)
    raw = json.dumps(signed, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(raw), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(raw))
        tar.add(payload, arcname=PAYLOAD, recursive=False)
    os.replace(tmp, out)


def resign(artifact: Path, out: Path, key: Ed25519PrivateKey, kid: str) -> Manifest:
    """Sign an artifact (signed before or not) again with ``key``; the payload is unchanged."""
    manifest = read_manifest(artifact)
    payload = out.with_name(out.name + ".payload")
    try:
        with tarfile.open(artifact, "r:") as tar, payload.open("wb") as out_fh:
            src = tar.extractfile(_payload_member(tar))
            assert src is not None  # a regular file
            while chunk := src.read(CHUNK):
                out_fh.write(chunk)
        unsigned = {k: v for k, v in manifest.items() if k not in ("kid", "sig")}
        write_artifact(out, unsigned, payload, key, kid)
    finally:
        payload.unlink(missing_ok=True)
    return verify(out, {kid: key.public_key()})


# --------------------------------------------------------------------------- checking


def read_manifest(artifact: Path) -> dict[str, Any]:
    """The manifest of ``artifact``, not yet verified; ReleaseError ``bad_release`` if none."""
    try:
        with tarfile.open(artifact, "r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise ReleaseError("bad_release", f"the first member must be {MANIFEST}")
            if first.size > MAX_MANIFEST_BYTES:
                raise ReleaseError("bad_release", f"{MANIFEST} is larger than 64 KiB")
            fh = tar.extractfile(first)
            assert fh is not None  # a regular file
            data = json.loads(fh.read().decode("utf-8"))
    except (tarfile.TarError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReleaseError("bad_release", f"not a release artifact: {exc}") from None
    if not isinstance(data, dict):
        raise ReleaseError("bad_release", f"{MANIFEST} is not a JSON object")
    return data


def verify(
    artifact: Path, keys: Mapping[str, Ed25519PublicKey], version: str | None = None
) -> Manifest:
    """Check the manifest's release signature and the payload's hash; return the manifest.

    Reasons: ``bad_release`` (not an artifact), ``release_unknown_key`` (not signed by a
    release key: a command key is not one), ``release_bad_signature``, ``release_mismatch``
    (another version than asked for), ``release_tampered`` (the payload is not what was signed).
    """
    doc = read_manifest(artifact)
    kid = doc.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise ReleaseError("release_unknown_key", f"signed by {kid!r}, not a release key here")
    if not signature_valid(doc, keys[kid]):
        raise ReleaseError("release_bad_signature", f"the manifest's signature by {kid} fails")
    manifest = _parse(doc)
    if version is not None and manifest.version != version:
        raise ReleaseError("release_mismatch", f"the artifact is {manifest.version}, not {version}")
    try:
        with tarfile.open(artifact, "r:") as tar:
            member = _payload_member(tar)
            digest, size = hashlib.sha256(), 0
            fh = tar.extractfile(member)
            assert fh is not None
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            if tar.next() is not None:
                raise ReleaseError("bad_release", "members after the payload")
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseError("bad_release", f"cannot read the payload: {exc}") from None
    if (digest.hexdigest(), size) != (manifest.payload_sha256, manifest.payload_size):
        raise ReleaseError("release_tampered", "the payload is not the one the manifest signs")
    return manifest


def _parse(doc: dict[str, Any]) -> Manifest:
    payload = doc.get("payload")
    try:
        assert doc.get("v") == 1 and doc.get("kind") == KIND, "v must be 1, kind " + KIND
        assert isinstance(payload, dict), "payload must be an object"
        version, sha, size = doc["version"], payload["sha256"], payload["size"]
        assert isinstance(version, str) and re.match(RELEASE_VERSION_RE, version), "version"
        assert isinstance(sha, str) and SHA256_RE.match(sha), "payload.sha256"
        assert type(size) is int and size > 0, "payload.size"
        assert payload.get("name") == PAYLOAD, f"payload.name must be {PAYLOAD}"
    except (AssertionError, KeyError) as exc:
        raise ReleaseError("bad_release", f"{MANIFEST}: {exc}") from None
    return Manifest(version, str(doc["kid"]), sha, size, str(doc.get("created_at", "")))


# --------------------------------------------------------------------------- unpacking


def unpack(artifact: Path, dest: Path) -> None:
    """Unpack the payload into the new directory ``dest`` (call after ``verify``).

    Only regular files, directories and symbolic links, at relative paths that stay inside
    ``dest`` and never pass through a link; no set-uid bits. Nothing is fsynced here.
    """
    dest.mkdir(parents=True)
    with tarfile.open(artifact, "r:") as outer:
        fh = outer.extractfile(_payload_member(outer))
        assert fh is not None
        with gzip.GzipFile(fileobj=fh) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            links: set[PurePosixPath] = set()
            for member in tar:
                path = _check_member(member, links)
                if member.issym():
                    links.add(path)
                tar.extract(member, dest, set_attrs=True, filter="tar")


def _check_member(member: tarfile.TarInfo, links: set[PurePosixPath]) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] == ".":
        raise ReleaseError("bad_release", f"unsafe path in the slot: {member.name!r}")
    if not (member.isfile() or member.isdir() or member.issym()):
        raise ReleaseError("bad_release", f"{member.name!r}: only files, folders and links")
    if any(parent in links for parent in path.parents):
        raise ReleaseError("bad_release", f"{member.name!r} lies behind a link")
    return path


def _payload_member(tar: tarfile.TarFile) -> tarfile.TarInfo:
    tar.next()  # the manifest
    member = tar.next()
    if member is None or member.name != PAYLOAD or not member.isfile():
        raise ReleaseError("bad_release", f"the second member must be {PAYLOAD}")
    return member


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
