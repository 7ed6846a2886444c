"""Moves the outbox to the broker: rows leave the store only when the broker acknowledged them."""

from __future__ import annotations

import logging
from typing import Protocol

from agent.store import Store

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """The part of the link the courier uses."""

    @property
    def connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int: ...


class Courier:
    """Hands outbox rows to the link in order, a bounded window at a time.

    Once handed over, a row stays with the same client (paho resends it after a reconnect) until
    its PUBACK; only a new client (``reset``) or a restart of the agent hands it over again.
    Not thread-safe: the director calls it from its own thread.
    """

    def __init__(self, store: Store, link: Publisher, window: int = 32) -> None:
        self.store = store
        self.link = link
        self.window = window
        self._in_flight: dict[int, int] = {}  # mid -> seq
        self._last_handed = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def pump(self) -> int:
        """Hand over as many waiting rows as the window allows; return how many."""
        if not self.link.connected:
            return 0
        room = self.window - len(self._in_flight)
        if room <= 0 or self.store.last_seq <= self._last_handed:
            return 0
        handed = 0
        for item in self.store.pending(after_seq=self._last_handed, limit=room):
            mid = self.link.publish(item.topic, item.payload, qos=item.qos)
            self._last_handed = item.seq
            handed += 1
            if item.qos == 0:
                self.store.delivered(item.seq)
            else:
                self._in_flight[mid] = item.seq
        return handed

    def delivered(self, mid: int, ok: bool, detail: str) -> None:
        """The broker acknowledged ``mid``: drop its row (a refusal is only logged)."""
        seq = self._in_flight.pop(mid, None)
        if seq is None:
            return
        if not ok:
            log.error("broker refused outbox message %d: %s", seq, detail)
        self.store.delivered(seq)

    def reset(self) -> None:
        """Forget what was handed to a client that no longer exists; it will be handed again."""
        self._in_flight.clear()
        self._last_handed = 0
