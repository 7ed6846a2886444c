"""Launchers shared by the demo, the benchmark and the tests: a throw-away Mosquitto, agent
processes, and a media server that counts every byte it sends.

This is developer tooling, kept out of the installed packages on purpose (the product ships no
test machinery). The scripts import it as ``harness``: their own folder comes first on
``sys.path``. So do the tests, through ``tests.helpers``: pyproject.toml puts this folder on the
path of pytest (``pythonpath``) and of mypy (``mypy_path``).

Every child is started in its own session, so a Ctrl-C in the terminal reaches only the script,
which then stops the children in order (agent first, so it can publish its "offline" state, then
the broker). On Linux each child also gets SIGTERM if the thread that started it ends without
cleaning up (``PR_SET_PDEATHSIG``), so no broker or agent is ever left behind: start them from a
thread that outlives them (the main thread, as the scripts and the tests' fixtures do).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from agent.control_socket import AgentNotRunning, request

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")

T = TypeVar("T")


class HarnessError(Exception):
    """A broker or agent did not start or stop as expected; the message says which and why."""


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy; HarnessError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def tail_text(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no output)"


def proc_status_kib(pid: int) -> dict[str, int]:
    """The ``Vm*`` lines of /proc/PID/status, in KiB (e.g. ``VmRSS``, ``VmHWM``)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def proc_figures(pid: int) -> tuple[int, int, int]:
    """A process's resident memory (KiB), open file descriptors and threads, from /proc."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def raise_on_termination() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into KeyboardInterrupt, so ``finally`` blocks clean up.

    SIGINT too, because a shell without job control starts background jobs with SIGINT ignored.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


_PR_SET_PDEATHSIG = 1
_LIBC_NAME = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_LIBC_NAME, use_errno=True) if _LIBC_NAME and sys.platform == "linux" else None


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM them if this process dies (Linux; else a no-op)."""
    # Runs in the child between fork and exec: only an async-signal-safe system call here.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    argv: list[str], output: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a child in its own session, its stdout and stderr appended to ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("ab") as sink:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float, sig: int = signal.SIGTERM) -> int:
    """Signal ``proc`` and wait; kill it if it does not end within ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


# --------------------------------------------------------------------------- broker


class Broker:
    """A real Mosquitto on a loopback port, configured by a file written into ``workdir``.

    The port is a free one unless given, and stays the same across ``stop()`` and ``start()``:
    a restart looks to the clients like their broker coming back. With ``persistence`` (the
    default) the broker keeps retained messages, sessions and their queued QoS 1 messages in
    ``workdir`` across a restart. ``extra`` is appended to the configuration (more listeners,
    a bridge, an ACL, ``log_type all``). The log, of every run, is ``workdir/mosquitto.log``.
    """

    def __init__(
        self, workdir: Path, port: int | None = None, extra: str = "", persistence: bool = True
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.persistence = persistence
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        found = shutil.which("mosquitto")
        if found:
            return found
        for candidate in MOSQUITTO_CANDIDATES:
            if os.access(candidate, os.X_OK):
                return candidate
        raise HarnessError("mosquitto is not installed (apt-get install mosquitto)")

    def config_text(self) -> str:
        """The configuration ``start()`` writes."""
        # Started as root, Mosquitto drops to the `mosquitto` user unless told otherwise.
        user = "user root\n" if os.geteuid() == 0 else ""
        if self.persistence:
            # Saved every second, and at a clean stop: a restart finds what was there.
            store = f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 1\n"
        else:
            store = "persistence false\n"
        return (
            f"# generated by scripts/harness.py\n{user}"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"{store}"
            # Without it, Nagle's algorithm on the broker's sockets meets the clients' delayed
            # ACKs and every small message waits ~40 ms: latencies would measure the kernel.
            "set_tcp_nodelay true\n"
            "max_queued_messages 10000\n"
            f"{self.extra}\n"
        )

    def start(self) -> Broker:
        """Start (or start again, on the same port) and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError(f"mosquitto on port {self.port} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config_text(), encoding="utf-8")
        self.proc = spawn([self.binary(), "-c", str(self.conf)], self.log)
        wait_for(self._accepts, 10, f"mosquitto on 127.0.0.1:{self.port}")
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f"mosquitto exited at start:\n{tail_text(self.log)}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """SIGTERM (the broker saves its state), SIGKILL after 10 s; nothing when not running."""
        if self.proc is not None:
            stop_process(self.proc, 10)
        self.proc = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- agent


class Agent:
    """``ttcs-agent run --config FILE`` as a child process of this interpreter."""

    def __init__(
        self,
        config: Path,
        socket_path: Path,
        output: Path,
        python_args: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.socket_path = socket_path
        self.output = output
        self.python_args = python_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise HarnessError("the agent is not running")
        return self.proc.pid

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            *self.python_args,
            "-m",
            "agent",
            "run",
            "--config",
            str(self.config),
        ]

    def start(self, timeout: float = 20) -> Agent:
        """Start the agent and wait until it answers locally and is connected to the broker."""
        env = dict(os.environ)
        # Headless by default: no window, no sound card needed.
        env.setdefault("SDL_VIDEODRIVER", "dummy")
        env.setdefault("SDL_AUDIODRIVER", "dummy")
        self.proc = spawn(self.argv, self.output, env)
        wait_for(self._connected, timeout, "the agent to connect to the broker")
        return self

    def status(self) -> dict[str, Any]:
        """The running agent's status, from its control socket."""
        answer = request(self.socket_path, "status", timeout=5)
        if not answer.get("ok"):
            raise HarnessError(f"the agent refused a status request: {answer.get('error')}")
        status: dict[str, Any] = answer["status"]
        return status

    def _connected(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(
                f"the agent exited with status {self.proc.returncode}:\n{tail_text(self.output)}"
            )
        try:
            return bool(self.status().get("link", {}).get("connected"))
        except (AgentNotRunning, OSError, ValueError):
            return False

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM (the agent's clean shutdown path); return its exit status."""
        if self.proc is None:
            return 0
        code = stop_process(self.proc, timeout)
        self.proc = None
        return code

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- media server


@dataclass
class Served:
    """One response of the media server: what was asked, and every byte sent for it (status
    line, headers and body)."""

    path: str
    range: str | None
    status: int
    bytes_sent: int = 0


class MediaServer:
    """A real HTTP/1.1 server for media files on a free loopback port, in a thread of this process.

    Keeps connections alive as a CDN would, answers ``Range: bytes=N-`` (and ``N-M``) with 206,
    a range past the end with 416, an unknown path with 404. ``served`` records every response
    with the bytes actually written to the socket for it, headers included, so that a transfer
    can be measured exactly: ``mark()`` before, ``sent(since=mark)`` after (once ``idle``).
    """

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.served: list[Served] = []
        self.unattributed = 0  # bytes of answers to requests that never reached a handler
        self._in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _media_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name.lstrip('/')}"

    def add(self, name: str, data: bytes, mime: str = "application/octet-stream") -> str:
        """Serve ``data`` at ``/name``; return its URL."""
        with self._lock:
            self.files["/" + name.lstrip("/")] = (data, mime)
        return self.url(name)

    def media(self, name: str, data: bytes, mime: str) -> dict[str, Any]:
        """Serve ``data`` at ``/name`` and return the protocol's ``Media`` object for it."""
        return {
            "url": self.add(name, data, mime),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "mime": mime,
        }

    def mark(self) -> int:
        """A place in ``served``, for ``sent(since=...)``."""
        with self._lock:
            return len(self.served)

    def since(self, mark: int = 0) -> list[Served]:
        with self._lock:
            return list(self.served[mark:])

    def sent(self, since: int = 0) -> int:
        """Bytes sent in the responses recorded from ``since`` on, headers included."""
        return sum(s.bytes_sent for s in self.since(since))

    @property
    def idle(self) -> bool:
        """No response is being written right now."""
        with self._lock:
            return self._in_flight == 0

    def start(self) -> MediaServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="media-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    # Called from the handler threads.

    def _begin(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)
            self._in_flight += 1

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _count(self, served: Served | None, n: int) -> None:
        with self._lock:
            if served is None:
                self.unattributed += n
            else:
                served.bytes_sent += n

    def _lookup(self, path: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self.files.get(path)


class _CountingWriter(io.BufferedIOBase):
    """Wraps a handler's ``wfile``: every byte written reaches ``count`` once it is sent."""

    def __init__(self, raw: io.BufferedIOBase, count: Callable[[int], None]) -> None:
        super().__init__()
        self.raw = raw
        self.count = count

    def writable(self) -> bool:
        return True

    def write(self, buffer: ReadableBuffer, /) -> int:
        written = self.raw.write(buffer)
        self.count(memoryview(buffer).nbytes)
        return written

    def flush(self) -> None:
        if not self.raw.closed:
            self.raw.flush()

    def close(self) -> None:
        super().close()  # flushes first
        with contextlib.suppress(OSError):
            self.raw.close()


_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


def _media_handler(server: MediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real media server or CDN
        timeout = 30  # an idle kept-alive connection is closed after this long

        def setup(self) -> None:
            super().setup()
            self.current: Served | None = None
            self.wfile = _CountingWriter(self.wfile, self._count)

        def _count(self, n: int) -> None:
            server._count(self.current, n)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer(with_body=True)

        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def _answer(self, with_body: bool) -> None:
            path = urlsplit(self.path).path
            rng = self.headers.get("Range")
            self.current = Served(path, rng, 0)
            server._begin(self.current)
            try:
                self._respond(path, rng, with_body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True  # the client went away
            finally:
                self.current = None
                server._end()

        def _respond(self, path: str, rng: str | None, with_body: bool) -> None:
            assert self.current is not None
            found = server._lookup(path)
            if found is None:
                self.current.status = 404
                self.send_error(404)
                return
            data, mime = found
            start, end, status = 0, len(data) - 1, 200
            match = _RANGE_RE.match(rng or "")
            if match:
                start = int(match[1])
                if start >= len(data):
                    self.current.status = 416
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                end, status = min(int(match[2] or end), end), 206
            body = data[start : end + 1]
            self.current.status = status
            self.send_response(status)
            self.send_header("Content-Type", mime)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if with_body:
                self.wfile.write(body)

    return Handler
