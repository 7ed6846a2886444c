"""``agent.update`` on a real running agent: real Mosquitto, the artifact from a real HTTP
server, release slots made from this tree, and a supervisor standing in for systemd's
``Restart=always``. A to B; a B that crashes at start and one that never connects come back
to A with ``rolled_back``; a tampered artifact, a wrong sha256, the command key instead of the
release key and a version below the floor are refused with nothing changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.cli import main as control_main
from controlplane.keys import SigningKey
from tests.helpers import PREFIX, Broker, Device, Listener, MediaServer
from tests.update_rig import (
    A,
    B,
    Releases,
    Supervisor,
    last_state_version,
    provision_updatable,
    send_update,
    wait_settled,
)

pytestmark = pytest.mark.timeout(600)  # the machine may be slow; no test waits on timing

DEV = "q10-p12-bang-01"
CRASH = {
    "agent/daemon.py": ("log = logging.getLogger(__name__)", "raise SystemExit('B is broken')")
}
NO_BROKER = {"agent/daemon.py": ("port=m.port,", "port=1,")}


@pytest.fixture(scope="module")
def release_key() -> SigningKey:
    return SigningKey.generate("rel-2026")


@pytest.fixture
def releases(tmp_path: Path, release_key: SigningKey) -> Releases:
    return Releases(tmp_path, release_key)


@pytest.fixture
def device(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    broker: Broker,
    signing_key: SigningKey,
    release_key: SigningKey,
    releases: Releases,
) -> Device:
    """Floor A; a health window of 60 s, or ``request.param`` seconds (indirect)."""
    floor = f'min_version = "{A}"'
    health = int(getattr(request, "param", 60))
    return provision_updatable(
        tmp_path, broker, signing_key, release_key, releases.root, floor, health
    )


@pytest.fixture
def running(device: Device, releases: Releases) -> Iterator[Supervisor]:
    supervisor = Supervisor(device, releases.root).start()
    assert wait_settled(device, releases.slots, 30) == A
    yield supervisor
    supervisor.stop()


@pytest.fixture
def listener(broker: Broker) -> Iterator[Listener]:
    with Listener(
        broker, [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state", f"{PREFIX}/dev/+/logs/+"]
    ) as li:
        yield li


@pytest.fixture
def media() -> Iterator[MediaServer]:
    with MediaServer() as server:
        yield server


def test_update_a_to_b(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    broker: Broker,
    running: Supervisor,
    device: Device,
    releases: Releases,
    listener: Listener,
    media: MediaServer,
    signing_key: SigningKey,
) -> None:
    # Through the operators' command line: a staged rollout to the group (one device, so the
    # canary is all of it).
    artifact = releases.artifact(B)
    url = media.add("releases/b.release", artifact.read_bytes())
    key_file = tmp_path / "control.key"
    signing_key.save(key_file)
    argv = ["update", "push", str(artifact), "--url", url, "--to", "grp:q10", "--canary", "10%",
            "--wait-healthy", "2m", "--broker", broker.url, "--prefix", PREFIX,
            "--key", str(key_file)]  # fmt: skip
    assert control_main(argv) == 0
    table = capsys.readouterr().out
    assert f"{DEV}: done" in table
    assert f"{B}: 1 done, 0 failed, 0 timed out, 0 skipped" in table
    [cmd] = [a["cmd"] for a in listener.acks() if a["status"] == "accepted"]
    assert listener.wait_ack(cmd, "accepted")["detail"] == f"fetching {B}"
    assert listener.wait_ack(cmd, "done")["detail"] == f"{A} -> {B}"
    assert wait_settled(device, releases.slots) == B
    assert releases.slots.current() == B
    assert last_state_version(listener, DEV) == B
    assert sorted(releases.slots.versions()) == [A, B]  # A kept: the way back
    assert not (device.state_dir / "update.json").exists()


@pytest.mark.parametrize(
    "device, patch, why",
    [
        # B dies on import, before it could log anything: only its stderr tells.
        (60, CRASH, "B is broken"),
        # B runs but talks to a port where no broker is.
        (8, NO_BROKER, "not healthy within 8 s: not connected to the broker"),
    ],
    ids=["crashes", "never-connects"],
    indirect=["device"],
)
def test_bad_release_rolls_back(
    running: Supervisor,
    device: Device,
    releases: Releases,
    listener: Listener,
    media: MediaServer,
    signing_key: SigningKey,
    patch: dict[str, tuple[str, str]],
    why: str,
) -> None:
    cmd = send_update(listener, signing_key, media, releases.artifact(B, patch))
    ack = listener.wait_ack(cmd, "failed", timeout=60)
    assert ack["reason"] == "rolled_back"
    assert ack["detail"].startswith(f"{B} rolled back to {A}: ")
    assert why in ack["detail"]
    logs = [p for t, p, _ in listener.drain() if t.endswith(f"/logs/{cmd}")]
    assert logs, "the new version's log is published beside the ack"
    assert f"ttcs-agent {B} starting" in logs[0].decode() or "B is broken" in logs[0].decode()
    assert wait_settled(device, releases.slots) == A
    assert releases.slots.versions() == [A]


def test_refused_changes_nothing(
    running: Supervisor,
    device: Device,
    releases: Releases,
    listener: Listener,
    media: MediaServer,
    signing_key: SigningKey,
    tmp_path: Path,
) -> None:
    good = releases.artifact(B)
    tampered = good.with_name(f"{B}.release")
    data = bytearray(good.read_bytes())
    data[-20_000] ^= 0xFF  # inside the payload, after the signed manifest
    tampered.write_bytes(bytes(data))
    cases = {
        "release_tampered": send_update(listener, signing_key, media, tampered),
    }
    listener.wait_ack(cases["release_tampered"], "failed", timeout=30)
    # The sha256 in the command is not the artifact's.
    cases["hash_mismatch"] = send_update(
        listener, signing_key, media, releases.artifact(B), sha256="0" * 64
    )
    listener.wait_ack(cases["hash_mismatch"], "failed", timeout=30)
    # Signed by the command key, which is no release key.
    cases["release_unknown_key"] = send_update(
        listener, signing_key, media, releases.artifact(B, key=signing_key)
    )
    listener.wait_ack(cases["release_unknown_key"], "failed", timeout=30)
    # Older than the floor (min_version = A): refused before anything is fetched.
    cases["below_floor"] = send_update(listener, signing_key, media, releases.artifact("0.9.0"))
    for reason, cmd in cases.items():
        assert listener.wait_ack(cmd, "failed")["reason"] == reason
    assert releases.slots.versions() == [A]
    assert releases.slots.current() == A
    assert not (device.state_dir / "update.json").exists()
    assert wait_settled(device, releases.slots) == A
