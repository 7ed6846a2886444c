"""``agent.update`` as on a box installed from the .deb: the agent cannot write its releases
root (a read-only mount in a namespace of its own, no capabilities: what the unit's
``ProtectSystem=strict`` does), and the real root-side installer (``ttcs-agent slots-apply``
from the ``current`` slot, a process of its own, run whenever a request appears, as
``ttcs-agent-slots.path`` does) writes the slots. A tampered release is refused by the
installer's own check; a request for a file outside the cache changes nothing; A to B is done."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.keys import SigningKey
from tests.helpers import PREFIX, Broker, Device, Listener, MediaServer
from tests.update_rig import (
    A,
    B,
    Releases,
    SlotInstaller,
    Supervisor,
    provision_updatable,
    read_only_root,
    send_update,
    wait_settled,
)

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        shutil.which("unshare") is None or shutil.which("setpriv") is None,
        reason="needs unshare and setpriv (util-linux)",
    ),
]


def _sandbox_works(tmp: Path) -> bool:
    probe = [*read_only_root(tmp), "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@pytest.fixture
def packaged(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> Iterator[tuple[Device, Releases, Supervisor, SlotInstaller, SigningKey]]:
    if not _sandbox_works(tmp_path):
        pytest.skip("mount namespaces are refused here (needs root, not an unprivileged container)")
    release_key = SigningKey.generate("rel-2026")
    releases = Releases(tmp_path, release_key)
    device = provision_updatable(tmp_path, broker, signing_key, release_key, releases.root)
    with SlotInstaller(device, releases.root) as installer:
        supervisor = Supervisor(device, releases.root, wrap=read_only_root(releases.root))
        supervisor.start()
        try:
            assert wait_settled(device, releases.slots, 30) == A
            yield device, releases, supervisor, installer, release_key
        finally:
            supervisor.stop()


def test_update_through_the_root_installer(
    packaged: tuple[Device, Releases, Supervisor, SlotInstaller, SigningKey],
    broker: Broker,
    signing_key: SigningKey,
) -> None:
    device, releases, _, installer, _ = packaged
    python = sys.executable
    probe = f"import os; print(os.access({str(releases.slots.releases)!r}, os.W_OK))"
    seen = subprocess.run(
        [*read_only_root(releases.root), str(python), "-c", probe], capture_output=True, text=True
    )
    assert seen.stdout.strip() == "False", "the agent's sandbox must not write the slots"
    with (
        MediaServer() as media,
        Listener(broker, [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]) as listener,
    ):
        good = releases.artifact(B)
        tampered = good.parent / "tampered" / good.name
        tampered.parent.mkdir()
        data = bytearray(good.read_bytes())
        data[-20_000] ^= 0xFF  # inside the payload: the signed manifest does not match it
        tampered.write_bytes(bytes(data))
        cmd = send_update(listener, signing_key, media, tampered)
        assert listener.wait_ack(cmd, "failed", timeout=120)["reason"] == "release_tampered"
        assert any("refused: release_tampered" in run for run in installer.runs)
        assert releases.slots.versions() == [A] and releases.slots.current() == A

        cmd = send_update(listener, signing_key, media, good)
        assert listener.wait_ack(cmd, "done", timeout=180)["detail"] == f"{A} -> {B}"
        assert wait_settled(device, releases.slots) == B
    assert installer.runs[1:] == [
        f"ttcs-agent slots-apply: {op} {B} done" for op in ("install", "commit")
    ]
    assert sorted(releases.slots.versions()) == [A, B]
    log = (device.state_dir / "agent.log").read_text()
    assert f"release {B} (signed by rel-2026) unpacked (helper)" in log

    # A request naming a file outside the cache, by whoever can write the request folder.
    folder = device.state_dir / "slots"
    request = {"id": "evil", "op": "install", "version": "2.0.0", "artifact": str(good)}
    (folder / "request.json").write_text(json.dumps(request))
    installer.apply()
    answer = json.loads((folder / "result.json").read_text())
    assert (answer["id"], answer["ok"], answer["reason"]) == ("evil", False, "outside_cache")
    assert sorted(releases.slots.versions()) == [A, B] and releases.slots.current() == B
