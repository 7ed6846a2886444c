"""The operator's fan-out view against real agents on a real Mosquitto: a live progress line of
the acks, then the devices that did not answer with when they were last seen, from the retained
state and status topics or from the control plane's store; ``--json`` for scripts."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.keys import SigningKey
from controlplane.store import Store
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_status,
    control_cli,
    provision,
    wait_for,
)
from tests.unit.controlplane.util import ingest_state

SILENT = "q10-p14-loa-09"  # its birth is retained, but it no longer answers
OFFLINE = "q10-p15-loa-07"  # offline: only the store still knows it is in q10


def showing(device: Device) -> str | None:
    shown: str | None = agent_status(device)["now"]["screen"]
    return shown


def test_group_send_and_emergency_show_who_answered_and_who_did_not(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> None:
    keyfile = tmp_path / "control.key"
    signing_key.save(keyfile)
    devices = [
        provision(tmp_path, broker, signing_key, device_id=f"q10-p12-loa-0{i}", groups=grp)
        for i, grp in ((1, ("q10-p12", "q10")), (2, ("q10-p12", "q10")))
    ]
    agents = [AgentProcess(d).start(wait_online=True) for d in devices]
    try:
        with Listener(broker, [f"{PREFIX}/dev/{SILENT}/+"]) as listener:
            state = {"v": 1, "online": True, "device": SILENT, "groups": ["q10-p14", "q10"]}
            status = {"v": 1, "at": "2026-12-01T08:00:00Z", "uptime_s": 5, "volume": 70}
            listener.publish(f"{PREFIX}/dev/{SILENT}/state", json.dumps(state).encode(), True)
            listener.publish(f"{PREFIX}/dev/{SILENT}/status", json.dumps(status).encode(), True)
            # Both are on the broker once they come back (the listener leaves before a PUBACK).
            wait_for(lambda: len(listener.drain()) == 2, 10, "the silent device's messages")
        common = ("--broker", broker.url, "--key", str(keyfile))

        sent = control_cli("send", "grp:q10", "ping", "--wait", "4", *common)
        assert sent.returncode == 4, sent.stdout + sent.stderr
        rows = [line.split() for line in sent.stdout.splitlines()]
        assert {r[0]: r[1] for r in rows if r[0] in {d.device_id for d in devices}} == {
            d.device_id: "done" for d in devices
        }
        assert [SILENT, "yes", "2026-12-01T08:00:00Z"] in rows, sent.stdout
        assert "2 done, 0 failed, 0 rejected, 1 waiting of 3" in sent.stderr
        assert "1 device(s) did not answer" in sent.stderr

        # The store knows a member that the broker's retained messages no longer name.
        db = f"sqlite:{tmp_path / 'control.db'}"
        with Store.open(db) as store:
            ingest_state(store, OFFLINE, ["q10-p15", "q10"], received_ms=1_764_000_000_000)
            ingest_state(store, OFFLINE, None, received_ms=1_764_000_060_000)
        start = control_cli(
            "emergency", "start", "--to", "grp:q10", "--title", "Cảnh báo lũ",
            "--text", "Bà con di chuyển lên tầng cao.", "--id", "khan-lu-01",
            "--wait", "5", "--json", "--db", db, *common,
        )  # fmt: skip
        assert start.returncode == 4, start.stdout + start.stderr
        answer = json.loads(start.stdout)
        assert answer["counts"]["done"] == 2 and answer["counts"]["waiting"] == 2
        unanswered = {u["device"]: u for u in answer["unanswered"]}
        assert set(unanswered) == {SILENT, OFFLINE}
        assert unanswered[OFFLINE]["online"] is False
        assert unanswered[OFFLINE]["last_seen"] == "2025-11-24T16:01:00Z"
        wait_for(lambda: all(showing(d) == "khan-lu-01" for d in devices), 10, "the emergency")

        stop = control_cli(
            "emergency", "stop", "--to", "grp:q10", "--ref", answer["cmd"], "--expect", "2",
            *common,
        )  # fmt: skip
        assert stop.returncode == 0, stop.stdout + stop.stderr
        wait_for(lambda: all(showing(d) != "khan-lu-01" for d in devices), 10, "its end")
    finally:
        for agent in agents:
            agent.stop()
