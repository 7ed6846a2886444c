"""A bad configuration stops ``ttcs-agent run`` and fails ``config check``, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.keys import SigningKey
from tests.helpers import Broker, agent_cli, provision

# (what is wrong, the TOML, text the message must contain)
CASES = [
    (
        "misspelt key in a section",
        "[mqtt]\nkeepalive = 30\n",
        ["unknown key 'mqtt.keepalive'", "did you mean 'mqtt.keepalive_s'?"],
    ),
    (
        "misspelt top-level key",
        'grups = ["q10"]\n',
        ["unknown key 'grups'", "did you mean 'groups'?"],
    ),
    ("misspelt section", "[speeker]\nenabled = false\n", ["unknown key 'speeker'", "'speaker'"]),
    ("bad url", '[mqtt]\nurl = "http://127.0.0.1:1883"\n', ["'mqtt.url'", "mqtt://"]),
    ("keepalive too short", "[mqtt]\nkeepalive_s = 3\n", ["'mqtt.keepalive_s'", "10"]),
    ("bad speaker output", '[speaker]\noutput = "hdmi"\n', ["'speaker.output'"]),
    ("bad time zone", 'timezone = "Asia/Sai_Gon"\n', ["'timezone'", "Asia/Sai_Gon"]),
    ("bad trust key", '[trust.keys]\nhcm-2026 = "AAAA"\n', ["'trust.keys.hcm-2026'", "32 bytes"]),
    ("wrong type", '[screen]\nwidth = "wide"\n', ["'screen.width'"]),
]


def _config(tmp: Path, body: str) -> Path:
    state = tmp / "state"
    path = tmp / "bad.toml"
    head = 'device_id = "q10-p12-bang-01"\n' if "device_id" not in body else ""
    path.write_text(f'{head}{body}\n[paths]\nstate_dir = "{state}"\ncache_dir = "{tmp}/cache"\n')
    return path


@pytest.mark.parametrize(("what", "body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_config_check_names_the_key(
    tmp_path: Path, what: str, body: str, expected: list[str]
) -> None:
    path = _config(tmp_path, body)
    out = agent_cli("config", "check", "--config", str(path))
    assert out.returncode != 0, f"{what}: accepted\n{out.stdout}"
    for text in expected:
        assert text in out.stderr, f"{what}: {text!r} not in {out.stderr!r}"
    assert "Traceback" not in out.stderr


def test_run_refuses_to_start_and_names_every_bad_key(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[mqtt]\nurl = "mqtts://broker.example.vn:8883"\nkeepalive = 30\n'
        '[speaker]\noutput = "hdmi"\n',
    )
    out = agent_cli("run", "--config", str(path), timeout=20)
    assert out.returncode != 0
    assert "unknown key 'mqtt.keepalive'" in out.stderr
    assert "did you mean 'mqtt.keepalive_s'?" in out.stderr
    assert "'speaker.output'" in out.stderr
    assert "Traceback" not in out.stderr
    # It stopped before doing anything: no state, no control socket.
    assert not (tmp_path / "state").exists()


def test_config_check_accepts_a_good_config(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> None:
    device = provision(tmp_path, broker, signing_key)
    out = agent_cli("config", "check", "--config", str(device.config))
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout
    assert device.device_id in out.stdout


def test_unreadable_and_invalid_toml_are_reported(tmp_path: Path) -> None:
    missing = agent_cli("config", "check", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode != 0
    assert "nope.toml" in missing.stderr
    assert "cannot read" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text('device_id = "q10-p12-bang-01"\n[mqtt\n')
    out = agent_cli("run", "--config", str(broken))
    assert out.returncode != 0
    assert "not valid TOML" in out.stderr
    assert "line 2" in out.stderr
