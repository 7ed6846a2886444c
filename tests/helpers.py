"""Shared test machinery: a real Mosquitto broker, device configs, agent processes, a listener."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.control import request
from agent.controlplane import SigningKey, make_document
from agent.link import LinkHandler, LinkSettings, MqttLink
from agent.protocol import Topics

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "ttcs/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Broker:
    """A real Mosquitto on a free loopback port, with persistence, restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\n"
            f"autosave_interval 1\nmax_queued_messages 10000\n{self.extra}\n"
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        wait_for(self._accepts, 10, f"mosquitto on port {self.port}")
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Device:
    """A provisioned device: its config file, directories and identity."""

    device_id: str
    groups: list[str]
    config: Path
    state_dir: Path
    cache_dir: Path

    @property
    def socket(self) -> Path:
        return self.state_dir / "control.sock"


def provision(
    tmp: Path,
    broker: Broker,
    key: SigningKey,
    device_id: str = "q10-p12-bang-01",
    groups: tuple[str, ...] = ("q10-p12", "q10"),
    extra: str = "",
    mqtt_url: str | None = None,
    mqtt_extra: str = "",
) -> Device:
    """Write a device's config; ``mqtt_url``/``mqtt_extra`` override or add ``[mqtt]`` keys."""
    base = tmp / device_id
    state, cache = base / "state", base / "cache"
    config = base / "agent.toml"
    base.mkdir(parents=True, exist_ok=True)
    group_list = ", ".join(json.dumps(g) for g in groups)
    config.write_text(
        f'device_id = "{device_id}"\ngroups = [{group_list}]\nstatus_interval_s = 5\n{extra}\n'
        f'[mqtt]\nurl = "{mqtt_url or broker.url}"\nkeepalive_s = 10\nreconnect_min_s = 0.2\n'
        f"reconnect_max_s = 1.0\n{mqtt_extra}\n"
        f'[trust.keys]\n{key.kid} = "{key.public_b64}"\n'
        f'[paths]\nstate_dir = "{state}"\ncache_dir = "{cache}"\n'
        f"[screen]\nenabled = false\n[speaker]\nenabled = false\n"
    )
    return Device(device_id, list(groups), config, state, cache)


class AgentProcess:
    """``ttcs-agent run`` as a real child process."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = device.state_dir.parent / "agent.out"

    def start(self, wait_socket: bool = True, wait_online: bool = False) -> AgentProcess:
        """Start the agent; wait for its control socket and, with ``wait_online``, until it is
        subscribed (it reports ``link.connected`` only once the broker granted its topics)."""
        self.device.state_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.device.config)],
            stdout=self.output.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        if wait_socket or wait_online:
            wait_for(self._socket_answers, 20, "the agent's control socket")
        if wait_online:
            wait_for(self._online, 20, "the agent to be connected and subscribed")
        return self

    def _online(self) -> bool:
        answer = request(self.device.socket, "status")
        return bool(answer.get("ok") and answer["status"]["link"]["connected"])

    def _socket_answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"agent exited: {self.output.read_text()[-3000:]}")
        with socket.socket(socket.AF_UNIX) as sock:
            return sock.connect_ex(str(self.device.socket)) == 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class _Inbox(LinkHandler):
    def __init__(self) -> None:
        self.items: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()

    def message(self, topic: str, payload: bytes, token: Any, retained: bool) -> None:
        self.items.put((topic, payload, retained))


@dataclass
class Listener:
    """A plain MQTT client that records what devices publish."""

    broker: Broker
    subscriptions: list[str]
    received: list[tuple[str, bytes, bool]] = field(default_factory=list)
    # A persistent session (with a fixed client id) keeps the subscriptions and queues QoS 1
    # messages in the broker while this listener is away, also across a broker restart.
    persistent: bool = False
    client_id: str | None = None

    def __post_init__(self) -> None:
        self._inbox = _Inbox()
        self.link = MqttLink(
            LinkSettings(
                host="127.0.0.1",
                port=self.broker.port,
                client_id=self.client_id or f"test-{uuid.uuid4().hex[:8]}",
                persistent=self.persistent,
                subscriptions=self.subscriptions,
                reconnect_min_s=0.2,
                reconnect_max_s=1.0,
            ),
            self._inbox,
        )

    def __enter__(self) -> Listener:
        self.link.start()
        assert self.link.wait_connected(10), "listener could not connect"
        return self

    def __exit__(self, *_: object) -> None:
        self.link.stop()

    def drain(self) -> list[tuple[str, bytes, bool]]:
        while True:
            try:
                self.received.append(self._inbox.items.get_nowait())
            except queue.Empty:
                return self.received

    def json_on(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.drain() if t.endswith(suffix)]

    def acks(self, doc_id: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.json_on("/ack") if doc_id is None or a.get("cmd") == doc_id]

    def wait_ack(
        self, doc_id: str, status: str | None = None, timeout: float = 10
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for ack in self.acks(doc_id):
                if status is None or ack["status"] == status:
                    return ack
            return None

        result: dict[str, Any] = wait_for(found, timeout, f"ack {status} for {doc_id}")
        return result

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.link.publish(topic, payload, qos=1, retain=retain)


def command(
    key: SigningKey,
    doc_type: str,
    target: str = "dev:q10-p12-bang-01",
    body: dict[str, Any] | None = None,
    **kw: Any,
) -> tuple[str, bytes, dict[str, Any]]:
    """A signed command: (topic, payload, document)."""
    doc = make_document(key, doc_type, target, body or {}, **kw)
    topic = Topics(PREFIX).for_target(target, "program" if doc_type == "program" else "cmd")
    return topic, json.dumps(doc, ensure_ascii=False).encode("utf-8"), doc


def iter_lines(path: Path) -> Iterator[str]:
    yield from path.read_text(encoding="utf-8", errors="replace").splitlines()


CONTROL_SCRIPT = ROOT / "scripts" / "ttcs-control"


def agent_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``ttcs-agent ARGS`` (as ``python -m agent``) to completion."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def control_cli(
    *args: str, timeout: float = 30, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the operators' ``scripts/ttcs-control ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, str(CONTROL_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
    )


def states(listener: Listener, device_id: str) -> list[dict[str, Any]]:
    """Every ``state`` message of ``device_id`` the listener has seen, oldest first."""
    return listener.json_on(f"/dev/{device_id}/state")


def wait_state(
    listener: Listener, device_id: str, online: bool, after: int = 0, timeout: float = 10
) -> int:
    """Wait for a state message with ``online`` among those from index ``after`` on; return
    the index just past it (pass it as ``after`` to wait for a later one)."""

    def found() -> int:
        seen = states(listener, device_id)
        for index in range(after, len(seen)):
            if seen[index]["online"] is online:
                return index + 1
        return 0

    result: int = wait_for(found, timeout, f"state online={online} of {device_id}")
    return result


def occurrences(path: Path, text: str) -> int:
    """How many lines of ``path`` contain ``text`` (0 when the file does not exist yet)."""
    if not path.exists():
        return 0
    return sum(1 for line in iter_lines(path) if text in line)
