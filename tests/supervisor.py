"""What systemd does for the agent's unit (``Type=notify``, ``WatchdogSec``, ``Restart=always``),
over a real notify socket, for machines where no systemd manager can be run.

It starts the command with ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` set, reads READY=1 and
WATCHDOG=1, and when no ping came for ``watchdog_s`` it sends SIGABRT, then SIGKILL after
``abort_s`` (systemd's ``TimeoutAbortSec``), waits ``restart_s`` (``RestartSec``) and starts the
command again. Every event is recorded with its ``time.monotonic`` time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Event:
    at: float
    what: str  # "start", "ready", "ping", "watchdog", "abort", "kill", "exit"
    pid: int
    detail: str = ""


@dataclass
class Supervisor:
    """Runs ``argv`` as a notify service with a watchdog; ``events`` says what happened."""

    argv: Sequence[str]
    workdir: Path
    watchdog_s: float
    abort_s: float = 5.0
    restart_s: float = 1.0
    cwd: Path | None = None
    output: Path | None = None
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._path = self.workdir / "notify.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self._path))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.watchdog_s + self.abort_s + 10)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._sock.close()

    def of(self, what: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.what == what]

    def _record(self, what: str, pid: int, detail: str = "") -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), what, pid, detail))

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(self._path),
            "WATCHDOG_USEC": str(int(self.watchdog_s * 1e6)),
        }
        out = self.output.open("ab") if self.output else subprocess.DEVNULL
        proc = subprocess.Popen(
            list(self.argv), env=env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT
        )
        self._record("start", proc.pid)
        return proc

    def _run(self) -> None:
        while not self._stop.is_set():
            self._proc = proc = self._spawn()
            last_ping: float | None = None
            while not self._stop.is_set() and proc.poll() is None:
                self._sock.settimeout(0.1)
                try:
                    message = self._sock.recv(4096).decode("utf-8", "replace")
                except TimeoutError:
                    message = ""
                now = time.monotonic()
                for line in message.splitlines():
                    if line == "READY=1":
                        self._record("ready", proc.pid)
                        last_ping = now
                    elif line == "WATCHDOG=1":
                        self._record("ping", proc.pid)
                        last_ping = now
                if last_ping is not None and now - last_ping > self.watchdog_s:
                    self._record("watchdog", proc.pid, f"no ping for {now - last_ping:.1f} s")
                    self._abort(proc)
                    break
            if self._stop.is_set():
                return
            code = proc.wait()
            self._record("exit", proc.pid, str(code))
            self._stop.wait(self.restart_s)

    def _abort(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGABRT)
        self._record("abort", proc.pid)
        try:
            proc.wait(self.abort_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            self._record("kill", proc.pid)
