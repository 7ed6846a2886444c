"""The local control socket: one JSON request line in, one JSON answer line out.

The socket is a Unix socket with mode 0660, so the service user and its group (the
technicians' ``ttcs`` group) can use it; nothing listens on the network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.events import Request

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1 << 20
MAX_ANSWER_BYTES = 64 << 20  # a screenshot of a 4K frame, base64
ANSWER_TIMEOUT_S = 15.0


class AgentNotRunning(Exception):
    """No agent answers on the control socket."""


class ControlServer:
    """Accepts control connections and forwards each request to the director's queue."""

    def __init__(self, path: Path, post: Callable[[Request], None]) -> None:
        self.path = path
        self.post = post
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise RuntimeError(f"another agent is already running on {self.path}")
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o117)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._stopping.is_set():
                    log.exception("control socket failed")
                return
            threading.Thread(
                target=self._handle, args=(conn,), name="control-conn", daemon=True
            ).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            try:
                answer = self._answer(_read_line(conn))
            except (OSError, ValueError, RecursionError) as exc:  # RecursionError: deep JSON
                answer = {"ok": False, "error": f"bad request: {exc}"}
            try:
                conn.sendall(json.dumps(answer, ensure_ascii=False).encode("utf-8") + b"\n")
            except OSError:
                log.debug("control client went away")

    def _answer(self, raw: bytes) -> dict[str, Any]:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("action"), str):
            raise ValueError('expected {"action": ...}')
        args = data.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError("args must be an object")
        req = Request(data["action"], args)
        self.post(req)
        try:
            return req.reply.get(timeout=ANSWER_TIMEOUT_S)
        except queue.Empty:
            return {"ok": False, "error": "the agent did not answer in time"}


def _read_line(conn: socket.socket, limit: int = MAX_REQUEST_BYTES) -> bytes:
    buf = bytearray()
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError("message too large")
    return bytes(buf.split(b"\n", 1)[0])


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def request(path: Path, action: str, timeout: float = 20.0, **args: Any) -> dict[str, Any]:
    """Send one request to a running agent; raise AgentNotRunning when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise AgentNotRunning(
                f"the agent is not running (no control socket at {path})"
            ) from None
        except ConnectionRefusedError:
            raise AgentNotRunning(f"the agent is not running (stale socket at {path})") from None
        except PermissionError:
            raise AgentNotRunning(
                f"permission denied on {path}: run as the service user or a member of its group"
            ) from None
        try:
            sock.sendall(json.dumps({"action": action, "args": args}).encode("utf-8") + b"\n")
            raw = _read_line(sock, MAX_ANSWER_BYTES)
        except (BrokenPipeError, ConnectionResetError):  # it hung up before reading or answering
            raw = b""
    if not raw:
        raise AgentNotRunning("the agent closed the connection without answering")
    answer: dict[str, Any] = json.loads(raw.decode("utf-8"))
    return answer
