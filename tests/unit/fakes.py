"""Honest in-memory fakes and small builders for the unit tests.

The signer here is written from PROTOCOL.md with ``cryptography`` directly; it never calls
``protocol.signing``, so a test that signs with it and verifies with the agent checks the agent's
canonicalization against an independent one.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.config import AgentConfig
from agent.director import Director
from agent.events import Event, Inbound, Request
from agent.logs import Redactor
from agent.outbox import Outbox
from agent.playback import NullPlayback
from agent.store import Store
from agent.verify import Verifier
from protocol import Topics

DEVICE = "q10-p12-bang-01"
GROUPS = ("q10-p12", "q10")
PREFIX = "ttcs/v1"
KID = "hcm-2026"
NOW = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)
TOPICS = Topics(PREFIX)
CMD_TOPIC = TOPICS.dev(DEVICE, "cmd")
PROGRAM_TOPIC = TOPICS.dev(DEVICE, "program")
ACK_TOPIC = TOPICS.dev(DEVICE, "ack")
EVENT_TOPIC = TOPICS.dev(DEVICE, "event")


def rfc3339(moment: datetime) -> str:
    """Written here rather than taken from protocol, to stay independent of it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- clocks


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeMonotonic:
    """A monotonic clock (seconds) that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


# --------------------------------------------------------------------------- history


class MemoryHistory:
    """The verifier's ``History`` kept in memory: what the store would answer."""

    def __init__(self, seen: Iterable[str] = (), versions: dict[str, int] | None = None) -> None:
        self.seen_ids: set[str] = set(seen)
        self.versions: dict[str, int] = dict(versions or {})

    def seen(self, doc_id: str) -> bool:
        return doc_id in self.seen_ids

    def program_version(self, topic: str) -> int | None:
        return self.versions.get(topic)


# --------------------------------------------------------------------------- publisher


@dataclass(frozen=True)
class Published:
    """One message handed to the fake link."""

    mid: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class FakePublisher:
    """The link as the courier and the director see it: connected or not, and a message id
    for every publication, like paho (which numbers QoS 0 messages too)."""

    connected: bool = True
    published: list[Published] = field(default_factory=list)
    acked_tokens: list[Any] = field(default_factory=list)
    _next_mid: int = 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        if not self.connected:
            raise AssertionError("published while not connected")
        self._next_mid = self._next_mid % 65535 + 1
        self.published.append(Published(self._next_mid, topic, payload, qos, retain))
        return self._next_mid

    def ack(self, token: Any) -> None:
        self.acked_tokens.append(token)

    def topics(self) -> list[str]:
        return [p.topic for p in self.published]


# --------------------------------------------------------------------------- signing


def canonical(doc: dict[str, Any]) -> bytes:
    """PROTOCOL.md's signing input: the envelope without ``sig``, canonical JSON in UTF-8."""
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


class Signer:
    """An Ed25519 key of the source system, signing per PROTOCOL.md without agent code."""

    def __init__(self, kid: str = KID, seed: int = 1) -> None:
        self.kid = kid
        self.private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def public_b64(self) -> str:
        raw = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``doc`` with ``kid`` (unless present) and ``sig`` set."""
        signed = {k: v for k, v in doc.items() if k != "sig"}
        signed.setdefault("kid", self.kid)
        raw = self.private.sign(canonical(signed))
        signed["sig"] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        return signed

    def payload(self, doc: dict[str, Any]) -> bytes:
        """The signed document as it travels: UTF-8 JSON, not canonical on purpose."""
        return encode(self.sign(doc))


def encode(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def document(
    doc_type: str = "ping",
    body: dict[str, Any] | None = None,
    *,
    target: str = f"dev:{DEVICE}",
    doc_id: str = "01JDX3M7K2Q8",
    issued_at: datetime | None = None,
    ttl_s: int | None = 3600,
) -> dict[str, Any]:
    """An unsigned envelope issued at the fake clock's start; programs have no expiry."""
    issued = issued_at or NOW
    doc: dict[str, Any] = {
        "v": 1,
        "id": doc_id,
        "type": doc_type,
        "target": target,
        "issued_at": rfc3339(issued),
        "body": {} if body is None else body,
    }
    if ttl_s is not None and doc_type != "program":
        doc["expires_at"] = rfc3339(issued + timedelta(seconds=ttl_s))
    return doc


def bulletin(title: str = "Thông báo lịch tiêm chủng", **extra: Any) -> dict[str, Any]:
    return {
        "id": "tb-2026-1126-01",
        "title": title,
        "level": "normal",
        "screen": {"kind": "text", "text": "Tiêm chủng tại trạm y tế phường, 7 giờ sáng thứ Bảy."},
        "speaker": {"kind": "tts", "text": "Kính thưa bà con, ...", "voice": "vi-north"},
        **extra,
    }


def program_body(version: int = 1) -> dict[str, Any]:
    return {
        "version": version,
        "bulletins": [bulletin()],
        "ticker": ["Chào mừng đến phường 12, quận 10"],
        "screen_hours": {"on": "06:00", "off": "22:00"},
    }


# --------------------------------------------------------------------------- director rig


def agent_config(tmp: Path, signer: Signer, **extra: Any) -> AgentConfig:
    data: dict[str, Any] = {
        "device_id": DEVICE,
        "groups": list(GROUPS),
        "mqtt": {"url": "mqtt://127.0.0.1:1883", "topic_prefix": PREFIX},
        "trust": {"keys": {signer.kid: signer.public_b64}},
        "paths": {"state_dir": str(tmp / "state"), "cache_dir": str(tmp / "cache")},
        "screen": {"enabled": False},
        "speaker": {"enabled": False},
        **extra,
    }
    return AgentConfig.model_validate(data)


@dataclass
class Rig:
    """A director with a real store, a fake clock, a fake link and a trusted signer."""

    director: Director
    store: Store
    clock: FakeClock
    monotonic: FakeMonotonic
    signer: Signer
    config: AgentConfig
    reports: Outbox

    def send(
        self, payload: bytes, topic: str = CMD_TOPIC, retained: bool = False, token: Any = None
    ) -> None:
        self.director.handle(Inbound(topic, payload, token, retained))

    def outbox(self, suffix: str = "") -> list[tuple[str, bytes]]:
        return [
            (i.topic, i.payload)
            for i in self.store.pending(limit=100_000)
            if i.topic.endswith(suffix)
        ]

    def acks(self, doc_id: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(p) for t, p in self.outbox() if t == ACK_TOPIC]
        return [a for a in found if doc_id is None or a["cmd"] == doc_id]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p in self.outbox() if t == EVENT_TOPIC]

    def seen_ids(self) -> set[str]:
        rows = self.store._query("SELECT id FROM seen")
        return {str(r[0]) for r in rows}

    def settings(self) -> dict[str, str]:
        rows = self.store._query("SELECT key, value FROM settings")
        return {str(k): str(v) for k, v in rows}


def make_rig(
    store: Store,
    config: AgentConfig,
    signer: Signer,
    clock: FakeClock | None = None,
    monotonic: FakeMonotonic | None = None,
    secrets: Iterable[str] = (),
) -> Rig:
    clock = clock or FakeClock()
    monotonic = monotonic or FakeMonotonic()
    verifier = Verifier(
        config.device_id,
        config.groups,
        {signer.kid: signer.public},
        Topics(config.mqtt.topic_prefix),
        store,
        clock=clock,
        max_payload_bytes=config.max_payload_bytes,
    )
    outbox = Outbox(
        store, Topics(config.mqtt.topic_prefix), config.device_id, clock, Redactor(secrets)
    )
    playback = NullPlayback(store, outbox, config.paths.cache_dir, config.speaker.default_volume)
    director = Director(config, store, verifier, outbox, playback, clock=clock, monotonic=monotonic)
    return Rig(director, store, clock, monotonic, signer, config, outbox)


# --------------------------------------------------------------------------- control socket


def echo(req: Request) -> dict[str, Any]:
    """An answer that says what was asked."""
    return {"ok": True, "action": req.action, "args": req.args}


def answering(answer: Callable[[Request], dict[str, Any]]) -> Callable[[Event], None]:
    """A ``handle`` that answers each request with ``answer(request)``."""

    def handle(event: Event) -> None:
        assert isinstance(event, Request)
        event.reply.put(answer(event))

    return handle


class DirectorThread:
    """The director's side of a ControlServer: ``post`` queues each event, and a thread of its
    own hands it to ``handle`` (``Director.handle``, or ``answering(...)``), as in the agent."""

    def __init__(self, handle: Callable[[Event], None] | None = None) -> None:
        self.handle = handle or answering(echo)
        self.posted: list[Event] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="test-director", daemon=True)
        self._thread.start()

    def post(self, event: Event) -> None:
        self.posted.append(event)
        self._queue.put(event)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            self.handle(event)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(5)
