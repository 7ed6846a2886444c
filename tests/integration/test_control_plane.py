"""The operators' ``scripts/ttcs-control`` against real agents: keygen, provision, send, fleet,
watch, program push and group commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from controlplane.keys import SigningKey
from tests.helpers import (
    CONTROL_SCRIPT,
    PREFIX,
    ROOT,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_cli,
    command,
    control_cli,
    wait_for,
    wait_state,
)

KID = "q10-ops-2026"


def _keygen(tmp: Path) -> Path:
    keyfile = tmp / "keys" / "control.key"
    out = control_cli("keygen", "--kid", KID, "--out", str(keyfile))
    assert out.returncode == 0, out.stderr
    assert f'{KID} = "' in out.stdout
    assert keyfile.stat().st_mode & 0o777 == 0o600, "a signing key must be private"
    again = control_cli("keygen", "--kid", KID, "--out", str(keyfile))
    assert again.returncode != 0, "keygen overwrote an existing key"
    return keyfile


def _provision(
    tmp: Path, broker: Broker, keyfile: Path, device_id: str, groups: list[str]
) -> Device:
    base = tmp / device_id
    config = base / "agent.toml"
    group_args = [arg for g in groups for arg in ("--group", g)]
    out = control_cli(
        "provision",
        device_id,
        *group_args,
        "--broker",
        broker.url,
        "--key",
        str(keyfile),
        "--state-dir",
        str(base / "state"),
        "--cache-dir",
        str(base / "cache"),
        "--out",
        str(config),
    )
    assert out.returncode == 0, out.stderr
    check = agent_cli("config", "check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    return Device(device_id, groups, config, base / "state", base / "cache")


def _ctl(broker: Broker, keyfile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return control_cli(*args, "--broker", broker.url, "--key", str(keyfile))


def _rows(stdout: str, device_id: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.startswith(device_id + " ")]


def test_operator_workflow_for_one_device(tmp_path: Path, broker: Broker) -> None:
    keyfile = _keygen(tmp_path)
    device = _provision(tmp_path, broker, keyfile, "q10-p15-loa-01", ["q10-p15", "q10"])
    agent = AgentProcess(device).start()
    try:
        with Listener(broker, [f"{PREFIX}/dev/+/state"]) as listener:
            wait_state(listener, device.device_id, online=True, timeout=15)
        target = f"dev:{device.device_id}"

        ping = _ctl(broker, keyfile, "send", target, "ping")
        assert ping.returncode == 0, ping.stderr
        assert [row[:2] for row in _rows(ping.stdout, device.device_id)] == [
            [device.device_id, "done"]
        ]

        vol = _ctl(broker, keyfile, "send", target, "volume.set", "--body", '{"percent":55}')
        assert vol.returncode == 0, vol.stderr
        assert _rows(vol.stdout, device.device_id)[-1][1] == "done"
        status = agent_cli("status", "--json", "--config", str(device.config))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["volume"] == 55

        bad = _ctl(broker, keyfile, "send", target, "volume.set", "--body", '{"percent":150}')
        assert bad.returncode == 2, "an invalid body must be refused before it is signed"
        assert "percent" in bad.stderr

        fleet = control_cli("fleet", "--broker", broker.url)
        assert fleet.returncode == 0, fleet.stderr
        assert fleet.stdout.splitlines()[0].split()[:2] == ["DEVICE", "ONLINE"]
        assert [row[1] for row in _rows(fleet.stdout, device.device_id)] == ["yes"]
        fleet_json = control_cli("fleet", "--json", "--broker", broker.url)
        assert json.loads(fleet_json.stdout)[device.device_id]["state"]["online"] is True

        program = tmp_path / "program.json"
        program.write_text(
            json.dumps(
                {
                    "version": 1,
                    "bulletins": [
                        {
                            "id": "tb-2026-1126-01",
                            "title": "Thông báo lịch tiêm chủng",
                            "screen": {"kind": "text", "text": "Tiêm chủng thứ Bảy, 7 giờ"},
                        }
                    ],
                    "ticker": ["Phường 15 thông báo"],
                },
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
        push = _ctl(broker, keyfile, "program", "push", str(program), "--to", target, "--wait", "5")
        rows = _rows(push.stdout, device.device_id)
        assert rows, f"no ack for the program: {push.stdout}{push.stderr}"
        # A text-only program has nothing to fetch: accepted, then live at once.
        assert [row[1] for row in rows] == ["accepted", "done"], rows
        assert push.returncode == 0
        status = json.loads(agent_cli("status", "--json", "--config", str(device.config)).stdout)
        assert status["programs"] == {f"{PREFIX}/dev/{device.device_id}/program": 1}
        assert status["now"]["screen"] == "tb-2026-1126-01"

        ghost = _ctl(broker, keyfile, "send", "dev:q10-p15-ghost-01", "ping", "--wait", "1")
        assert ghost.returncode == 4
        assert "no final ack" in ghost.stderr
    finally:
        assert agent.stop() == 0


def test_watch_prints_acks(
    broker: Broker, device: Device, agent: AgentProcess, signing_key: SigningKey
) -> None:
    with Listener(broker, [f"{PREFIX}/dev/+/state"]) as listener:
        wait_state(listener, device.device_id, online=True, timeout=15)
        watch = subprocess.Popen(
            [
                sys.executable,
                str(CONTROL_SCRIPT),
                "watch",
                "--duration",
                "3",
                "--broker",
                broker.url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        sent: list[str] = []
        deadline = time.monotonic() + 15
        # Ping until watch ends: it must have printed the acks of the pings made while it ran.
        while watch.poll() is None and time.monotonic() < deadline:
            topic, payload, doc = command(signing_key, "ping")
            listener.publish(topic, payload)
            sent.append(doc["id"])
            time.sleep(0.3)
        out, err = watch.communicate(timeout=10)
    assert watch.returncode == 0, err
    lines = [line.split(maxsplit=3) for line in out.splitlines()]
    acks = [json.loads(parts[3]) for parts in lines if len(parts) == 4 and parts[2] == "ack"]
    assert acks, f"watch printed no ack:\n{out}"
    assert all(parts[1] == device.device_id for parts in lines if parts[2] == "ack")
    assert {a["cmd"] for a in acks} <= set(sent)
    assert any(a["status"] == "done" for a in acks)


def test_group_command_reaches_every_member(tmp_path: Path, broker: Broker) -> None:
    keyfile = _keygen(tmp_path)
    first = _provision(tmp_path, broker, keyfile, "q10-p15-loa-01", ["q10-p15", "q10"])
    second = _provision(tmp_path, broker, keyfile, "q10-p16-loa-01", ["q10-p16", "q10"])
    other = _provision(tmp_path, broker, keyfile, "q11-p01-loa-01", ["q11-p01", "q11"])
    agents = [AgentProcess(d).start() for d in (first, second, other)]
    try:
        with Listener(broker, [f"{PREFIX}/dev/+/state"]) as listener:
            for d in (first, second, other):
                wait_state(listener, d.device_id, online=True, timeout=15)
        sent = _ctl(broker, keyfile, "send", "grp:q10", "ping", "--expect", "2")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        answered = {row[0]: row[1] for row in (line.split() for line in sent.stdout.splitlines())}
        assert answered == {first.device_id: "done", second.device_id: "done"}

        # Another district's group does not reach them, and only q11's agent answers it.
        with Listener(broker, [f"{PREFIX}/dev/+/ack"]) as acks:
            q11 = _ctl(broker, keyfile, "send", "grp:q11", "ping", "--expect", "1")
            assert q11.returncode == 0, q11.stdout + q11.stderr
            assert [row[0] for row in _rows(q11.stdout, other.device_id)] == [other.device_id]
            time.sleep(1.0)
            wait_for(lambda: acks.acks(), 5, "the q11 ack on the listener")
            assert {a["cmd"] for a in acks.acks()} == {q11.stderr.split()[2]}
            assert all(a["status"] == "done" for a in acks.acks())
            devices = {t.split("/")[-2] for t, _, _ in acks.drain() if t.endswith("/ack")}
            assert devices == {other.device_id}
    finally:
        for a in agents:
            assert a.stop() == 0
