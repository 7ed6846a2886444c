"""Fuzzing the control socket's request handling (``ControlServer._handle``) end to end.

Each request is written into one end of a real socket pair; the other end goes to the
server's own handler, which reads the line, parses it, hands it to a real director (in-memory
store, no screen nor speaker) and writes the answer. Whatever the bytes, the handler raises
nothing and answers one JSON line with ``ok``; a request that is answered ``ok: false``
changes nothing; ``inject`` executes only a validly signed document.
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import AgentConfig
from agent.control_socket import MAX_REQUEST_BYTES, ControlServer
from agent.store import Store
from tests import fuzzing
from tests.unit.fakes import agent_config, canonical, make_rig
from tests.unit.test_fuzz import (
    SIGNER,
    TEXT,
    VALID,
    VALID_FORMS,
    byte_mutations,
    field_mutations,
    json_values,
)

NAME = "control socket requests"
ACTIONS = ["status", "volume", "logs", "inject", "screenshot", "say", "cache.gc", "test-screen"]


@pytest.fixture(scope="module")
def config() -> Iterator[AgentConfig]:
    with tempfile.TemporaryDirectory(prefix="ttcs-fuzz-control-") as tmp:
        yield agent_config(Path(tmp), SIGNER)


def signed_form(document: Any) -> bool:
    """``document`` is the text of one of the validly signed documents."""
    try:
        doc = json.loads(str(document))
        return isinstance(doc, dict) and canonical(doc) in VALID_FORMS
    except (ValueError, RecursionError, UnicodeEncodeError):
        return False


def _send(client: socket.socket, raw: bytes) -> None:
    with contextlib.suppress(OSError):  # the server stops reading past its limit
        client.sendall(raw)
        client.shutdown(socket.SHUT_WR)


def request_and_check(config: AgentConfig, raw: bytes) -> None:
    rig = make_rig(Store(Path(":memory:")), config, SIGNER)
    server = ControlServer(config.paths.socket_path, rig.director.handle)
    client, end = socket.socketpair()
    try:
        with client:
            # Sent from another thread: a request larger than the socket's buffer must not wait
            # for a reader that is this thread.
            sender = threading.Thread(target=_send, args=(client, raw))
            sender.start()
            server._handle(end)  # closes its end
            sender.join(10)
            try:
                reply = b"".join(iter(lambda: client.recv(65536), b""))
            except ConnectionResetError:
                # Past its limit the server answers and closes with the rest unread, which
                # resets the connection: the client may lose the answer, never the agent.
                assert len(raw.split(b"\n", 1)[0]) > MAX_REQUEST_BYTES, raw[:300]
                return
        line, newline, rest = reply.partition(b"\n")
        assert newline and rest == b"", reply[:300]
        answer = json.loads(line)
        assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), answer
        try:
            data = json.loads(raw.split(b"\n", 1)[0])
        except (ValueError, RecursionError):
            data = None
        action = data.get("action") if isinstance(data, dict) else None
        args = data.get("args") if isinstance(data, dict) else None
        args = args if isinstance(args, dict) else {}
        if not answer["ok"]:
            assert isinstance(answer.get("error"), str) and answer["error"], answer
            assert rig.settings() == {} and rig.seen_ids() == set(), answer
            return
        fuzzing.accepted(NAME)
        assert action in ACTIONS, answer
        if action == "volume":
            percent = int(args["percent"])
            assert 0 <= percent <= 100
            assert rig.settings() == {"volume": str(percent)}
        elif action == "inject" and not signed_form(args.get("document", "")):
            assert {a["status"] for a in answer["acks"]} <= {"rejected"}, answer
            assert rig.seen_ids() == set() and rig.settings() == {}
        elif action != "inject":
            assert rig.seen_ids() == set()
    finally:
        rig.store.close()


# --------------------------------------------------------------------------- strategies

ARGS = st.dictionaries(
    st.sampled_from(["percent", "lines", "document", "max_width", "text", "seconds"]) | TEXT,
    json_values,
    max_size=3,
)
DOCUMENTS = (
    byte_mutations().map(lambda m: m[1].decode("utf-8", "replace"))
    | field_mutations(resign=True).map(lambda m: m[1].decode("utf-8", "surrogatepass"))
    | st.sampled_from([json.dumps(doc) for _, doc in VALID])
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    action = draw(st.sampled_from(ACTIONS) | TEXT | json_values)
    args: Any = draw(ARGS | json_values)
    if action == "inject" and isinstance(args, dict) and draw(st.booleans()):
        args["document"] = draw(DOCUMENTS)
    if action == "volume" and isinstance(args, dict) and draw(st.booleans()):
        args["percent"] = draw(st.integers(min_value=-5, max_value=105) | json_values)
    request: Any = {"action": action, "args": args}
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        request = draw(st.sampled_from([[request], action, {"args": args}, None]))
    text = json.dumps(request, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass") + draw(st.sampled_from([b"\n", b"", b"\n\n{"]))


@fuzzing.fuzz_settings(250)
@given(raw=requests())
@fuzzing.target(NAME, catch_all=True)
def test_control_requests(config: AgentConfig, raw: bytes) -> None:
    request_and_check(config, raw)


@fuzzing.fuzz_settings(40)
@given(raw=st.binary(max_size=300))
@fuzzing.target(NAME, catch_all=True)
def test_control_arbitrary_bytes(config: AgentConfig, raw: bytes) -> None:
    request_and_check(config, raw)


@fuzzing.fuzz_settings(10)
@given(depth=st.integers(min_value=1, max_value=200_000), opener=st.sampled_from("[{"))
@fuzzing.target(NAME, catch_all=True)
def test_control_deep_nesting(config: AgentConfig, depth: int, opener: str) -> None:
    body = ('{"a":' * depth + "1" + "}" * depth) if opener == "{" else "[" * depth + "]" * depth
    request_and_check(config, body.encode() + b"\n")


def test_control_valid_requests_are_answered(config: AgentConfig) -> None:
    """The oracle's other side: a good volume request and a signed document are executed."""
    request_and_check(config, b'{"action": "volume", "args": {"percent": 35}}\n')
    request_and_check(config, b'{"action": "status"}\n')
    _, doc = VALID[0]
    request_and_check(
        config,
        json.dumps({"action": "inject", "args": {"document": json.dumps(doc)}}).encode() + b"\n",
    )
    assert fuzzing.TALLY[NAME].accepted >= 3


def test_control_memory_stayed_bounded() -> None:
    fuzzing.check_memory(NAME)
