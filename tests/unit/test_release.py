"""Release artifacts (protocol/release.py) and release slots (agent/slots.py) on a real file
system: what is refused, with which reason, and that a refused artifact unpacks nothing."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.slots import Slots, UpdateJournal, UpdateRecord
from protocol.release import (
    MANIFEST,
    PAYLOAD,
    ReleaseError,
    pack_slot,
    resign,
    unpack,
    verify,
    version_key,
    write_artifact,
)

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def make_slot(folder: Path, text: str = "print('hello')\n") -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "ttcs-agent").write_text(f"#!/usr/bin/python3\n{text}")
    (folder / "bin" / "ttcs-agent").chmod(0o755)
    (folder / "lib").mkdir()
    (folder / "lib" / "mô-đun.py").write_text("x = 'Thông báo'\n", encoding="utf-8")
    os.symlink("lib", folder / "lib64")
    return folder


def artifact(tmp_path: Path, version: str = "1.1.0", key: Ed25519PrivateKey = KEY) -> Path:
    slot = make_slot(tmp_path / f"slot-{version}")
    out = tmp_path / f"{version}.release"
    pack_slot(slot, version, out, key, "rel-2026")
    return out


def test_a_packed_slot_verifies_and_unpacks_whole(tmp_path: Path) -> None:
    path = artifact(tmp_path)
    manifest = verify(path, {"rel-2026": KEY.public_key()}, "1.1.0")
    assert (manifest.version, manifest.kid) == ("1.1.0", "rel-2026")
    with tarfile.open(path) as tar:
        assert tar.getnames() == [MANIFEST, PAYLOAD]
    dest = tmp_path / "out"
    unpack(path, dest)
    assert (dest / "bin" / "ttcs-agent").stat().st_mode & 0o111
    assert (dest / "lib" / "mô-đun.py").read_text(encoding="utf-8") == "x = 'Thông báo'\n"
    assert os.readlink(dest / "lib64") == "lib"


@pytest.mark.parametrize(
    "keys, version, reason",
    [
        ({"rel-2026": OTHER.public_key()}, None, "release_bad_signature"),
        ({"hcm-2026": KEY.public_key()}, None, "release_unknown_key"),
        ({"rel-2026": KEY.public_key()}, "1.2.0", "release_mismatch"),
    ],
)
def test_signature_key_and_version_are_checked(
    tmp_path: Path, keys: dict[str, object], version: str | None, reason: str
) -> None:
    with pytest.raises(ReleaseError) as caught:
        verify(artifact(tmp_path), keys, version)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_a_changed_payload_is_tampered(tmp_path: Path) -> None:
    path = artifact(tmp_path)
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tar:
        member = tar.getmember(PAYLOAD)
    data[member.offset_data + member.size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ReleaseError) as caught:
        verify(path, {"rel-2026": KEY.public_key()})
    assert caught.value.reason == "release_tampered"


def test_a_changed_manifest_fails_its_signature(tmp_path: Path) -> None:
    path = artifact(tmp_path)
    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
        payload = tmp_path / "payload"
        payload.write_bytes(tar.extractfile(PAYLOAD).read())  # type: ignore[union-attr]
    manifest["version"] = "9.0.0"
    raw = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
        tar.add(payload, arcname=PAYLOAD)
    with pytest.raises(ReleaseError) as caught:
        verify(path, {"rel-2026": KEY.public_key()})
    assert caught.value.reason == "release_bad_signature"


def test_resigning_moves_the_artifact_to_another_key(tmp_path: Path) -> None:
    path = artifact(tmp_path, key=OTHER)
    resign(path, path, KEY, "rel-2027")
    assert verify(path, {"rel-2027": KEY.public_key()}).kid == "rel-2027"


@pytest.mark.parametrize(
    "name, kind",
    [("../escape", tarfile.REGTYPE), ("/etc/passwd", tarfile.REGTYPE), ("dev", tarfile.CHRTYPE),
     ("lib64/inside-a-link", tarfile.REGTYPE)],
)  # fmt: skip
def test_unsafe_members_are_refused(tmp_path: Path, name: str, kind: bytes) -> None:
    payload = tmp_path / "payload.tar.gz"
    with tarfile.open(payload, "w:gz") as tar:
        link = tarfile.TarInfo("lib64")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
        info = tarfile.TarInfo(name)
        info.type = kind
        tar.addfile(info, io.BytesIO(b""))
    path = tmp_path / "bad.release"
    manifest = {"v": 1, "kind": "ttcs-agent.release", "version": "1.1.0"}
    write_artifact(path, manifest, payload, KEY, "rel-2026")
    with pytest.raises(ReleaseError) as caught:
        unpack(path, tmp_path / "out")
    assert caught.value.reason == "bad_release"
    assert not (tmp_path / "escape").exists()


def test_not_an_artifact_is_a_bad_release(tmp_path: Path) -> None:
    path = tmp_path / "x.release"
    path.write_bytes(b"PK\x03\x04 not a tar")
    with pytest.raises(ReleaseError) as caught:
        verify(path, {"rel-2026": KEY.public_key()})
    assert caught.value.reason == "bad_release"


def test_versions_compare_as_numbers() -> None:
    assert version_key("0.10.0") > version_key("0.9.9")
    assert version_key("1.0") == version_key("1.0.0.0")
    with pytest.raises(ValueError):
        version_key("1.0.0-rc1")


def test_switch_replaces_current_in_one_rename(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        make_slot(slots.path(version))
    slots.switch("1.0.0")
    inode = os.lstat(slots.current_link).st_ino
    slots.switch("1.1.0")
    assert os.readlink(slots.current_link) == "releases/1.1.0"
    assert os.lstat(slots.current_link).st_ino != inode  # a new link, renamed over the old
    assert slots.current() == "1.1.0"
    with pytest.raises(FileNotFoundError):
        slots.switch("2.0.0")
    assert slots.current() == "1.1.0"
    partial = slots.partial("1.3.0")
    make_slot(partial)
    # Keep the current one and the one before it; hidden leftovers go too.
    assert sorted(slots.clean({"1.1.0"}, keep_previous=1)) == [".partial-1.3.0", "1.0.0"]
    assert slots.versions() == ["1.1.0", "1.2.0"]


def test_publishing_a_version_again_replaces_it_whole(tmp_path: Path) -> None:
    slots = Slots(tmp_path)
    make_slot(slots.path("1.1.0"), "print('old')\n")
    partial = slots.partial("1.1.0")
    make_slot(partial, "print('new')\n")
    slots.publish(partial, "1.1.0")
    assert "new" in slots.launcher("1.1.0").read_text()
    assert [p.name for p in slots.releases.iterdir()] == ["1.1.0"]


def test_the_journal_is_written_whole(tmp_path: Path) -> None:
    journal = UpdateJournal(tmp_path / "update.json")
    assert journal.read() is None
    record = journal.write(UpdateRecord("cmd-00000001", "1.0.0", "1.1.0", "staging"))
    assert journal.read() == record
    journal.write(record.but(phase="trial", starts=1))
    assert journal.read() == record.but(phase="trial", starts=1)
    assert not (tmp_path / "update.json.tmp").exists()
    (tmp_path / "update.json").write_text("{not json")
    assert journal.read() is None  # unreadable: dropped, with an error logged
    assert not (tmp_path / "update.json").exists()
