#!/usr/bin/env python3
"""The floors of the command → ack path: a bare paho client that echoes, and nothing else.

    python scripts/echo_floor.py PORT INBOUND_TOPIC OUTBOUND_TOPIC [--durable DB]

It subscribes to INBOUND_TOPIC at QoS 1 and republishes every message, unchanged, to
OUTBOUND_TOPIC at QoS 1: the least any MQTT device can do to answer a command. It imports
nothing but paho (and sqlite3), so its memory is also the floor of a Python MQTT client.

With ``--durable DB`` it is the durable floor, the least any exactly-once device can do: before
it replies it commits the command's id (its JSON ``id``) to the SQLite database DB in WAL mode
with ``synchronous=FULL`` (one fsync per command), and paho sends the PUBACK after that, when
the callback returns. Prints ``ready`` once its subscription is granted. ``scripts/bench.py``
runs both next to the agent.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def serve(port: int, inbound: str, outbound: str, durable: str | None = None) -> int:
    """Echo ``inbound`` to ``outbound`` on the broker at 127.0.0.1:``port`` until killed."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-echo-{os.getpid()}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(100)
    db: sqlite3.Connection | None = None
    if durable is not None:
        db = sqlite3.connect(durable, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")

    def on_connect(c: paho.Client, *_args: Any) -> None:
        c.subscribe(inbound, qos=1)

    def on_subscribe(*_args: Any) -> None:
        print("ready", flush=True)

    def on_message(c: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if db is not None:
            # One autocommit statement: one transaction, one fsync of the WAL.
            db.execute(
                "INSERT OR IGNORE INTO seen(id) VALUES (?)", (json.loads(msg.payload)["id"],)
            )
        c.publish(outbound, msg.payload, qos=1)

    def on_socket_open(_c: paho.Client, _userdata: Any, sock: Any) -> None:
        # As the agent's link does: small packets are not held back by Nagle's algorithm.
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_socket_open = on_socket_open
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_forever()
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    path = None
    if len(argv) == 5 and argv[3] == "--durable":
        path = argv[4]
        argv = argv[:3]
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(int(argv[0]), argv[1], argv[2], path))
