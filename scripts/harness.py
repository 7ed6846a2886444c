"""Launchers shared by the demo and the benchmark: a throw-away Mosquitto and agent processes.

This is developer tooling, kept out of the ``agent`` package on purpose (the product ships no
test machinery). Every child is started in its own session, so a Ctrl-C in the terminal reaches
only the script, which then stops the children in order (agent first, so it can publish its
"offline" state, then the broker). On Linux each child also gets SIGTERM if the script dies
without cleaning up (``PR_SET_PDEATHSIG``), so no broker or agent is ever left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from agent.control import AgentNotRunning, request

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
    """A real Mosquitto on a free loopback port, configured by a file written into ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
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

    def start(self) -> Broker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Started as root, Mosquitto drops to the `mosquitto` user unless told otherwise.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"# generated by scripts/harness.py\n{user}"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # Without it, Nagle's algorithm on the broker's sockets meets the clients' delayed
            # ACKs and every small message waits ~40 ms: latencies would measure the kernel.
            "set_tcp_nodelay true\n"
            "max_queued_messages 10000\n"
            f"{self.extra}\n",
            encoding="utf-8",
        )
        self.proc = spawn([self.binary(), "-c", str(self.conf)], self.log)
        wait_for(self._accepts, 10, f"mosquitto on 127.0.0.1:{self.port}")
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f"mosquitto exited at start:\n{tail_text(self.log)}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
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
