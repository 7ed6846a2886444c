"""Shared test machinery: device configs, agent processes, a listener, a media server with
knobs; the real Mosquitto broker is ``harness.Broker`` (scripts/harness.py), re-exported."""

from __future__ import annotations

import hashlib
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness import Broker as Broker
from harness import HarnessError as HarnessError
from harness import free_port as free_port

from agent.control_socket import request
from controlplane.keys import SigningKey, make_document
from protocol import Topics
from protocol.link import LinkHandler, LinkSettings, MqttLink

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "ttcs/v1"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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
    screen: str = "enabled = false",
    speaker: str = "enabled = false",
) -> Device:
    """Write a device's config; ``mqtt_url``/``mqtt_extra`` override or add ``[mqtt]`` keys,
    ``screen`` and ``speaker`` are the bodies of those sections."""
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
        f"[screen]\n{screen}\n[speaker]\n{speaker}\n"
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


# --------------------------------------------------------------------------- media server


@dataclass
class Served:
    """One request the media server answered, and the body bytes it actually sent."""

    path: str
    range: str | None
    status: int
    bytes_sent: int = 0


class MediaServer:
    """A real HTTP server for media files on a free loopback port.

    Answers ``Range: bytes=N-`` (and ``N-M``) with 206 and ``Content-Range``, a range past the
    end with 416, and redirects from ``redirects``. Knobs: ``cut_after`` drops the connection
    after N body bytes for the next K requests; ``stall_after`` holds a response after N bytes
    until released; ``honour_ranges = False`` answers every request with the whole file;
    ``without_length`` serves a file with no ``Content-Length`` (the body ends when the
    connection closes). ``served`` records every request with the body bytes really sent.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.without_length: set[str] = set()
        self.honour_ranges = True
        self.served: list[Served] = []
        self._cuts: list[int] = []
        self._failures: list[tuple[int, str | None]] = []
        self._stall: tuple[int, threading.Event] | None = None
        self._releases: list[threading.Event] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _media_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name.lstrip('/')}"

    def add(self, name: str, data: bytes) -> str:
        """Serve ``data`` at ``/name``; return its URL."""
        self.files["/" + name.lstrip("/")] = data
        return self.url(name)

    def cut_after(self, n_bytes: int, times: int = 1) -> None:
        """Drop the connection after ``n_bytes`` of body in each of the next ``times`` responses."""
        with self._lock:
            self._cuts.extend([n_bytes] * times)

    def fail_with(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (e.g. 503) and no body, with a
        ``Retry-After`` header when given."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    def stall_after(self, n_bytes: int) -> threading.Event:
        """Hold the next response after ``n_bytes`` of body (0: right after its headers) until
        the returned event is set (or for 10 s at most)."""
        release = threading.Event()
        with self._lock:
            self._stall = (n_bytes, release)
            self._releases.append(release)
        return release

    def sent(self, name: str | None = None) -> int:
        """Body bytes sent in all responses (for one file, when named)."""
        path = None if name is None else "/" + name.lstrip("/")
        with self._lock:
            return sum(s.bytes_sent for s in self.served if path is None or s.path == path)

    def requests_for(self, name: str) -> list[Served]:
        path = "/" + name.lstrip("/")
        with self._lock:
            return [s for s in self.served if s.path == path]

    def start(self) -> MediaServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for release in self._releases:
                release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _next_knobs(self) -> tuple[int | None, tuple[int, threading.Event] | None]:
        with self._lock:
            cut = self._cuts.pop(0) if self._cuts else None
            stall, self._stall = self._stall, None
            return cut, stall

    def _next_failure(self) -> tuple[int, str | None] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _record(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)


def _media_handler(server: MediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a cut is a closed socket

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            rng = self.headers.get("Range")
            if path in server.redirects:
                server._record(Served(path, rng, 302))
                self.send_response(302)
                self.send_header("Location", server.redirects[path])
                self.end_headers()
                return
            failure = server._next_failure()
            if failure is not None:
                status, retry_after = failure
                server._record(Served(path, rng, status))
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = server.files.get(path)
            if data is None:
                server._record(Served(path, rng, 404))
                self.send_error(404)
                return
            start, end, status = 0, len(data) - 1, 200
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
            if match and server.honour_ranges:
                start = int(match[1])
                if start >= len(data):
                    server._record(Served(path, rng, 416))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                end, status = min(int(match[2] or end), end), 206
            body = data[start : end + 1]
            served = Served(path, rng, status)
            server._record(served)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            if path not in server.without_length:
                self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            self._send(body, served)

        def _send(self, body: bytes, served: Served) -> None:
            cut, stall = server._next_knobs()
            limit = len(body) if cut is None else min(cut, len(body))
            pause = None if stall is None else stall[0]
            try:
                position = 0
                while position < limit:
                    if stall is not None and position == pause:
                        self.wfile.flush()
                        stall[1].wait(10)  # before any body byte, too, for stall_after(0)
                        pause = None
                    step = 16384 if pause is None else pause - position
                    piece = body[position : min(limit, position + step)]
                    self.wfile.write(piece)
                    position += len(piece)
                    served.bytes_sent = position
                if stall is not None and position == pause:
                    stall[1].wait(10)  # held at the very end of what is sent
                if cut is not None:
                    self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client went away

    return Handler


# --------------------------------------------------------------------------- programs and the cache


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_doc(
    url: str, data: bytes, mime: str, *, sha256: str | None = None, size: int | None = None
) -> dict[str, Any]:
    """A program's ``Media`` for ``data`` served at ``url``; ``sha256``/``size`` override what
    is declared (to declare something the server will not deliver)."""
    return {
        "url": url,
        "sha256": sha256 or sha256_hex(data),
        "size": len(data) if size is None else size,
        "mime": mime,
    }


def program(
    key: SigningKey,
    version: int,
    bulletins: list[dict[str, Any]],
    target: str = "dev:q10-p12-bang-01",
    **body: Any,
) -> tuple[str, bytes, dict[str, Any]]:
    """A signed program (no ``expires_at``, as a retained program usually has): (topic,
    payload, document)."""
    return command(
        key, "program", target, {"version": version, "bulletins": bulletins, **body}, ttl_s=None
    )


def agent_status(device: Device, cli: bool = False) -> dict[str, Any]:
    """The running agent's status: over its control socket, or with ``cli`` through
    ``ttcs-agent status --json`` (slower: a new Python process)."""
    if cli:
        out = agent_cli("status", "--json", "--config", str(device.config))
        assert out.returncode == 0, out.stdout + out.stderr
        status: dict[str, Any] = json.loads(out.stdout)
        return status
    answer = request(device.socket, "status")
    assert answer.get("ok"), answer
    result: dict[str, Any] = answer["status"]
    return result


def cache_path(cache_dir: Path, sha256: str) -> Path:
    """Where the cache keeps the verified file with this hash (``ab/cd/abcd…``)."""
    return cache_dir / sha256[:2] / sha256[2:4] / sha256


def visible_files(cache_dir: Path) -> dict[Path, bytes]:
    """Every file under ``cache_dir`` outside ``.partial`` (what players may see), with its
    bytes."""
    found: dict[Path, bytes] = {}
    if not cache_dir.exists():
        return found
    for path in cache_dir.rglob("*"):
        if path.is_file() and ".partial" not in path.relative_to(cache_dir).parts:
            found[path] = path.read_bytes()
    return found


def misplaced_files(cache_dir: Path) -> list[str]:
    """Files visible in the cache that are not a verified file at the path of its own hash
    (a partial download at a final path, a stray temporary file): should be empty."""
    bad = []
    for path, data in sorted(visible_files(cache_dir).items()):
        digest = sha256_hex(data)
        if path != cache_path(cache_dir, digest):
            bad.append(f"{path.relative_to(cache_dir)} ({len(data)} bytes, sha256 {digest[:12]}…)")
    return bad


def agent_errors(agent: AgentProcess) -> list[str]:
    """The lines of the agent's output (all its runs) that report an error or a traceback."""
    if not agent.output.exists():
        return []
    return [line for line in iter_lines(agent.output) if " ERROR " in line or "Traceback" in line]
