"""The floor: bare paho clients that only echo, one network thread each, as many per process
as the devices (``scripts/echo_floor.py`` is the single-client version).

    python -m fleetsim.echo PORT FIRST COUNT

Client ``floor-NNNN`` subscribes to ``floor/grp/all/cmd`` (QoS 1) and republishes each message
unchanged to ``floor/dev/floor-NNNN/ack`` (QoS 1). Prints ``{"ready": COUNT}`` once every
subscription is granted; stops at ``stop`` or end of input.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

CMD_TOPIC = "floor/grp/all/cmd"


def ack_topic(client_id: str) -> str:
    return f"floor/dev/{client_id}/ack"


def main(argv: list[str]) -> int:
    port, first, count = int(argv[0]), int(argv[1]), int(argv[2])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subscribed = threading.Semaphore(0)
    clients = []
    for index in range(first, first + count):
        client_id = f"floor-{index:04d}"
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        outbound = ack_topic(client_id)

        def on_connect(c: paho.Client, *_args: Any) -> None:
            c.subscribe(CMD_TOPIC, qos=1)

        def on_subscribe(*_args: Any) -> None:
            subscribed.release()

        def on_message(c: paho.Client, _u: Any, msg: paho.MQTTMessage, out: str = outbound) -> None:
            c.publish(out, msg.payload, qos=1)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect("127.0.0.1", port, keepalive=60)
        client.loop_start()
        clients.append(client)
    for _ in clients:
        subscribed.acquire()
    print(json.dumps({"ready": count}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    for client in clients:
        client.disconnect()
        client.loop_stop()
    print(json.dumps({"stopped": count}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
