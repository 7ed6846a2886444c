"""MQTT 5 → 3.1.1 fallback against a broker that only speaks 3.1.1.

Mosquitto always accepts MQTT 5, so the 3.1.1-only broker is the real Mosquitto behind a small
TCP gate that answers an MQTT 5 CONNECT exactly as a 3.1.1 broker does (CONNACK return code 1,
"unacceptable protocol version") and passes every 3.1.1 connection through untouched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.keys import SigningKey
from tests.helpers import PREFIX, AgentProcess, Broker, Listener, command, provision, wait_for


class Mqtt311Gate:
    """A loopback TCP gate in front of a real broker that refuses MQTT 5 CONNECTs."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.refused_v5 = 0
        self.passed_v311 = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Mqtt311Gate:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.server.close()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            head = _read_packet(client)
        except OSError:
            client.close()
            return
        # CONNECT variable header: protocol name "MQTT" (2 + 4 bytes), then the level byte.
        body_start = 1 + _varint_len(head, 1)
        level = head[body_start + 6]
        if level >= 5:
            self.refused_v5 += 1
            client.sendall(bytes([0x20, 0x02, 0x00, 0x01]))
            client.close()
            return
        self.passed_v311 += 1
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        upstream.sendall(head)
        client.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _varint_len(data: bytes, start: int) -> int:
    n = 0
    while data[start + n] & 0x80:
        n += 1
    return n + 1


def _read_packet(sock: socket.socket) -> bytes:
    buf = bytearray(sock.recv(1))
    multiplier, length = 1, 0
    while True:
        byte = sock.recv(1)[0]
        buf.append(byte)
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        if not byte & 0x80:
            break
    while len(buf) < 1 + _varint_len(bytes(buf), 1) + length:
        chunk = sock.recv(length)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return bytes(buf)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def gate(broker: Broker) -> Iterator[Mqtt311Gate]:
    with Mqtt311Gate(broker.port) as g:
        yield g


def test_agent_falls_back_to_311_and_works(
    tmp_path: Path, broker: Broker, gate: Mqtt311Gate, signing_key: SigningKey
) -> None:
    gated = Broker(broker.workdir, port=gate.port)  # only its URL is used
    dev = provision(tmp_path, gated, signing_key)
    agent = AgentProcess(dev).start()
    try:
        wait_for(lambda: gate.passed_v311 >= 1, 20, "a 3.1.1 connection through the gate")
        assert gate.refused_v5 >= 1
        with Listener(broker, [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"]) as listener:
            topic, payload, doc = command(signing_key, "ping")
            listener.publish(topic, payload)
            assert listener.wait_ack(doc["id"], timeout=15)["status"] == "done"
            states = listener.json_on("/state")
            assert states and states[-1]["online"] is True
    finally:
        agent.stop()
