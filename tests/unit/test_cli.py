"""agent.cli, the technician's ``ttcs-agent``: argument parsing, exit codes and messages with no
agent running, and the answers of a running one (a real director behind a real control socket,
or canned answers where the director needs players), ``--json`` included."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import __version__
from agent.cli import main
from agent.config import load_config
from agent.control_socket import ControlServer
from agent.events import Event, Request
from agent.store import Store
from protocol.reports import DeviceStatus
from tests.helpers import ROOT
from tests.unit.fakes import DEVICE, KID, DirectorThread, Signer, answering, document, make_rig

BROKER = "mqtt://127.0.0.1:1883"
Run = Callable[..., tuple[int, str, str]]


def write_config(tmp: Path, signer: Signer | None) -> Path:
    keys = f'{signer.kid} = "{signer.public_b64}"\n' if signer else ""
    path = tmp / "agent.toml"
    path.write_text(
        f'device_id = "{DEVICE}"\ngroups = ["q10-p12", "q10"]\n'
        f'[mqtt]\nurl = "{BROKER}"\n'
        f"[trust.keys]\n{keys}"
        f'[paths]\nstate_dir = "{tmp / "state"}"\ncache_dir = "{tmp / "cache"}"\n'
        "[cache]\nquota_bytes = 1048576\n"
        "[screen]\nenabled = false\n[speaker]\nenabled = false\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def config_file(tmp_path: Path, signer: Signer) -> Path:
    return write_config(tmp_path, signer)


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "control.sock"


@pytest.fixture
def run(config_file: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """``ttcs-agent ARGS --config FILE`` in this process: (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config_file)])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@contextlib.contextmanager
def serving(path: Path, handle: Callable[[Event], None]) -> Iterator[DirectorThread]:
    """A ControlServer on ``path`` whose requests go to ``handle`` on a thread of its own."""
    director = DirectorThread(handle)
    server = ControlServer(path, director.post)
    server.start()
    try:
        yield director
    finally:
        server.stop()
        director.stop()


@pytest.fixture
def agent(config_file: Path, signer: Signer, socket_path: Path) -> Iterator[DirectorThread]:
    """A real director (real store and verifier; no link, no players) on the socket."""
    config = load_config(config_file)
    config.paths.state_dir.mkdir(parents=True)
    store = Store(config.paths.state_dir / "agent.db")
    rig = make_rig(store, config, signer)
    with serving(socket_path, rig.director.handle) as director:
        yield director
    store.close()


def canned(
    socket_path: Path, answers: dict[str, dict[str, Any]]
) -> contextlib.AbstractContextManager[DirectorThread]:
    """An agent that answers each action with ``answers[action]``."""
    return serving(socket_path, answering(lambda req: answers[req.action]))


def table(out: str) -> dict[str, str]:
    """``status``'s rows: a key padded to the longest ("temperature"), two spaces, a value."""
    width = len("temperature")
    rows = {line[:width].rstrip(): line[width + 2 :] for line in out.splitlines()}
    assert all(line[width : width + 2] == "  " for line in out.splitlines()), out
    return rows


def requests(director: DirectorThread) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for req in director.posted:
        assert isinstance(req, Request)
        found.append((req.action, req.args))
    return found


# --------------------------------------------------------------------------- arguments


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"ttcs-agent {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["reboot"], "argument COMMAND: invalid choice: 'reboot'"),
        (["volume", "101"], "argument 0-100: invalid choice: 101"),
        (["volume", "loud"], "argument 0-100: invalid int value: 'loud'"),
        (["cache"], "the following arguments are required: ACTION"),
        (["logs", "-n", "many"], "argument -n/--lines: invalid int value: 'many'"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ttcs-agent")
    assert f"error: {error}" in err


@pytest.mark.parametrize(
    "where",
    [
        ["--config", "{config}", "config", "check"],
        ["config", "--config", "{config}", "check"],
        ["config", "check", "--config", "{config}"],
    ],
)
def test_config_is_accepted_before_or_after_each_command(
    where: list[str], config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([arg.format(config=config_file) for arg in where]) == 0
    assert capsys.readouterr().out.startswith(f"{config_file}: OK")


def test_config_comes_from_ttcs_config_when_not_given(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTCS_CONFIG", str(config_file))
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out.startswith(f"{config_file}: OK")


# --------------------------------------------------------------------------- configuration


def test_config_check_names_the_device_keys_and_broker(run: Run) -> None:
    code, out, err = run("config", "check")
    assert code == 0
    assert out.endswith(f": OK (device {DEVICE}, 1 trusted keys, broker {BROKER})\n")
    assert err == ""


def test_config_check_warns_when_no_key_is_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, signer=None)
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert "0 trusted keys" in out.out
    assert out.err == "warning: [trust.keys] is empty: every command will be rejected\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "cannot read configuration: No such file or directory"),
        ("device_id = \n", "not valid TOML"),
        ('device_id = "Q10 BANG"\n', "invalid configuration"),
    ],
)
def test_a_bad_configuration_exits_2_and_says_why(
    tmp_path: Path, text: str | None, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    if text is not None:
        path.write_text(text)
    for command in (["config", "check"], ["status"], ["run"]):
        assert main([*command, "--config", str(path)]) == 2
        out = capsys.readouterr()
        assert out.out == ""
        assert out.err.startswith(f"ttcs-agent: {path}: {error}")


# --------------------------------------------------------------------------- no agent running


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["status", "--json"],
        ["logs"],
        ["screenshot", "frame.png"],
        ["cache", "gc"],
    ],
)
def test_commands_that_need_the_agent_exit_3_when_it_is_not_running(
    run: Run, socket_path: Path, command: list[str]
) -> None:
    code, out, err = run(*command)
    assert (code, out) == (3, "")
    assert err == f"ttcs-agent: the agent is not running (no control socket at {socket_path})\n"


def test_a_stale_socket_is_told_apart(run: Run, socket_path: Path) -> None:
    socket_path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path))  # a killed agent's: nobody listens
    code, _, err = run("status")
    assert code == 3
    assert err == f"ttcs-agent: the agent is not running (stale socket at {socket_path})\n"


def test_an_agent_that_hangs_up_is_not_a_success(run: Run, socket_path: Path) -> None:
    socket_path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(socket_path))
        listener.listen(1)

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.close()

        closer = threading.Thread(target=hang_up, daemon=True)
        closer.start()
        code, out, err = run("status", "--json")
        closer.join(5)
    assert (code, out) == (3, "")
    assert err == "ttcs-agent: the agent closed the connection without answering\n"


def test_volume_without_the_agent_is_kept_for_its_next_start(run: Run, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    code, out, _ = run("volume", "35")
    assert (code, out) == (0, "volume 35% (the agent is not running: applied at its next start)\n")
    store = Store(tmp_path / "state" / "agent.db")
    try:
        assert store.get_setting("volume") == "35"
    finally:
        store.close()


def test_inject_of_an_unreadable_file_exits_2(run: Run, tmp_path: Path) -> None:
    code, out, err = run("inject", str(tmp_path / "missing.json"))
    assert (code, out) == (2, "")
    assert err.startswith(f"ttcs-agent: cannot read {tmp_path / 'missing.json'}: ")


def test_python_dash_m_agent_is_the_same_cli(config_file: Path, socket_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 3
    assert out.stderr == (
        f"ttcs-agent: the agent is not running (no control socket at {socket_path})\n"
    )


# --------------------------------------------------------------------------- a running agent


def test_status_json_is_the_devices_status_report(
    run: Run, agent: DirectorThread, tmp_path: Path
) -> None:
    code, out, _ = run("status", "--json")
    assert code == 0
    status = json.loads(out)
    # Exactly the retained status the agent publishes: the same model, field for field.
    assert DeviceStatus.model_validate(status).model_dump(mode="json") == status
    assert set(status) == set(DeviceStatus.model_fields)
    assert (status["volume"], status["programs"], status["outbox"]) == (70, {}, 0)
    assert status["link"] == {"connected": False, "reconnects": 0}
    assert requests(agent) == [("status", {})]


def test_status_for_people_reads_as_a_table(run: Run, agent: DirectorThread) -> None:
    code, out, _ = run("status")
    assert code == 0
    rows = table(out)
    assert rows["device"] == f"{DEVICE} (agent {__version__})"
    assert rows["broker"] == f"{BROKER} — NOT CONNECTED, 0 reconnects"
    assert rows["volume"] == "70%"
    assert rows["programs"] == "none"
    assert rows["outbox"] == "0 messages waiting for the broker"
    assert list(rows) == [
        "device",
        "broker",
        "uptime",
        "screen",
        "speaker",
        "volume",
        "programs",
        "cache",
        "disk free",
        "temperature",
        "outbox",
    ]


def test_volume_is_applied_by_the_running_agent(run: Run, agent: DirectorThread) -> None:
    assert run("volume", "55") == (0, "volume 55% (applied now)\n", "")
    assert json.loads(run("status", "--json")[1])["volume"] == 55
    assert requests(agent)[0] == ("volume", {"percent": 55})


def test_inject_prints_each_ack_and_exits_1_when_one_is_refused(
    run: Run, agent: DirectorThread, signer: Signer, tmp_path: Path
) -> None:
    ping = tmp_path / "ping.json"
    # With a byte-order mark, as an editor on Windows saves it.
    ping.write_text(json.dumps(signer.sign(document("ping"))), encoding="utf-8-sig")
    code, out, _ = run("inject", str(ping))
    assert code == 0
    [ack] = [json.loads(line) for line in out.splitlines()]
    assert (ack["cmd"], ack["status"]) == ("01JDX3M7K2Q8", "done")

    forged = tmp_path / "forged.json"
    stranger = Signer(KID, seed=2)  # the trusted key's id, another key
    forged.write_text(json.dumps(stranger.sign(document("ping", doc_id="01JDX3M7K2Q9"))))
    code, out, _ = run("inject", str(forged))
    assert code == 1
    [ack] = [json.loads(line) for line in out.splitlines()]
    assert (ack["status"], ack["reason"]) == ("rejected", "bad_signature")


def test_logs_prints_the_last_lines_redacted_by_the_agent(
    run: Run, agent: DirectorThread, tmp_path: Path
) -> None:
    log = tmp_path / "state" / "agent.log"
    log.write_text("một\nhai\nba\n", encoding="utf-8")
    assert run("logs", "-n", "2") == (0, "hai\nba\n", "")
    assert run("logs", "-n", "0") == (0, "ba\n", "")  # at least one line
    assert [args for _, args in requests(agent)] == [{"lines": 2}, {"lines": 1}]


def test_a_refusal_exits_3_with_the_agents_reason(run: Run, agent: DirectorThread) -> None:
    code, out, err = run("screenshot", "frame.png")
    assert (code, out) == (3, "")
    assert err == "ttcs-agent: the agent refused: this agent has no screen ([screen] enabled?)\n"


def png(width: int, height: int) -> bytes:
    """A real (tiny) PNG: signature, IHDR, one IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80\x20\x20" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_screenshot_writes_the_png_and_describes_it(
    run: Run, socket_path: Path, tmp_path: Path
) -> None:
    frame = png(64, 36)
    answers = {"screenshot": {"ok": True, "png": base64.b64encode(frame).decode()}}
    with canned(socket_path, answers) as director:
        target = tmp_path / "frame.png"
        code, out, _ = run("screenshot", str(target), "--max-width", "64")
        assert (code, out) == (0, f"{target}: 64x36 PNG, {len(frame)} B\n")
        assert target.read_bytes() == frame
        assert not target.with_name("frame.png.part").exists()
        assert requests(director) == [("screenshot", {"max_width": 64})]

        code, out, err = run("screenshot", str(tmp_path / "no-such-folder" / "frame.png"))
        assert (code, out) == (2, "")
        assert err.startswith("ttcs-agent: cannot write ") and "No such file" in err


def test_cache_gc_lists_what_the_agent_evicted(run: Run, socket_path: Path) -> None:
    evicted = ["ab" * 32, "cd" * 32]
    answers = {"cache.gc": {"ok": True, "evicted": evicted, "bytes": 2048, "items": 3}}
    with canned(socket_path, answers):
        code, out, _ = run("cache", "gc")
    assert code == 0
    assert out.splitlines() == [
        f"evicted {evicted[0]}",
        f"evicted {evicted[1]}",
        "2 files evicted; the cache holds 3 files, 2.0 KB of the 1.0 MB quota",
    ]


def test_status_of_a_connected_agent_playing_a_program(run: Run, socket_path: Path) -> None:
    status = {
        "v": 1,
        "at": "2026-11-26T06:00:00Z",
        "uptime_s": 2 * 86400 + 3 * 3600 + 4 * 60 + 5,
        "programs": {"ttcs/v1/grp/q10-p12/program": 3},
        "now": {"screen": "lich-tiem-chung", "speaker": None},
        "volume": 40,
        "cache": {"bytes": 5 << 20, "items": 4},
        "disk_free_bytes": 3 << 30,
        "temperature_c": 51,
        "link": {"connected": True, "reconnects": 2},
        "outbox": 1,
    }
    answers = {"status": {"ok": True, "status": status, "device": DEVICE, "agent_version": "9.9"}}
    with canned(socket_path, answers):
        code, out, _ = run("status")
        assert json.loads(run("status", "--json")[1]) == status
    assert code == 0
    rows = table(out)
    assert rows["device"] == f"{DEVICE} (agent 9.9)"
    assert rows["broker"] == f"{BROKER} — connected, 2 reconnects"
    assert rows["uptime"] == "2d 03:04:05"
    assert (rows["screen"], rows["speaker"]) == ("lich-tiem-chung", "—")
    assert rows["programs"] == "ttcs/v1/grp/q10-p12/program v3"
    assert rows["cache"] == "4 items, 5.0 MB"
    assert rows["disk free"] == "3.0 GB"
    assert rows["outbox"] == "1 messages waiting for the broker"
    assert rows["temperature"] == "51 °C"
