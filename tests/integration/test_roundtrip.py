"""A signed command travels through a real Mosquitto to a real agent process and is acked."""

from __future__ import annotations

import json
import subprocess
import sys

from controlplane.keys import SigningKey
from tests.helpers import PREFIX, AgentProcess, Broker, Device, Listener, command, wait_state


def test_ping_is_acked_done(broker: Broker, agent: AgentProcess, signing_key: SigningKey) -> None:
    with Listener(broker, [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]) as listener:
        # Online (its birth follows its SUBSCRIBE) means a command sent now reaches it.
        wait_state(listener, agent.device.device_id, online=True, timeout=15)
        topic, payload, doc = command(signing_key, "ping")
        listener.publish(topic, payload)
        ack = listener.wait_ack(doc["id"])
    assert ack["status"] == "done"
    assert ack["reason"] is None


def test_status_json_from_cli(agent: AgentProcess, device: Device) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--json", "--config", str(device.config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status = json.loads(out.stdout)
    assert status["v"] == 1
    assert status["volume"] == 70
