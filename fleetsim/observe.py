"""The control plane's side of the simulation: one MQTT client that publishes the signed
documents and timestamps every ack and state the fleet sends back."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fleetsim.echo import CMD_TOPIC
from fleetsim.provision import PREFIX
from protocol.link import LinkHandler, LinkSettings, MqttLink

Key = tuple[str, ...]  # ("ack", doc id, status, reason) | ("online",) | ("floor",)


class Observer(LinkHandler):
    """Subscribes to every device's ``ack`` and ``state`` and to the floor's echoes, and keeps
    the arrival time of each device's first message of each kind (indexed as they arrive: the
    network thread must keep up with a thousand acks in a second)."""

    def __init__(self, port: int, client_id: str = "fleetsim-control") -> None:
        self._cond = threading.Condition()
        self._seen: dict[Key, list[tuple[float, str]]] = {}
        self.link = MqttLink(
            LinkSettings(
                host="127.0.0.1",
                port=port,
                client_id=client_id,
                protocol="5",
                persistent=True,
                session_expiry_s=86400,
                reconnect_min_s=0.05,
                reconnect_max_s=0.1,
                subscriptions=(f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state", "floor/dev/+/ack"),
            ),
            self,
        )

    def start(self, timeout: float = 15.0) -> None:
        self.link.start()
        if not self.link.wait_connected(timeout):
            raise RuntimeError("the control plane's client could not connect to the broker")

    def stop(self) -> None:
        self.link.stop()

    def message(self, topic: str, payload: bytes, token: Any, retained: bool) -> None:
        at = time.monotonic()
        parts = topic.split("/")
        if topic.startswith("floor/"):
            key: Key = ("floor",)
        elif retained:
            return  # a state from before this run, not news
        else:
            try:
                data = json.loads(payload)
            except ValueError:
                return
            if parts[-1] == "state":
                if data.get("online") is not True:
                    return
                key = ("online",)
            else:
                key = ack(str(data.get("cmd")), str(data.get("status")), str(data.get("reason")))
        with self._cond:
            self._seen.setdefault(key, []).append((at, parts[-2]))
            if key[0] == "ack":  # also under any reason
                self._seen.setdefault((*key[:3], "*"), []).append((at, parts[-2]))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> float:
        """Hand a message to the client (QoS 1); return the instant (monotonic)."""
        at = time.monotonic()
        self.link.publish(topic, payload, qos=1, retain=retain)
        return at

    def publish_floor(self, payload: bytes) -> float:
        return self.publish(CMD_TOPIC, payload)

    def select(self, key: Key, since: float = 0.0) -> dict[str, float]:
        """The first instant each device sent a message of ``key``, after ``since``."""
        firsts: dict[str, float] = {}
        with self._cond:
            items = list(self._seen.get(key, ()))
        for at, device in items:
            if at >= since and device not in firsts:
                firsts[device] = at
        return firsts

    def wait(self, key: Key, count: int, timeout: float, since: float = 0.0) -> dict[str, float]:
        """Wait until ``count`` devices sent a message of ``key`` (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.select(key, since)
            left = deadline - time.monotonic()
            if len(found) >= count or left <= 0:
                return found
            with self._cond:
                self._cond.wait(min(left, 0.5))


def ack(doc_id: str, status: str, reason: str = "*") -> Key:
    """The key of a device's ack of ``doc_id`` with ``status`` and ``reason`` (any: ``*``)."""
    return ("ack", doc_id, status, reason)


ONLINE: Key = ("online",)
FLOOR: Key = ("floor",)
