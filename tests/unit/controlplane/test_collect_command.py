"""``ttcs-control collect --db URL``: the database collector, from the operators' command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane.cli import main
from controlplane.store import Store
from tests.helpers import Broker, Listener, wait_for
from tests.unit.controlplane.util import ingest_state

DEV = "q10-p12-loa-01"


def test_collect_with_db_stores_the_retained_state(tmp_path: Path, broker: Broker) -> None:
    state = {"v": 1, "online": True, "device": DEV, "groups": ["q10-p12", "q10"]}
    topic = f"ttcs/v1/dev/{DEV}/state"
    with Listener(broker, [topic]) as listener:
        listener.publish(topic, json.dumps(state).encode(), True)
        wait_for(listener.drain, 10, "the retained state on the broker")
    db = f"sqlite:{tmp_path / 'control.db'}"
    argv = ["collect", "--db", db, "--broker", broker.url, "--duration", "0.5"]
    assert main([*argv, "--client-id", "test-collector", "--group", "g1"]) == 0
    with Store.open(db) as store:
        assert [(d.device, d.ward, d.online) for d in store.devices()] == [(DEV, "q10-p12", True)]


def test_collect_needs_a_file_or_a_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "--broker", "mqtt://127.0.0.1:1"]) == 2
    assert "--out FILE" in capsys.readouterr().err


def test_fleet_with_db_lists_devices_now_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:{tmp_path / 'control.db'}"
    with Store.open(db) as store:
        ingest_state(store, DEV, ["q10-p12", "q10"], received_ms=1_764_000_000_000)
        ingest_state(store, DEV, None, received_ms=1_764_000_060_000)  # its last will
    # No broker at that address: the table comes from the store alone.
    assert main(["fleet", "--db", db, "--broker", "mqtt://127.0.0.1:1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0][:5] == ["DEVICE", "ONLINE", "LAST", "SEEN", "VERSION"]
    assert rows[1][:5] == [DEV, "NO", "2025-11-24T16:01:00Z", "—", "q10-p12,q10"]
