"""Presence on the retained state topic: birth, last will after a crash, offline on SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import DeviceState
from tests.helpers import PREFIX, AgentProcess, Broker, Device, Listener, states, wait_state

# The test config's keepalive is 10 s; the broker publishes the will within 1.5 keepalives
# even when it does not see the socket close.
WILL_TIMEOUT_S = 20


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """This module's broker logs every packet, to tell the agent's publication from a will."""
    b = Broker(tmp_path / "broker", extra="log_type all").start()
    yield b
    b.stop()


def test_last_will_after_sigkill_and_birth_after_restart(
    broker: Broker, device: Device, agent: AgentProcess
) -> None:
    with Listener(broker, [f"{PREFIX}/dev/+/state"]) as listener:
        seen = wait_state(listener, device.device_id, online=True, timeout=15)
        birth = states(listener, device.device_id)[-1]
        assert birth["device"] == device.device_id
        assert birth["groups"] == device.groups
        assert birth["agent_version"]
        assert "ping" in birth["capabilities"]

        agent.kill()
        seen = wait_state(
            listener, device.device_id, online=False, after=seen, timeout=WILL_TIMEOUT_S
        )
        will = states(listener, device.device_id)[-1]
        assert will == {"v": 1, "online": False, "device": device.device_id}

        # The will is retained: a subscriber arriving now learns the device is offline.
        with Listener(broker, [f"{PREFIX}/dev/{device.device_id}/state"]) as late:
            wait_state(late, device.device_id, online=False)
            assert states(late, device.device_id)[-1] == will

        agent.start()
        wait_state(listener, device.device_id, online=True, after=seen, timeout=15)

    # A new subscriber reads the retained state: the device is online again.
    with Listener(broker, [f"{PREFIX}/dev/{device.device_id}/state"]) as fresh:
        wait_state(fresh, device.device_id, online=True)
        assert states(fresh, device.device_id)[-1]["online"] is True


def test_sigterm_publishes_offline_itself_and_exits_zero(
    broker: Broker, device: Device, agent: AgentProcess
) -> None:
    with Listener(broker, [f"{PREFIX}/dev/+/state"]) as listener:
        seen = wait_state(listener, device.device_id, online=True, timeout=15)
        assert agent.stop(signal.SIGTERM) == 0
        wait_state(listener, device.device_id, online=False, after=seen, timeout=10)

    # It was the agent's own publication, not the will: the offline state came in a PUBLISH
    # from the agent just before a clean DISCONNECT (after which a broker never sends a will).
    offline = DeviceState(online=False, device=device.device_id).payload()
    lines = broker.log.read_text(errors="replace").splitlines()
    state_topic = f"'{PREFIX}/dev/{device.device_id}/state'"
    disconnect = next(
        i for i, line in enumerate(lines) if f"Received DISCONNECT from {device.device_id}" in line
    )
    published = [
        line
        for line in lines[:disconnect]
        if f"Received PUBLISH from {device.device_id} " in line and state_topic in line
    ]
    assert published[-1].endswith(f"({len(offline)} bytes))"), published
    assert not any(f"Client {device.device_id} closed its connection" in x for x in lines)

    with Listener(broker, [f"{PREFIX}/dev/{device.device_id}/state"]) as fresh:
        wait_state(fresh, device.device_id, online=False)
        assert states(fresh, device.device_id)[-1] == {
            "v": 1,
            "online": False,
            "device": device.device_id,
        }
