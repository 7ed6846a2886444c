"""Fixtures: a real Mosquitto per test module area, signing keys, provisioned devices."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.controlplane import SigningKey
from tests.helpers import AgentProcess, Broker, Device, provision

# Importing pygame or SDL later must never try to open a real display or sound card.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("hcm-2026")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: run `make setup`")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def device(tmp_path: Path, broker: Broker, signing_key: SigningKey) -> Device:
    return provision(tmp_path, broker, signing_key)


@pytest.fixture
def agent(device: Device) -> Iterator[AgentProcess]:
    proc = AgentProcess(device).start(wait_online=True)
    yield proc
    proc.stop()
