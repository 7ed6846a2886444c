"""The agent behind a flapping 3G-like link (tests/proxy.py): delays, stalls, drops, refusals
and half-open connections for two minutes while commands keep arriving. Every command runs
once, every ack and playlog entry arrives (by id), the screen always shows something, and a
half-open connection is noticed within 1.5 keepalives. ``make soak`` runs it for 30 minutes.
"""

from __future__ import annotations

import os
from pathlib import Path

from controlplane.keys import SigningKey
from tests.flapping import run_flapping

DURATION_S = float(os.environ.get("TTCS_FLAP_S", "95"))


def test_flapping_link_loses_and_repeats_nothing(tmp_path: Path, signing_key: SigningKey) -> None:
    seed = int(os.environ.get("TTCS_FLAP_SEED", "13"))
    result = run_flapping(tmp_path, signing_key, DURATION_S, seed)
    print("\n" + result.table())
    assert len(result.sent) >= 10, result.table()
    assert result.faults["half_open"] + result.faults["drop"] >= 1, result.table()
    assert not result.problems, result.table()
