"""The control plane's side of the simulation: one MQTT client that publishes the signed
documents and timestamps every ack and state the fleet sends back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetsim.echo import CMD_TOPIC
from fleetsim.provision import PREFIX
from protocol.link import LinkHandler, LinkSettings, MqttLink


@dataclass(frozen=True)
class Seen:
    """One message from a device: when it arrived (monotonic), from whom, what it said."""

    at: float
    device: str
    kind: str  # "ack", "state" or "floor"
    data: dict[str, Any]


class Observer(LinkHandler):
    """Subscribes to every device's ``ack`` and ``state`` and to the floor's echoes."""

    def __init__(self, port: int, client_id: str = "fleetsim-control") -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.seen: list[Seen] = []
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
        try:
            data = json.loads(payload) if not topic.startswith("floor/") else {}
        except ValueError:
            return
        if topic.startswith("floor/"):
            kind, device = "floor", parts[2]
        elif retained:
            return  # a state from before this run, not news
        else:
            kind, device = parts[-1], parts[-2]
        with self._cond:
            self.seen.append(Seen(at, device, kind, data))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> float:
        """Hand a message to the client (QoS 1); return the instant (monotonic)."""
        at = time.monotonic()
        self.link.publish(topic, payload, qos=1, retain=retain)
        return at

    def publish_floor(self, payload: bytes) -> float:
        return self.publish(CMD_TOPIC, payload)

    def select(self, match: Callable[[Seen], bool], since: float = 0.0) -> dict[str, float]:
        """The first instant each device sent a message that ``match``es, after ``since``."""
        firsts: dict[str, float] = {}
        with self._lock:
            for item in self.seen:
                if item.at >= since and item.device not in firsts and match(item):
                    firsts[item.device] = item.at
        return firsts

    def wait(
        self, match: Callable[[Seen], bool], count: int, timeout: float, since: float = 0.0
    ) -> dict[str, float]:
        """Wait until ``count`` devices sent a matching message (or ``timeout``); see ``select``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.select(match, since)
            left = deadline - time.monotonic()
            if len(found) >= count or left <= 0:
                return found
            with self._cond:
                self._cond.wait(min(left, 0.2))


def ack_of(doc_id: str, status: str, reason: str | None = None) -> Callable[[Seen], bool]:
    """Matches a device's ack of ``doc_id`` with ``status`` (and ``reason``)."""

    def match(item: Seen) -> bool:
        return (
            item.kind == "ack"
            and item.data.get("cmd") == doc_id
            and item.data.get("status") == status
            and (reason is None or item.data.get("reason") == reason)
        )

    return match


def online(item: Seen) -> bool:
    return item.kind == "state" and item.data.get("online") is True


def floor_echo(item: Seen) -> bool:
    return item.kind == "floor"
