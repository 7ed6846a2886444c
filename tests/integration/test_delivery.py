"""QoS 1 commands survive the agent being stopped, run exactly once, and stale ones are refused.

The agent keeps a persistent MQTT session, so the broker queues commands sent while it is
down; it acknowledges (PUBACK) a command only after handling it, so it is neither lost nor
executed twice.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_cli,
    command,
    occurrences,
    wait_for,
    wait_state,
)

SETTLE_S = 1.5  # how long "nothing more arrives" is watched for


def _volume(device: Device) -> int:
    out = agent_cli("status", "--json", "--config", str(device.config))
    assert out.returncode == 0, out.stderr
    volume: int = json.loads(out.stdout)["volume"]
    return volume


def test_commands_queued_while_agent_is_stopped_run_once(
    broker: Broker, device: Device, agent: AgentProcess, signing_key: SigningKey
) -> None:
    subs = [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]
    with Listener(broker, subs) as listener:
        # The birth is published after the subscriptions: the session now holds them.
        wait_state(listener, device.device_id, online=True, timeout=15)
        assert agent.stop() == 0

        _, vol_payload, vol = command(signing_key, "volume.set", body={"percent": 42})
        ping_topic, ping_payload, ping = command(signing_key, "ping")
        _, old_payload, old = command(
            signing_key, "ping", ttl_s=60, now=datetime.now(UTC) - timedelta(minutes=10)
        )
        listener.publish(ping_topic, vol_payload)
        listener.publish(ping_topic, ping_payload)
        listener.publish(ping_topic, ping_payload)  # the same id again
        listener.publish(ping_topic, old_payload)
        time.sleep(0.5)  # let the broker queue them before the agent reconnects
        assert listener.acks() == [], "the agent is stopped; nobody may have answered"

        agent.start()
        assert listener.wait_ack(vol["id"], "done", timeout=15)["reason"] is None
        listener.wait_ack(ping["id"], "done")
        duplicate = listener.wait_ack(ping["id"], "duplicate")
        assert duplicate["reason"] == "duplicate"
        expired = listener.wait_ack(old["id"], "rejected")
        assert expired["reason"] == "expired"
        assert _volume(device) == 42

        time.sleep(SETTLE_S)
        assert [a["status"] for a in listener.acks(vol["id"])] == ["done"]
        assert sorted(a["status"] for a in listener.acks(ping["id"])) == ["done", "duplicate"]
        assert [a["status"] for a in listener.acks(old["id"])] == ["rejected"]
        log = device.state_dir / "agent.log"
        assert occurrences(log, f"accepted volume.set {vol['id']}") == 1
        assert occurrences(log, f"accepted ping {ping['id']}") == 1

        # Each command was PUBACKed after handling: a second restart brings none of them back.
        before = len(listener.acks())
        assert agent.stop() == 0
        agent.start()
        wait_for(lambda: _volume(device) == 42, 10, "the agent after its second start")
        time.sleep(SETTLE_S)
        assert listener.acks()[before:] == [], "a handled command was delivered again"
        assert occurrences(log, f"accepted volume.set {vol['id']}") == 1


def test_duplicate_and_expired_while_online(
    broker: Broker, agent: AgentProcess, signing_key: SigningKey
) -> None:
    with Listener(broker, [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]) as listener:
        wait_state(listener, agent.device.device_id, online=True, timeout=15)
        topic, payload, doc = command(signing_key, "ping")
        listener.publish(topic, payload)
        listener.wait_ack(doc["id"], "done")
        listener.publish(topic, payload)
        assert listener.wait_ack(doc["id"], "duplicate")["reason"] == "duplicate"

        _, old_payload, old = command(
            signing_key, "ping", ttl_s=1, now=datetime.now(UTC) - timedelta(seconds=5)
        )
        listener.publish(topic, old_payload)
        expired = listener.wait_ack(old["id"], "rejected")
        assert expired["reason"] == "expired"
        assert expired["detail"].startswith("expired at")

        time.sleep(SETTLE_S)
        assert [a["status"] for a in listener.acks(doc["id"])] == ["done", "duplicate"]
        assert [a["status"] for a in listener.acks(old["id"])] == ["rejected"]
