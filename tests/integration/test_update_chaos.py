"""SIGKILL at random moments of ``agent.update`` (download, unpack, the trial start, the switch
of ``current``), round after round, alternating A -> B and B -> A: after every kill the
supervisor (``Restart=always``) starts ``current`` again, and once the update has settled the
agent runs A or B, the one ``current`` names, from a complete slot.

20 rounds in ``make test``; 200 behind ``make chaos`` (marker ``slow``). The kill moments are
random but seeded (the seed is in the failure message).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.keys import SigningKey
from tests.helpers import PREFIX, Broker, Device, Listener, MediaServer, wait_for
from tests.update_rig import (
    A,
    B,
    Releases,
    Supervisor,
    provision_updatable,
    send_update,
    settled,
    wait_settled,
)


@pytest.fixture
def rig(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> Iterator[tuple[Releases, Device, Supervisor, Listener, MediaServer]]:
    release_key = SigningKey.generate("rel-chaos")
    releases = Releases(tmp_path, release_key)
    device = provision_updatable(tmp_path, broker, signing_key, release_key, releases.root)
    with MediaServer() as media, Listener(broker, [f"{PREFIX}/dev/+/ack"]) as listener:
        supervisor = Supervisor(device, releases.root).start()
        try:
            yield releases, device, supervisor, listener, media
        finally:
            supervisor.stop()


def _files(slot: Path) -> set[str]:
    return {p.relative_to(slot).as_posix() for p in slot.rglob("*") if "__pycache__" not in p.parts}


def run_rounds(
    rig: tuple[Releases, Device, Supervisor, Listener, MediaServer],
    signing_key: SigningKey,
    rounds: int,
    seed: int,
) -> dict[str, int]:
    releases, device, supervisor, listener, media = rig
    rng = random.Random(seed)
    artifacts = {v: releases.artifact(v) for v in (A, B)}
    reference = _files(releases.slots.path(A))
    outcomes: dict[str, int] = {}
    running = wait_settled(device, releases.slots, 30)
    # One update without a kill, timed: the kills are spread over that span (and a little
    # beyond), however fast or loaded the machine is.
    started = time.monotonic()
    send_update(listener, signing_key, media, artifacts[B])
    wait_for(lambda: settled(device, releases.slots) == B, 120, "the untimed update")
    span = max(2.0, 1.2 * (time.monotonic() - started))
    running = B
    for n in range(rounds):
        target = B if running == A else A
        send_update(listener, signing_key, media, artifacts[target])
        # Half the kills in the first fifth (the download, the unpacking: short here), the
        # others anywhere in the update (the restart, the trial start, the switch).
        time.sleep(rng.uniform(0, span / 5 if n % 2 else span))
        supervisor.kill()
        running = wait_settled(device, releases.slots, 90)
        why = f"round {n} (seed {seed})"
        assert running in (A, B), why
        current = os.readlink(releases.slots.current_link)
        assert current == f"releases/{running}", why
        for version in releases.slots.versions():
            assert _files(releases.slots.path(version)) == reference, f"{why}: {version} whole"
        init = releases.slots.path(running) / "lib/agent/__init__.py"
        assert f'__version__ = "{running}"' in init.read_text(), why
        outcome = "switched" if running == target else "stayed"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@pytest.mark.timeout(900)
def test_sigkill_during_updates(
    rig: tuple[Releases, Device, Supervisor, Listener, MediaServer], signing_key: SigningKey
) -> None:
    seed = random.randrange(1 << 30)
    outcomes = run_rounds(rig, signing_key, 20, seed)
    assert sum(outcomes.values()) == 20


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_sigkill_during_updates_long(
    rig: tuple[Releases, Device, Supervisor, Listener, MediaServer], signing_key: SigningKey
) -> None:
    seed = random.randrange(1 << 30)
    outcomes = run_rounds(rig, signing_key, 200, seed)
    assert sum(outcomes.values()) == 200
