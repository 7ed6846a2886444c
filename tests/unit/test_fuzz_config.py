"""Fuzzing the configuration loader (``agent.config.load_config``) with mutated TOML files.

A valid file is changed line by line (a value replaced by another TOML literal, a line dropped,
doubled or swapped, an unknown key added) or byte by byte, written to disk and loaded.
Loading raises ``ConfigError`` and nothing else, and a file that loads breaks none of the
rules written again below from the configuration's documentation.
"""

from __future__ import annotations

import base64
import json
import tempfile
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from agent.config import ConfigError, load_config
from tests import fuzzing
from tests.unit.spec import IDENT, int_in

NAME = "config loader (agent.toml)"
KEY = base64.b64encode(bytes(range(32))).decode("ascii")
BASE = f"""\
device_id = "q10-p12-bang-01"
groups = ["q10-p12", "q10", "all"]
timezone = "Asia/Ho_Chi_Minh"
status_interval_s = 60
max_payload_bytes = 262144

[mqtt]
url = "mqtts://broker.q10.example.vn:8883"
username = "q10-p12-bang-01"
password = "mật-khẩu"
topic_prefix = "ttcs/v1"
keepalive_s = 60
reconnect_min_s = 1.0
reconnect_max_s = 60.0

[trust]
keys = {{ hcm-2026 = "{KEY}" }}

[paths]
state_dir = "/var/lib/ttcs-agent"
cache_dir = "/var/cache/ttcs-agent"

[screen]
driver = "headless"
width = 1920
height = 1080
rotation = 90
region = [0, 0, 1920, 1080]
power_on = ["vcgencmd", "display_power", "1"]

[speaker]
output = "null"
amplifier_gpio = "gpiochip0:17"
amplifier_warmup_s = 1.5
default_volume = 70
replay_levels = ["normal", "priority"]

[cache]
quota_bytes = 2147483648
attempts = 5

[log]
level = "INFO"
"""
LINES = BASE.splitlines()
ZONES = ["Asia", "Asia/", "../../etc/passwd", "/etc/localtime", "UTC", "", "Asia/Hanoi", "\x00"]
SCALARS = (
    st.integers(min_value=-(2**64), max_value=2**64).map(str)
    | st.floats(allow_nan=True).map(lambda f: repr(f).replace("inf", "inf"))
    | st.sampled_from(["true", "false", "nan", "-inf", "1979-05-27T07:32:00Z", "07:32:00"])
    | st.text(max_size=20).map(lambda s: json.dumps(s))
    | st.sampled_from([*ZONES, "mqtt://h:99999", "mqtt://u:p@h", "mqtts://[::1", "ttcs/#"]).map(
        json.dumps
    )
)
LITERALS = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.dictionaries(st.sampled_from(["a", "b", "url", "kid"]), inner, max_size=3).map(
            lambda d: "{ " + ", ".join(f"{k} = {v}" for k, v in d.items()) + " }"
        )
    ),
    max_leaves=5,
)


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    lines = list(LINES)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        action = draw(st.sampled_from(["value", "value", "value", "drop", "double", "swap", "add"]))
        key, eq, _ = lines[at].partition(" = ")
        if action == "value" and eq:
            lines[at] = f"{key} = {draw(LITERALS)}"
        elif action == "drop":
            del lines[at]
        elif action == "double":
            lines.insert(at, lines[at])
        elif action == "swap":
            other = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif action == "add":
            name = draw(st.sampled_from(["device_ids", "grops", "url", "keys", "x", "screen.w"]))
            lines.insert(at, f"{name} = {draw(LITERALS)}")
    data = bytearray("\n".join(lines).encode("utf-8"))
    if draw(st.booleans()):  # and a few bytes changed, deleted or put in
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            at = draw(st.integers(min_value=0, max_value=len(data) - 1))
            change = draw(st.sampled_from(["set", "delete", "insert"]))
            if change == "set":
                data[at] = draw(st.integers(min_value=0, max_value=255))
            elif change == "delete":
                del data[at : at + draw(st.integers(min_value=1, max_value=4))]
            else:
                data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def config_problems(data: dict[str, Any]) -> list[str]:
    """Why ``data`` (parsed TOML) is not a usable configuration."""
    out = []
    device = data.get("device_id")
    if not (isinstance(device, str) and IDENT.match(device)):
        out.append("device_id")
    groups = data.get("groups", [])
    if not (
        isinstance(groups, list) and all(isinstance(g, str) and IDENT.match(g) for g in groups)
    ):
        out.append("groups")
    elif len(set(groups)) != len(groups) or device in groups:
        out.append("groups: repeated or the device itself")
    zone = data.get("timezone", "Asia/Ho_Chi_Minh")
    if not (isinstance(zone, str) and zone in zoneinfo.available_timezones() | {"UTC"}):
        out.append("timezone")
    if not int_in(data.get("status_interval_s", 60), 5, 86400):
        out.append("status_interval_s")
    if not int_in(data.get("max_payload_bytes", 262144), 1024, 16 * 1024 * 1024):
        out.append("max_payload_bytes")
    mqtt = data.get("mqtt", {})
    url = mqtt.get("url", "mqtt://127.0.0.1:1883") if isinstance(mqtt, dict) else None
    if not (isinstance(url, str) and urlsplit(url).scheme in ("mqtt", "mqtts") and "@" not in url):
        out.append("mqtt.url")
    keys = data.get("trust", {}).get("keys", {}) if isinstance(data.get("trust"), dict) else None
    if not isinstance(keys, dict):
        out.append("trust.keys")
    else:
        for kid, value in keys.items():
            try:
                if len(base64.b64decode(value, validate=True)) != 32:
                    out.append(f"trust.keys.{kid}")
            except (ValueError, TypeError):
                out.append(f"trust.keys.{kid}")
    volume = data.get("speaker", {}).get("default_volume", 70)
    if not int_in(volume, 0, 100):
        out.append("speaker.default_volume")
    return out


def load_and_check(folder: Path, raw: bytes) -> None:
    path = folder / "agent.toml"
    path.write_bytes(raw)
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path)), exc
        return
    fuzzing.accepted(NAME)
    data = tomllib.loads(raw.decode("utf-8"))
    assert config_problems(data) == [], (config_problems(data), raw)
    assert config.device_id == data["device_id"]


FOLDER = Path(tempfile.mkdtemp(prefix="ttcs-fuzz-config-"))


@fuzzing.fuzz_settings(240)
@given(raw=mutated_files())
@fuzzing.target(NAME)
def test_config_mutations(raw: bytes) -> None:
    load_and_check(FOLDER, raw)


@fuzzing.fuzz_settings(40)
@given(raw=st.binary(max_size=300))
@fuzzing.target(NAME)
def test_config_arbitrary_bytes(raw: bytes) -> None:
    load_and_check(FOLDER, raw)


def test_the_base_configuration_loads() -> None:
    """The oracle's other side: the file the mutations start from is valid."""
    load_and_check(FOLDER, BASE.encode("utf-8"))
    assert config_problems(tomllib.loads(BASE)) == []


def test_config_memory_stayed_bounded() -> None:
    fuzzing.check_memory(NAME)
