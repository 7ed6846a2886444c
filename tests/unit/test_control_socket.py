"""agent.control_socket: ControlServer and ``request`` over a real Unix socket: answers, bad
and oversized requests, a second agent, a stale socket, permissions, a dead agent."""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import queue
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.control_socket import (
    MAX_REQUEST_BYTES,
    AgentNotRunning,
    ControlServer,
    request,
)
from agent.events import Request
from tests.unit.fakes import DirectorThread, answering


@pytest.fixture
def director() -> Iterator[DirectorThread]:
    d = DirectorThread()
    yield d
    d.stop()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "control.sock"


@pytest.fixture
def server(path: Path, director: DirectorThread) -> Iterator[ControlServer]:
    s = ControlServer(path, director.post)
    s.start()
    yield s
    s.stop()


def raw(path: Path, data: bytes) -> bytes:
    """Send ``data`` as it is, end the request side, return the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_request_reaches_the_director_and_its_answer_comes_back(
    server: ControlServer, path: Path, director: DirectorThread
) -> None:
    answer = request(path, "volume", percent=40)
    assert answer == {"ok": True, "action": "volume", "args": {"percent": 40}}
    [req] = director.posted
    assert isinstance(req, Request)
    assert (req.action, req.args) == ("volume", {"percent": 40})


def test_vietnamese_text_and_a_large_answer_arrive_intact(path: Path) -> None:
    text = "Thông báo: mời bà con đến Ủy ban nhân dân phường nhận gạo hỗ trợ."
    png = "iVBORw0KGgo" * 300_000  # a screenshot's base64, over 3 MiB
    director = DirectorThread(
        answering(lambda req: {"ok": True, "text": req.args["text"], "png": png})
    )
    server = ControlServer(path, director.post)
    server.start()
    try:
        answer = request(path, "say", text=text)
    finally:
        server.stop()
        director.stop()
    assert answer["text"] == text
    assert answer["png"] == png


def test_the_socket_is_for_the_service_user_and_its_group_and_goes_at_stop(
    path: Path, director: DirectorThread
) -> None:
    server = ControlServer(path, director.post)
    server.start()
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    server.stop()
    assert not path.exists()
    with pytest.raises(AgentNotRunning, match="not running \\(no control socket at"):
        request(path, "status")


@pytest.mark.parametrize(
    ("sent", "error"),
    [
        (b"", "bad request: Expecting value"),  # connected, then closed at once
        (b"status\n", "bad request: Expecting value"),
        (b"[1, 2]\n", 'bad request: expected {"action": ...}'),
        (b'{"args": {}}\n', 'bad request: expected {"action": ...}'),
        (b'{"action": 5}\n', 'bad request: expected {"action": ...}'),
        (b'{"action": "status", "args": [1]}\n', "bad request: args must be an object"),
        (b'{"action": "say", "args": {"text": "\xff\xfe"}}\n', "bad request: 'utf-8' codec"),
    ],
)
def test_a_bad_request_gets_an_error_and_reaches_nobody(
    server: ControlServer, path: Path, director: DirectorThread, sent: bytes, error: str
) -> None:
    answer = raw(path, sent)
    assert answer.endswith(b"\n") and answer.count(b"\n") == 1
    decoded = json.loads(answer)
    assert decoded["ok"] is False
    assert decoded["error"].startswith(error)
    assert director.posted == []
    assert request(path, "status")["ok"] is True  # the server goes on


def test_an_oversized_request_is_refused_before_it_is_parsed(
    server: ControlServer, path: Path, director: DirectorThread
) -> None:
    answer = raw(path, b"x" * (MAX_REQUEST_BYTES + 1))
    assert answer == b'{"ok": false, "error": "bad request: message too large"}\n'
    assert director.posted == []


def test_a_request_just_under_the_limit_is_answered(
    server: ControlServer, path: Path, director: DirectorThread
) -> None:
    envelope = len('{"action": "inject", "args": {"document": ""}}\n')
    document = "d" * (MAX_REQUEST_BYTES - envelope)
    answer = request(path, "inject", document=document)
    assert answer["ok"] is True and answer["args"]["document"] == document


def test_answers_go_back_to_their_own_connections(path: Path) -> None:
    """Two technicians at once; the director answers the second request first."""
    arrived: queue.Queue[Request] = queue.Queue()

    def post(req: Request) -> None:
        arrived.put(req)

    def director() -> None:
        first, second = arrived.get(timeout=10), arrived.get(timeout=10)
        for req in (second, first):
            req.reply.put({"ok": True, "for": req.args["who"]})

    server = ControlServer(path, post)
    server.start()
    answering = threading.Thread(target=director, daemon=True)
    answering.start()
    answers: dict[str, dict[str, Any]] = {}
    try:
        clients = [
            threading.Thread(target=lambda w=who: answers.update({w: request(path, "x", who=w)}))
            for who in ("an", "binh")
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(15)
    finally:
        answering.join(5)
        server.stop()
    assert answers == {"an": {"ok": True, "for": "an"}, "binh": {"ok": True, "for": "binh"}}


def test_a_second_agent_on_the_same_socket_is_refused(
    server: ControlServer, path: Path, director: DirectorThread
) -> None:
    second = ControlServer(path, director.post)
    with pytest.raises(RuntimeError, match="another agent is already running on"):
        second.start()
    assert request(path, "status")["ok"] is True  # the first one is untouched


def test_a_stale_socket_is_reported_and_replaced_at_start(
    path: Path, director: DirectorThread
) -> None:
    path.parent.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # an agent that was killed: the file stays, nobody listens
    dead.close()
    with pytest.raises(AgentNotRunning, match="not running \\(stale socket at"):
        request(path, "status")

    server = ControlServer(path, director.post)
    server.start()
    try:
        assert request(path, "status")["ok"] is True
    finally:
        server.stop()


def test_an_agent_that_closes_without_answering(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.close()

        closer = threading.Thread(target=hang_up, daemon=True)
        closer.start()
        with pytest.raises(AgentNotRunning, match="closed the connection without answering"):
            request(path, "status", timeout=10)
        closer.join(5)


def raised_by(ask: Callable[[], object]) -> BaseException | None:
    try:
        ask()
    except BaseException as exc:
        return exc
    return None


def as_nobody(ask: Callable[[], object]) -> BaseException | None:
    """``raised_by(ask)`` on a thread whose file-system identity is nobody's: fsuid and fsgid
    are per thread, and without uid 0 it loses root's right to open any file."""
    nobody = pwd.getpwnam("nobody")
    raised: list[BaseException | None] = []

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setfsgid(nobody.pw_gid)
        libc.setfsuid(nobody.pw_uid)
        raised.append(raised_by(ask))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(15)
    return raised[0]


def test_a_user_outside_the_group_is_told_permission_denied(director: DirectorThread) -> None:
    # In a folder anyone may enter, as /var/lib/ttcs-agent is; the socket itself is 0660.
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        path = Path(folder) / "control.sock"
        server = ControlServer(path, director.post)
        server.start()
        try:
            if os.geteuid() == 0:
                raised = as_nobody(lambda: request(path, "status", timeout=10))
            else:
                os.chmod(path, 0)  # not even its owner may open it now
                raised = raised_by(lambda: request(path, "status", timeout=10))
        finally:
            server.stop()
    assert isinstance(raised, AgentNotRunning), raised
    assert str(raised) == (
        f"permission denied on {path}: run as the service user or a member of its group"
    )
    assert director.posted == []
