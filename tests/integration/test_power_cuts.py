"""The agent SIGKILLed at random moments of a program switch, an emergency, a volume and power
change, a playlog flush and a store upgrade (tests/integration/power_cuts.py): 10 rounds here,
``make chaos`` runs ``TTCS_CHAOS_ROUNDS`` (500). The seed is in every failure message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controlplane.keys import SigningKey
from tests.helpers import AgentProcess, Broker, Device, agent_errors, provision
from tests.integration.power_cut_report import SCENARIOS
from tests.integration.power_cuts import run_power_cuts

ROUNDS = int(os.environ.get("TTCS_CHAOS_ROUNDS", "500"))
# Room for a few program versions (at most 1.2 MB each): older content is evicted as it goes.
QUOTA = 8 * 1024 * 1024


@pytest.fixture
def device(tmp_path: Path, broker: Broker, signing_key: SigningKey) -> Device:
    return provision(tmp_path, broker, signing_key, extra=f"[cache]\nquota_bytes = {QUOTA}")


def check(figures: dict[str, object], device: Device) -> None:
    assert figures["acks_lost"] == [], figures["acks_lost"]
    assert figures["entries_lost"] == [], figures["entries_lost"]
    assert figures["acks_executed_twice"] == 0
    assert figures["entries_twice"] == 0
    assert figures["left_on_device"] == (0, 0, 0)
    # Killed again and again, but never confused: no error in any of its runs.
    errors = agent_errors(AgentProcess(device))
    assert errors == [], "\n".join(errors[:20])


@pytest.mark.timeout(600)  # about 45 s; more on a busy machine
def test_power_cuts_in_every_scenario(
    broker: Broker, device: Device, signing_key: SigningKey
) -> None:
    figures = run_power_cuts(broker, device, signing_key, rounds=len(SCENARIOS) * 2, seed=2026)
    check(figures, device)
    assert figures["entries"], "no playlog entry arrived: the rounds played nothing"


@pytest.mark.slow
@pytest.mark.timeout(0)
def test_power_cuts_many_times(broker: Broker, device: Device, signing_key: SigningKey) -> None:
    figures = run_power_cuts(broker, device, signing_key, rounds=ROUNDS, seed=1126)
    check(figures, device)
