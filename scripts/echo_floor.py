#!/usr/bin/env python3
"""The floor of the command → ack path: a bare paho client that echoes, and nothing else.

    python scripts/echo_floor.py PORT INBOUND_TOPIC OUTBOUND_TOPIC

It subscribes to INBOUND_TOPIC at QoS 1 and republishes every message, unchanged, to
OUTBOUND_TOPIC at QoS 1: the least any MQTT device can do to answer a command. It imports
nothing but paho, so its memory is also the floor of a Python MQTT client. Prints ``ready``
once its subscription is granted. ``scripts/bench.py`` runs it next to the agent.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def serve(port: int, inbound: str, outbound: str) -> int:
    """Echo ``inbound`` to ``outbound`` on the broker at 127.0.0.1:``port`` until killed."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-echo-{os.getpid()}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )

    def on_connect(c: paho.Client, *_args: Any) -> None:
        c.subscribe(inbound, qos=1)

    def on_subscribe(*_args: Any) -> None:
        print("ready", flush=True)

    def on_message(c: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        c.publish(outbound, msg.payload, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_forever()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
