"""The slot installer (agent/installer.py): what a request does to ``ROOT``, and what it refuses
while changing nothing. Requests go through the files, as between the agent and the root unit."""

from __future__ import annotations

import json
import tarfile
import threading
from pathlib import Path

import pytest

from agent.config import AgentConfig, parse_config
from agent.installer import (
    REQUEST,
    RESULT,
    DirectWriter,
    HelperWriter,
    apply_pending,
    requests_dir,
    slot_writer,
)
from agent.slots import Slots, dpkg_version
from controlplane.keys import SigningKey
from protocol.release import ReleaseError, pack_slot

OLD, NEW = "1.0.0", "1.1.0"


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.key = SigningKey.generate("rel")
        self.config: AgentConfig = parse_config(
            {
                "device_id": "q10-p12-bang-01",
                "paths": {"state_dir": str(tmp / "state"), "cache_dir": str(tmp / "cache")},
                "update": {
                    "root": str(tmp / "opt"),
                    "release_keys": {"rel": self.key.public_b64},
                },
            }
        )
        self.tmp = tmp
        self.slots = Slots(self.config.update.root)
        self.slots.dpkg_status = tmp / "dpkg-status"
        launcher = self.slots.launcher(OLD)
        launcher.parent.mkdir(parents=True)
        launcher.write_text("#!/bin/sh\n")
        self.slots.switch(OLD)
        requests_dir(self.config).mkdir(parents=True)

    def artifact(self, version: str, where: Path | None = None) -> Path:
        slot = self.tmp / "build" / version
        (slot / "bin").mkdir(parents=True, exist_ok=True)
        (slot / "bin" / "ttcs-agent").write_text(f"#!/bin/sh\necho {version}\n")
        out = (where or self.config.paths.cache_dir / "ab" / "cd") / f"{version}.release"
        out.parent.mkdir(parents=True, exist_ok=True)
        pack_slot(slot, version, out, self.key.key, self.key.kid)
        return out

    def ask(self, request: object, raw: bytes | None = None) -> dict[str, object]:
        folder = requests_dir(self.config)
        data = raw if raw is not None else json.dumps(request).encode()
        (folder / REQUEST).write_bytes(data)
        assert apply_pending(self.config) == 0
        assert not (folder / REQUEST).exists()
        answer: dict[str, object] = json.loads((folder / RESULT).read_text())
        return answer

    def entries(self) -> list[str]:
        return sorted(p.name for p in self.slots.releases.iterdir())


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_install_commit_remove(rig: Rig) -> None:
    artifact = rig.artifact(NEW)
    req = {"id": "r1", "op": "install", "version": NEW, "artifact": str(artifact)}
    assert rig.ask(req) == {"id": "r1", "ok": True, "kid": "rel"}
    assert rig.slots.launcher(NEW).read_text() == f"#!/bin/sh\necho {NEW}\n"
    assert rig.entries() == [OLD, NEW]
    assert rig.slots.current() == OLD
    assert rig.ask({"id": "r2", "op": "commit", "version": NEW})["ok"] is True
    assert rig.slots.current() == NEW
    assert rig.ask({"id": "r3", "op": "remove", "version": OLD})["ok"] is True
    assert rig.entries() == [NEW]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("tampered", "release_tampered"),
        ("outside", "outside_cache"),
        ("link", "outside_cache"),
        ("other_version", "release_mismatch"),
        ("in_use", "in_use"),
    ],
)
def test_install_refusals_change_nothing(rig: Rig, change: str, reason: str) -> None:
    artifact, version = rig.artifact(NEW), NEW
    if change == "tampered":
        with tarfile.open(artifact) as tar:
            member = tar.getmember("slot.tar.gz")
        data = bytearray(artifact.read_bytes())
        data[member.offset_data + member.size // 2] ^= 0xFF  # inside the payload
        artifact.write_bytes(bytes(data))
    elif change == "outside":
        artifact = rig.artifact(NEW, where=rig.tmp / "elsewhere")
    elif change == "link":
        link = rig.config.paths.cache_dir / "ab" / "link.release"
        link.symlink_to(rig.artifact(NEW, where=rig.tmp / "elsewhere"))
        artifact = link
    elif change == "other_version":
        version = "1.2.0"
    else:
        version = OLD
    req = {"id": "x", "op": "install", "version": version, "artifact": str(artifact)}
    answer = rig.ask(req)
    assert (answer["ok"], answer["reason"]) == (False, reason), answer
    assert rig.entries() == [OLD]
    assert rig.slots.current() == OLD


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"op": "commit", "version": "1.0.0"}',
        json.dumps({"id": "a", "op": "remove", "version": "../../etc"}).encode(),
        json.dumps({"id": "a", "op": "remove", "version": ".partial-1.0.0"}).encode(),
        json.dumps({"id": "a", "op": "chmod", "version": OLD}).encode(),
        json.dumps({"id": "a", "op": "install", "version": NEW}).encode(),
        b'{"id": "' + b"x" * 5000 + b'"}',
    ],
)
def test_malformed_requests_are_answered_and_change_nothing(rig: Rig, raw: bytes) -> None:
    answer = rig.ask(None, raw=raw)
    assert (answer["ok"], answer["reason"]) == (False, "bad_request"), answer
    assert rig.entries() == [OLD]
    assert rig.slots.current() == OLD


def test_commit_needs_a_slot_and_remove_spares_current_and_dpkg(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rig.ask({"id": "c", "op": "commit", "version": "7.0"})["reason"] == "no_slot"
    assert rig.ask({"id": "r", "op": "remove", "version": OLD})["reason"] == "in_use"
    rig.ask({"id": "i", "op": "install", "version": NEW, "artifact": str(rig.artifact(NEW))})
    rig.ask({"id": "c", "op": "commit", "version": NEW})
    rig.slots.dpkg_status.write_text(
        "Package: other\nStatus: install ok installed\nVersion: 9\n\n"
        f"Package: ttcs-agent\nStatus: install ok installed\nVersion: {OLD}\n"
    )
    # The installer reads the system's dpkg status; here, this test's.
    monkeypatch.setattr("agent.installer.DPKG_STATUS", rig.slots.dpkg_status)
    assert rig.ask({"id": "r", "op": "remove", "version": OLD})["reason"] == "dpkg_slot"
    assert rig.entries() == [OLD, NEW]
    assert rig.slots.stale({NEW}, keep_previous=0) == []


def test_dpkg_version_reads_installed_only(tmp_path: Path) -> None:
    status = tmp_path / "status"
    assert dpkg_version(status) is None
    status.write_text("Package: ttcs-agent\nStatus: deinstall ok config-files\nVersion: 0.1.0\n")
    assert dpkg_version(status) is None
    status.write_text("Package: ttcs-agent\nStatus: install ok installed\nVersion: 0.2.0\n")
    assert dpkg_version(status) == "0.2.0"


def test_helper_round_trip_and_timeout(rig: Rig) -> None:
    helper = HelperWriter(rig.config, timeout_s=30)
    folder = requests_dir(rig.config)
    stop = threading.Event()

    def installer() -> None:  # what the path unit does: run once a request is there
        while not stop.wait(0.05):
            if (folder / REQUEST).exists():
                apply_pending(rig.config)

    thread = threading.Thread(target=installer)
    thread.start()
    try:
        assert helper.install(rig.artifact(NEW), NEW, 0) == "rel"
        helper.commit(NEW)
        with pytest.raises(ReleaseError) as refused:
            helper.remove(NEW)
        assert refused.value.reason == "in_use"
    finally:
        stop.set()
        thread.join()
    assert rig.slots.current() == NEW
    with pytest.raises(ReleaseError) as late:
        HelperWriter(rig.config, timeout_s=0.3).commit(OLD)
    assert late.value.reason == "installer_timeout"
    assert not (folder / REQUEST).exists()  # withdrawn


def test_auto_picks_direct_when_writable(rig: Rig) -> None:
    assert isinstance(slot_writer(rig.config), DirectWriter)
    helper = rig.config.model_copy(
        update={"update": rig.config.update.model_copy(update={"installer": "helper"})}
    )
    assert isinstance(slot_writer(helper), HelperWriter)
