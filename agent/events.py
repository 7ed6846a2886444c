"""What the director's queue carries: one small frozen record per kind of event.

The MQTT link, the cache filler, the players, the control socket, the wake-up timer and the
signal handlers never call the director: they put one of these into the ``Inbox``, and the
director's thread takes them out one at a time and dispatches them by type.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.cache_fill import ContentResult
from player.base import PlayEnded, PlayStarted
from protocol.link import Token

Severity = Literal["warning", "error"]
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True)
class Inbound:
    """A message from the broker; ``token`` is handed back to the link once it is handled."""

    topic: str
    payload: bytes
    token: Token | None = None
    retained: bool = False


@dataclass(frozen=True)
class Delivered:
    """The broker acknowledged (``ok``) or refused publication ``mid``."""

    mid: int
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class LinkUp:
    session_present: bool


@dataclass(frozen=True)
class LinkDown:
    reason: str


@dataclass(frozen=True)
class LinkReset:
    """A new MQTT client replaced the old one: publications in flight were dropped."""


@dataclass(frozen=True)
class Tick:
    """Time to decide again what plays (the wake-up that arbitration asked for)."""


@dataclass(frozen=True)
class Trouble:
    """Something a part reports for a person's attention (sent as an ``event`` message)."""

    severity: Severity
    code: str
    detail: str


@dataclass(frozen=True)
class Reload:
    """SIGHUP: read the configuration file again."""

    path: Path


@dataclass(frozen=True)
class Stop:
    """SIGTERM or SIGINT."""


@dataclass(frozen=True)
class Request:
    """A request from the local control socket, answered through ``reply``."""

    action: str
    args: dict[str, JsonValue] = field(default_factory=dict)
    reply: queue.Queue[dict[str, Any]] = field(
        default_factory=lambda: queue.Queue(maxsize=1), compare=False
    )


Event = (
    Inbound
    | Delivered
    | LinkUp
    | LinkDown
    | LinkReset
    | Tick
    | Trouble
    | Reload
    | Stop
    | Request
    | ContentResult
    | PlayStarted
    | PlayEnded
)


class Inbox:
    """The director's queue. ``post`` is safe from any thread and from a signal handler."""

    def __init__(self) -> None:
        # SimpleQueue is re-entrant: a signal handler may put while the same thread is in get().
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def post(self, event: Event) -> None:
        self._queue.put(event)

    def waiting(self) -> bool:
        """Whether events wait to be taken out."""
        return not self._queue.empty()

    def get(self, timeout: float | None) -> Event:
        """The next event (raises ``queue.Empty`` after ``timeout`` seconds)."""
        return self._queue.get(timeout=timeout)

    def report(self, severity: str, code: str, detail: str) -> None:
        """Post a ``Trouble``: the shape the players' and hooks' ``report`` callbacks take."""
        self.post(Trouble("error" if severity == "error" else "warning", code, detail))
