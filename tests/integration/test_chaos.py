"""The agent SIGKILLed at random moments while it downloads a new program's media and while it
switches programs, again and again: after every restart the live program is wholly the old or
wholly the new one, no partial file sits at a final cache path, and with the broker down the
agent boots and plays from its cache.

Timings are random but seeded (the seed is in the failure message), so a failure can be
replayed with the same choices; the process timing itself stays real.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    MediaServer,
    agent_errors,
    agent_status,
    cache_path,
    media_doc,
    misplaced_files,
    program,
    provision,
    sha256_hex,
    wait_for,
)

DEV = "q10-p12-bang-01"
PROGRAM_TOPIC = f"{PREFIX}/dev/{DEV}/program"
# Room for two versions (at most 2.8 MB each) but not for many: older content is evicted while
# the kills go on, and never the live or the pending program's.
QUOTA = 8 * 1024 * 1024


@pytest.fixture
def device(tmp_path: Path, broker: Broker, signing_key: SigningKey) -> Device:
    return provision(tmp_path, broker, signing_key, extra=f"[cache]\nquota_bytes = {QUOTA}")


@dataclass
class Version:
    """One program version: its bulletins' ids and the content its files must hold."""

    number: int
    doc_id: str
    bulletin_ids: list[str]
    files: dict[str, bytes]  # sha256 -> content


def make_version(
    rng: random.Random, media: MediaServer, number: int, shared: dict[str, bytes]
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Bulletins with three new image files (and the files in ``shared`` again)."""
    files = dict(shared)
    bulletins = []
    for n in range(3):
        data = rng.randbytes(rng.randint(200_000, 700_000))
        url = media.add(f"v{number}/anh-{n}.png", data)
        files[sha256_hex(data)] = data
        bulletins.append(
            {
                "id": f"tb-v{number}-{n}",
                "title": f"Thông báo số {n + 1}",
                "screen": {"kind": "image", "media": media_doc(url, data, "image/png")},
            }
        )
    for n, (digest, data) in enumerate(shared.items()):
        url = media.add(f"shared/{digest[:12]}.png", data)
        bulletins.append(
            {
                "id": f"tb-v{number}-chung-{n}",
                "title": "Thông báo chung",
                "screen": {"kind": "image", "media": media_doc(url, data, "image/png")},
            }
        )
    return bulletins, files


def assert_cached(device: Device, version: Version) -> None:
    for digest, data in version.files.items():
        path = cache_path(device.cache_dir, digest)
        assert path.is_file(), f"v{version.number} is live but {digest[:12]}… is not cached"
        assert sha256_hex(path.read_bytes()) == digest, f"{path} does not hash to its name"
        assert path.stat().st_size == len(data)


def partial_sizes(device: Device) -> dict[str, int]:
    """The parts of downloads in progress: file name -> bytes."""
    folder = device.cache_dir / ".partial"
    if not folder.exists():
        return {}
    return {p.name: p.stat().st_size for p in folder.iterdir()}


def run_chaos(
    broker: Broker, device: Device, key: SigningKey, rounds: int, seed: int
) -> dict[str, int]:
    rng = random.Random(seed)
    seen = {"old": 0, "new": 0, "download": 0, "switch": 0, "resumed": 0}
    with MediaServer() as media, Listener(broker, [f"{PREFIX}/dev/+/ack"]) as listener:
        agent = AgentProcess(device).start(wait_online=True)
        try:
            bulletins, files = make_version(rng, media, 1, {})
            _, payload, doc = program(key, 1, bulletins)
            started = time.monotonic()
            listener.publish(PROGRAM_TOPIC, payload, retain=True)
            listener.wait_ack(doc["id"], "done", timeout=20)
            # How long a switch takes here, from the push to the ack: kills in "switch" rounds
            # land anywhere from before the program arrives until after it went live.
            latency = time.monotonic() - started
            old = Version(1, doc["id"], [b["id"] for b in bulletins], files)

            for index in range(rounds):
                where = f"seed {seed}, round {index}"
                number = old.number + 1
                shared = dict([rng.choice(list(old.files.items()))])
                bulletins, files = make_version(rng, media, number, shared)
                mode = rng.choice(("download", "switch"))
                seen[mode] += 1
                release: threading.Event | None = None
                offset = rng.randint(1, 199_999)  # below the smallest file's size
                if mode == "download":
                    # The first file to come is held part-way; the agent dies while waiting.
                    release = media.stall_after(offset)
                before = len(media.served)
                _, payload, doc = program(key, number, bulletins)
                listener.publish(PROGRAM_TOPIC, payload, retain=True)
                new = Version(number, doc["id"], [b["id"] for b in bulletins], files)
                if mode == "download":

                    def stalled(after: int = before, at: int = offset) -> bool:
                        return any(s.bytes_sent == at for s in media.served[after:])

                    wait_for(stalled, 15, f"the download to stall ({where})")
                    time.sleep(rng.uniform(0, 0.3))
                else:
                    time.sleep(rng.uniform(0, 3 * latency))
                agent.kill()
                if release is not None:
                    release.set()
                assert misplaced_files(device.cache_dir) == [], where
                kept = partial_sizes(device)

                # Offline: the broker is down, and downloads hang (the next response is held).
                broker.stop()
                hold = media.stall_after(0)
                agent.start()
                status = agent_status(device)
                assert status["link"]["connected"] is False, where
                live = status["programs"].get(PROGRAM_TOPIC)
                assert live in (old.number, new.number), f"{where}: programs {status['programs']}"
                if mode == "download":
                    assert live == old.number, f"{where}: v{live} live without all its content"
                current = new if live == new.number else old
                seen["new" if current is new else "old"] += 1
                assert status["now"]["screen"] in current.bulletin_ids, (
                    f"{where}: v{live} is live but the screen shows {status['now']['screen']}"
                )
                assert_cached(device, current)
                assert misplaced_files(device.cache_dir) == [], where
                assert status["cache"]["bytes"] <= QUOTA, where

                # Back online: the new program goes live, wholly.
                broker.start()
                hold.set()

                def switched(target: Version = new) -> bool:
                    status = agent_status(device)
                    return bool(
                        status["programs"].get(PROGRAM_TOPIC) == target.number
                        and status["now"]["screen"] in target.bulletin_ids
                    )

                wait_for(switched, 30, f"v{number} to go live ({where})")
                # What a killed download left behind was resumed, not fetched again.
                ranges = {s.range for s in media.served[before:]}
                for name, size in kept.items():
                    whole = len(new.files.get(name.removesuffix(".part"), b""))
                    if 0 < size < whole:  # a whole part is only verified and renamed
                        assert f"bytes={size}-" in ranges, f"{where}: {kept}, {ranges}"
                        seen["resumed"] += 1
                assert_cached(device, new)
                assert misplaced_files(device.cache_dir) == [], where
                old = new
        finally:
            agent.stop()
    # Killed again and again, but never confused: no error in any of its runs.
    errors = agent_errors(agent)
    assert errors == [], "\n".join(errors[:20])
    print(f"chaos, seed {seed}: {seen}")
    return seen


def test_sigkill_during_downloads_and_switches(
    broker: Broker, device: Device, signing_key: SigningKey
) -> None:
    seen = run_chaos(broker, device, signing_key, rounds=5, seed=20261126)
    assert seen["download"] > 0 and seen["switch"] > 0, seen
    assert seen["resumed"] > 0, seen


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_many_times(broker: Broker, device: Device, signing_key: SigningKey) -> None:
    seen = run_chaos(broker, device, signing_key, rounds=40, seed=1975)
    # Forty random kills land both before and after a switch.
    assert seen["old"] > 0 and seen["new"] > 0 and seen["resumed"] > 0, seen
