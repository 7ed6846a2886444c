"""agent.config: the keys of DESIGN.md load; unknown keys and bad values are named."""

from __future__ import annotations

import base64
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.config import AgentConfig, ConfigError, check_files, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode("ascii")

# Every key DESIGN.md names, with a meaning-bearing value.
FULL = f"""
device_id = "q10-p12-bang-01"
groups = ["q10-p12", "q10", "all"]
timezone = "Asia/Ho_Chi_Minh"

[mqtt]
url = "mqtts://broker.hcm.example:8883"
username = "q10-p12-bang-01"
password = "mật-khẩu-bí-mật"
ca_file = "/etc/ttcs/ca.pem"
cert_file = "/etc/ttcs/device.pem"
key_file = "/etc/ttcs/device.key"
topic_prefix = "ttcs/v1"

[trust.keys]
hcm-2026 = "{PUBLIC_KEY}"

[paths]
state_dir = "/var/lib/ttcs"
cache_dir = "/var/cache/ttcs"

[screen]
enabled = true
driver = "window"
width = 1920
height = 1080

[speaker]
enabled = true
output = "file:/tmp/capture.wav"

[tts]
default_voice = "vi-south"

[tts.voices]
vi-north = "/opt/piper/vi_VN-north.onnx"
vi-south = "/opt/piper/vi_VN-south.onnx"
"""


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"device_id": "q10-p12-bang-01", **data})
    return str(info.value)


# --------------------------------------------------------------------------- what loads


def test_every_design_key_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.device_id == "q10-p12-bang-01"
    assert config.groups == ("q10-p12", "q10", "all")
    assert config.timezone == "Asia/Ho_Chi_Minh"
    m = config.mqtt
    assert (m.tls, m.host, m.port) == (True, "broker.hcm.example", 8883)
    assert m.username == "q10-p12-bang-01"
    assert m.password is not None and m.password.get_secret_value() == "mật-khẩu-bí-mật"
    assert "mật-khẩu" not in repr(config)  # a secret is not printed with the config
    assert (m.ca_file, m.cert_file, m.key_file) == (
        Path("/etc/ttcs/ca.pem"),
        Path("/etc/ttcs/device.pem"),
        Path("/etc/ttcs/device.key"),
    )
    assert m.topic_prefix == "ttcs/v1"
    assert config.trust.keys == {"hcm-2026": PUBLIC_KEY}
    assert config.paths.state_dir == Path("/var/lib/ttcs")
    assert config.paths.cache_dir == Path("/var/cache/ttcs")
    assert config.paths.socket_path == Path("/var/lib/ttcs/control.sock")
    assert (config.screen.enabled, config.screen.driver) == (True, "window")
    assert (config.screen.width, config.screen.height) == (1920, 1080)
    assert (config.speaker.enabled, config.speaker.output) == (True, "file:/tmp/capture.wav")
    assert config.tts.default_voice == "vi-south"
    assert config.tts.voices["vi-north"] == Path("/opt/piper/vi_VN-north.onnx")
    assert config.secrets() == ["mật-khẩu-bí-mật"]


def test_defaults_need_only_a_device_id() -> None:
    config = parse_config({"device_id": "q10-p12-bang-01"})
    assert config.groups == ()
    assert config.timezone == "Asia/Ho_Chi_Minh"
    assert config.mqtt.topic_prefix == "ttcs/v1"
    assert (config.mqtt.tls, config.mqtt.port) == (False, 1883)
    assert config.max_payload_bytes == 262144
    assert config.status_interval_s == 60
    assert config.secrets() == []


def test_mqtts_default_port_is_8883() -> None:
    config = parse_config({"device_id": "ab", "mqtt": {"url": "mqtts://broker.example"}})
    assert config.mqtt.port == 8883


def test_example_configuration_file_loads() -> None:
    example = ROOT / "config" / "agent.example.toml"
    assert example.exists(), "config/agent.example.toml describes every key (DESIGN.md)"
    config = load_config(example)
    text = tomllib.loads(example.read_text(encoding="utf-8"))
    for key in (
        "device_id",
        "groups",
        "timezone",
        "mqtt",
        "trust",
        "paths",
        "screen",
        "speaker",
        "tts",
    ):
        assert key in text, f"the example does not show '{key}'"
    assert config.device_id == text["device_id"]


def test_example_keys_shown_commented_out_are_real_keys(tmp_path: Path) -> None:
    """Uncommenting an optional key of the example must give a configuration that loads."""
    example = ROOT / "config" / "agent.example.toml"
    text = re.sub(r"(?m)^#(\s*[a-z][a-z0-9_-]*\s*=)", r"\1", example.read_text(encoding="utf-8"))
    config = load_config(write(tmp_path, text))
    assert config.mqtt.password is not None
    assert config.secrets() == [config.mqtt.password.get_secret_value()]


def test_config_is_frozen() -> None:
    config = parse_config({"device_id": "q10-p12-bang-01"})
    with pytest.raises(ValidationError):
        config.device_id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.mqtt.url = "mqtt://elsewhere"  # type: ignore[misc]


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("data", "key", "guess"),
    [
        ({"mqtt": {"ulr": "mqtt://x"}}, "mqtt.ulr", "mqtt.url"),
        ({"timezon": "UTC"}, "timezon", "timezone"),
        ({"paths": {"state_dri": "/x"}}, "paths.state_dri", "paths.state_dir"),
        ({"screen": {"drivr": "window"}}, "screen.drivr", "screen.driver"),
        ({"trust": {"key": {}}}, "trust.key", "trust.keys"),
    ],
)
def test_unknown_key_is_named_with_a_suggestion(data: dict[str, Any], key: str, guess: str) -> None:
    message = problem(data)
    assert f"unknown key '{key}'" in message
    assert f"did you mean '{guess}'" in message


def test_unknown_key_without_a_close_match_gets_no_guess() -> None:
    message = problem({"mqtt": {"zzzzzz": 1}})
    assert "unknown key 'mqtt.zzzzzz'" in message
    assert "did you mean" not in message


def test_unknown_section_is_named() -> None:
    assert "unknown key 'gpio'" in problem({"gpio": {"relay": 17}})


def test_every_problem_is_listed() -> None:
    message = problem({"timezone": "Mars/Base", "mqtt": {"ulr": "x", "url": "http://x"}})
    assert "'timezone'" in message and "mqtt.ulr" in message and "'mqtt.url'" in message


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"timezone": "Mars/Base"}, "'timezone'"),
        ({"timezone": "../../etc/passwd"}, "'timezone'"),
        ({"device_id": "Bad_ID"}, "'device_id'"),
        ({"device_id": "x"}, "'device_id'"),
        ({"groups": ["q10", "Q11"]}, "'groups.1'"),
        ({"groups": ["q10", "q10"]}, "groups"),
        ({"groups": ["q10-p12-bang-01"]}, "groups"),
        (
            {"trust": {"keys": {"hcm-2026": base64.b64encode(b"short").decode()}}},
            "'trust.keys.hcm-2026'",
        ),
        (
            {"trust": {"keys": {"hcm-2026": base64.b64encode(bytes(33)).decode()}}},
            "'trust.keys.hcm-2026'",
        ),
        ({"trust": {"keys": {"hcm-2026": "not base64 at all!"}}}, "'trust.keys.hcm-2026'"),
        ({"mqtt": {"url": "http://x"}}, "'mqtt.url'"),
        ({"mqtt": {"url": "mqtt://"}}, "'mqtt.url'"),
        ({"mqtt": {"url": "mqtt://broker:99999"}}, "'mqtt.url'"),
        ({"mqtt": {"topic_prefix": "ttcs/#"}}, "'mqtt.topic_prefix'"),
        ({"mqtt": {"topic_prefix": "/ttcs"}}, "'mqtt.topic_prefix'"),
        ({"mqtt": {"keepalive_s": 1}}, "'mqtt.keepalive_s'"),
        ({"mqtt": {"protocol": "4"}}, "'mqtt.protocol'"),
        ({"screen": {"driver": "x11"}}, "'screen.driver'"),
        ({"screen": {"width": 0}}, "'screen.width'"),
        ({"screen": {"rotation": 45}}, "'screen.rotation'"),
        ({"screen": {"profile": "oled"}}, "'screen.profile'"),
        ({"screen": {"region": [1800, 0, 384, 192]}}, "region"),
        ({"screen": {"region": [0, 0, 384]}}, "'screen.region"),
        ({"screen": {"power_off": []}}, "'screen.power_off'"),
        ({"screen": {"power_off": "vcgencmd display_power 0"}}, "'screen.power_off'"),
        ({"speaker": {"output": "pulse"}}, "'speaker.output'"),
        ({"speaker": {"output": "file:"}}, "'speaker.output'"),
        ({"status_interval_s": 1}, "'status_interval_s'"),
        ({"max_payload_bytes": 10}, "'max_payload_bytes'"),
        ({"log": {"level": "LOUD"}}, "'log.level'"),
    ],
)
def test_bad_value_names_the_key(data: dict[str, Any], key: str) -> None:
    message = problem(data)
    assert key in message, message


def test_bad_value_message_says_what_is_wrong() -> None:
    assert "unknown time zone 'Mars/Base'" in problem({"timezone": "Mars/Base"})
    assert "32 bytes" in problem({"trust": {"keys": {"k": base64.b64encode(b"x" * 31).decode()}}})
    assert "mqtt://" in problem({"mqtt": {"url": "http://x"}})


def test_missing_device_id_is_named() -> None:
    with pytest.raises(ConfigError, match="'device_id': Field required"):
        parse_config({})


# --------------------------------------------------------------------------- files


def test_bad_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'device_id = "q10-p12-bang-01"\n[mqtt\nurl = "mqtt://x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "not valid TOML" in message and "line 2" in message


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'device_id = "ph\xfd\xccng"\n')  # Windows-1258, as old editors save
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nowhere.toml")
    assert "nowhere.toml" in str(info.value) and "cannot read" in str(info.value)


def test_file_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, FULL.replace('url = "mqtts', 'ulr = "mqtts'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "unknown key 'mqtt.ulr' (did you mean 'mqtt.url'?)" in str(info.value)


def test_model_is_the_same_as_parse(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config == AgentConfig.model_validate(tomllib.loads(FULL))


def test_unreadable_tls_files_are_named(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = parse_config(
        {
            "device_id": "q10-p12-bang-01",
            "mqtt": {
                "url": "mqtts://broker:8883",
                "ca_file": str(ca),
                "key_file": str(tmp_path / "missing.key"),
            },
        }
    )
    with pytest.raises(ConfigError) as err:
        check_files(config, "agent.toml")
    assert "'mqtt.key_file'" in str(err.value)
    assert "mqtt.ca_file" not in str(err.value)


@pytest.mark.parametrize("url", ["mqtt://user:pw@broker:1883", "mqtt://broker:1883/path"])
def test_a_broker_url_is_only_scheme_host_and_port(url: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("'mqtt.url'")):
        parse_config({"device_id": "q10-p12-bang-01", "mqtt": {"url": url}})


def test_a_power_hook_that_is_not_a_program_is_named(tmp_path: Path) -> None:
    config = parse_config(
        {
            "device_id": "q10-p12-bang-01",
            "screen": {"power_on": ["/nonexistent/cec-ctl", "--to", "0"], "power_off": ["true"]},
        }
    )
    with pytest.raises(ConfigError) as err:
        check_files(config, "agent.toml")
    assert "'screen.power_on': /nonexistent/cec-ctl is not an executable program" in str(err.value)
    assert "power_off" not in str(err.value)
