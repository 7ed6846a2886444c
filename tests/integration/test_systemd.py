"""systemd integration: readiness, watchdog pings and stopping, over a real notify socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from agent.control_socket import request
from controlplane.keys import SigningKey
from tests.helpers import ROOT, Device, command, wait_for


def _messages(sock: socket.socket, until: float) -> list[str]:
    out: list[str] = []
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def _spawn(device: Device, **env: str) -> subprocess.Popen[bytes]:
    """``ttcs-agent run`` as systemd starts it: with the notify variables in its environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(device.config)],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_ready_watchdog_and_stopping_are_notified(device: Device, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        # A 1 s watchdog: the agent must ping at half the period.
        proc = _spawn(device, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="1000000")
        try:
            seen = _messages(sock, time.monotonic() + 3.0)
            assert "READY=1" in seen
            assert any(m.startswith("STATUS=") for m in seen)
            pings = seen.count("WATCHDOG=1")
            assert pings >= 3, seen  # ~6 expected in 3 s at a 0.5 s interval
        finally:
            proc.terminate()
            assert proc.wait(15) == 0
        assert "STOPPING=1" in _messages(sock, time.monotonic() + 1.0)


def test_agent_restart_is_a_reload_to_systemd(
    device: Device, tmp_path: Path, signing_key: SigningKey
) -> None:
    """execv keeps the PID: STOPPING=1 would make systemd kill the new process."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        proc = _spawn(device, NOTIFY_SOCKET=str(path))
        try:
            wait_for(lambda: "READY=1" in _messages(sock, time.monotonic() + 0.2), 20, "READY")
            wait_for(lambda: device.socket.exists(), 10, "the control socket")
            _, payload, _ = command(signing_key, "agent.restart")
            answer = request(device.socket, "inject", document=payload.decode())
            assert [a["status"] for a in answer["acks"]] == ["accepted"]
            seen = _messages(sock, time.monotonic() + 8.0)
            reloading = [m for m in seen if m.startswith("RELOADING=1")]
            assert reloading and "MONOTONIC_USEC=" in reloading[0]
            assert "STOPPING=1" not in seen
            assert "READY=1" in seen[seen.index(reloading[0]) :]
            assert proc.poll() is None  # the same process, re-executed
        finally:
            proc.terminate()
            assert proc.wait(15) == 0
