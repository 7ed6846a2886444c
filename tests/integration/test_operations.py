"""What technicians and operators do to a running agent: read its logs (secrets redacted),
restart it remotely, reload its trusted keys with SIGHUP, and ask it for its status."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.keys import SigningKey
from protocol.signing import sign
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_cli,
    command,
    occurrences,
    provision,
    wait_for,
    wait_state,
)

# The broker allows anonymous clients, so it accepts (and ignores) this password.
PASSWORD = "Xk9-ward-s3cret-pw"
SETTLE_S = 1.5


@pytest.fixture
def secret_device(tmp_path: Path, broker: Broker, signing_key: SigningKey) -> Device:
    return provision(
        tmp_path,
        broker,
        signing_key,
        mqtt_extra=f'username = "q10-p12"\npassword = "{PASSWORD}"\n',
    )


@pytest.fixture
def secret_agent(secret_device: Device) -> Iterator[AgentProcess]:
    proc = AgentProcess(secret_device).start()
    yield proc
    proc.stop()


def _online(broker: Broker, device: Device, listener: Listener | None = None) -> None:
    if listener is not None:
        wait_state(listener, device.device_id, online=True, timeout=15)
        return
    with Listener(broker, [f"{PREFIX}/dev/{device.device_id}/state"]) as fresh:
        wait_state(fresh, device.device_id, online=True, timeout=15)


def _forged(key: SigningKey, kid: str) -> bytes:
    """A command whose (untrusted) key id carries text that must never reach a log unredacted.

    Built by hand: the control plane itself refuses such a key id."""
    _, _, doc = command(key, "ping")
    return json.dumps(sign({**doc, "kid": kid}, key.key)).encode()


def test_logs_upload_redacts_secrets(
    broker: Broker, secret_device: Device, secret_agent: AgentProcess, signing_key: SigningKey
) -> None:
    device = secret_device
    subs = [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/logs/+", f"{PREFIX}/dev/+/state"]
    with Listener(broker, subs) as listener:
        _online(broker, device, listener)
        topic, _, _ = command(signing_key, "ping")
        # Attacker-chosen text is logged with the rejection: the known secret, and something
        # that merely looks like a credential.
        listener.publish(topic, _forged(signing_key, PASSWORD))
        listener.publish(topic, _forged(signing_key, "password=hunter2"))
        wait_for(
            lambda: len([a for a in listener.acks() if a["reason"] == "unknown_key"]) == 2,
            10,
            "both forged commands to be rejected",
        )

        _, payload, doc = command(signing_key, "logs.upload", body={"lines": 500})
        listener.publish(topic, payload)
        ack = listener.wait_ack(doc["id"], "done")
        logs_topic = f"{PREFIX}/dev/{device.device_id}/logs/{doc['id']}"

        def uploaded() -> bytes | None:
            return next((p for t, p, _ in listener.drain() if t == logs_topic), None)

        text = wait_for(uploaded, 10, f"the log text on {logs_topic}").decode("utf-8")

    assert ack["detail"].endswith("lines")
    assert f"starting as {device.device_id}" in text
    assert text.count("unknown_key") >= 2
    assert PASSWORD not in text
    assert "hunter2" not in text
    assert "***" in text
    # Nor was it ever written to disk or to stderr (journald).
    for path in (device.state_dir / "agent.log", secret_agent.output):
        assert PASSWORD not in path.read_text(errors="replace"), path
        assert "hunter2" not in path.read_text(errors="replace"), path


def test_agent_restart_reexecutes_and_acks_done(
    broker: Broker, device: Device, agent: AgentProcess, signing_key: SigningKey
) -> None:
    assert agent.proc is not None
    pid = agent.proc.pid
    subs = [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]
    with Listener(broker, subs) as listener:
        seen = wait_state(listener, device.device_id, online=True, timeout=15)
        topic, payload, doc = command(signing_key, "agent.restart")
        listener.publish(topic, payload)
        assert listener.wait_ack(doc["id"], "accepted")["detail"] == "restarting"
        done = listener.wait_ack(doc["id"], "done", timeout=20)
        assert done["detail"] == "agent restarted"
        # It went offline cleanly and came back.
        seen = wait_state(listener, device.device_id, online=False, after=seen)
        wait_state(listener, device.device_id, online=True, after=seen)

        time.sleep(SETTLE_S)
        # The restart command was PUBACKed before the restart: it is not delivered again.
        assert [a["status"] for a in listener.acks(doc["id"])] == ["accepted", "done"]

    assert agent.proc.poll() is None
    assert agent.proc.pid == pid
    assert occurrences(agent.output, f"starting as {device.device_id}") == 2
    status = agent_cli("status", "--json", "--config", str(device.config))
    assert status.returncode == 0, status.stderr


def test_sighup_reload_trusts_a_new_key_without_restart(
    broker: Broker, device: Device, agent: AgentProcess, signing_key: SigningKey
) -> None:
    assert agent.proc is not None
    pid = agent.proc.pid
    new_key = SigningKey.generate("hcm-2027")
    log = device.state_dir / "agent.log"
    with Listener(broker, [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]) as listener:
        _online(broker, device, listener)
        topic, payload, doc = command(new_key, "ping")
        listener.publish(topic, payload)
        refused = listener.wait_ack(doc["id"], "rejected")
        assert refused["reason"] == "unknown_key"

        original = device.config.read_text()
        # A broken edit is refused on reload; the running configuration stays.
        device.config.write_text(original + '\n[log]\nlevl = "DEBUG"\n')
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: occurrences(log, "reload refused"), 10, "the bad reload to be refused")
        assert occurrences(log, "unknown key 'log.levl'") >= 1
        topic, old_ok, old_doc = command(signing_key, "ping")
        listener.publish(topic, old_ok)
        assert listener.wait_ack(old_doc["id"])["status"] == "done"

        device.config.write_text(
            original.replace(
                "[trust.keys]\n", f'[trust.keys]\n{new_key.kid} = "{new_key.public_b64}"\n'
            )
        )
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: occurrences(log, "reloaded: 2 trusted keys"), 10, "the reload")

        listener.publish(topic, payload)  # the very same document, now from a trusted key
        assert listener.wait_ack(doc["id"], "done")["reason"] is None

    assert agent.proc.poll() is None
    assert agent.proc.pid == pid
    assert occurrences(agent.output, f"starting as {device.device_id}") == 1


def test_control_socket_mode_and_status_table(agent: AgentProcess, device: Device) -> None:
    mode = os.stat(device.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660

    wait_for(
        lambda: "connected," in agent_cli("status", "--config", str(device.config)).stdout,
        10,
        "the status table to show the link up",
    )
    out = agent_cli("status", "--config", str(device.config))
    assert out.returncode == 0, out.stderr
    table = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    # Two-word keys ("disk free") split differently; the rest are single words.
    assert table["device"].startswith(f"{device.device_id} (agent ")
    assert "connected" in table["broker"]
    assert "NOT CONNECTED" not in table["broker"]
    assert table["volume"].strip() == "70%"
    for key in ("uptime", "screen", "speaker", "programs", "cache", "outbox"):
        assert key in table, out.stdout


def test_status_without_a_running_agent(device: Device) -> None:
    out = agent_cli("status", "--config", str(device.config))
    assert out.returncode != 0
    assert "not running" in out.stderr
    assert "Traceback" not in out.stderr

    # A crash leaves the socket file behind: still a clear answer, not a traceback.
    agent = AgentProcess(device).start()
    agent.kill()
    assert device.socket.exists()
    stale = agent_cli("status", "--json", "--config", str(device.config))
    assert stale.returncode != 0
    assert "not running" in stale.stderr
    assert stale.stdout == ""
    # And the next start clears the stale socket and serves again.
    agent.start()
    try:
        assert agent_cli("status", "--config", str(device.config)).returncode == 0
    finally:
        assert agent.stop() == 0
