"""What the devices publish, read into typed reports for the store: pure functions, no I/O.

``parse`` takes one MQTT message (topic, payload, when it was received) and returns one report
(``StateReport``, ``StatusReport``, ``AckReport``, ``EventReport``, ``PlaylogReport``), a
``Rejected`` saying why it cannot be stored, or None for a topic the store does not keep
(screenshots, log uploads, anything outside ``P/dev/{device}/``).

Reading is lenient where the protocol may grow: an unknown outcome, status or extra field is
kept (each entry, ack and event keeps its ``raw`` JSON); a known optional field with the wrong
type is left out of its typed column but stays in ``raw``. It is strict about what the reports
and the fleet view rely on (ids, times, channel, outcome), and the device is always the one in
the topic, which the broker's ACL vouches for, never the one a payload claims.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.files_report import ward_of
from protocol import IDENT_RE, parse_time

_MAX_ID = 128
_MAX_NAME = 128
_MAX_DETAIL = 4096


@dataclass(frozen=True)
class Message:
    """One message as received from the broker."""

    topic: str
    payload: bytes
    received_ms: int


@dataclass(frozen=True)
class StateReport:
    """A retained ``state``: a birth (``online``) or a last will."""

    device: str
    online: bool
    ward: str | None
    groups: str | None  # JSON list, None when the message names none (a last will)
    agent_version: str | None
    raw: str
    received_ms: int


@dataclass(frozen=True)
class StatusReport:
    """A retained ``status`` (telemetry), kept whole."""

    device: str
    raw: str
    received_ms: int


@dataclass(frozen=True)
class AckReport:
    """The result of a command or program."""

    key: str
    device: str
    cmd: str | None
    status: str
    reason: str | None
    detail: str
    at: str
    at_ms: int
    topic: str | None
    raw: str
    received_ms: int


@dataclass(frozen=True)
class EventReport:
    """A warning or an error worth a person's attention."""

    key: str
    device: str
    at: str
    at_ms: int
    severity: str
    code: str
    detail: str
    raw: str
    received_ms: int


@dataclass(frozen=True)
class PlayEntry:
    """One playlog entry: the fields the reports use, typed, and the entry as sent."""

    id: str
    bulletin: str
    channel: str
    outcome: str
    started_at: str
    ended_at: str
    started_ms: int
    duration_ms: int  # ended_at - started_at, never negative
    ref: str | None
    start_error_ms: int | None
    reason: str | None
    replayed: bool | None
    raw: str


@dataclass(frozen=True)
class PlaylogReport:
    """A playlog batch: its valid entries, and how many were not."""

    device: str
    entries: tuple[PlayEntry, ...]
    bad_entries: int
    received_ms: int


@dataclass(frozen=True)
class Rejected:
    """A message on a topic the store keeps that cannot be stored, and why."""

    topic: str
    why: str


Report = StateReport | StatusReport | AckReport | EventReport | PlaylogReport


def device_topics(prefix: str) -> dict[str, str]:
    """The topic filters of what the store keeps, by leaf (``state`` → ``P/dev/+/state``)."""
    return {
        leaf: f"{prefix}/dev/+/{leaf}" for leaf in ("state", "status", "ack", "event", "playlog")
    }


def parse(message: Message, prefix: str) -> Report | Rejected | None:
    """Read one message (see the module docstring)."""
    head = prefix.split("/")
    parts = message.topic.split("/")
    if len(parts) != len(head) + 3 or parts[: len(head)] != head or parts[len(head)] != "dev":
        return None
    device, leaf = parts[len(head) + 1], parts[len(head) + 2]
    reader: _Reader | None = _READERS.get(leaf)
    if reader is None:
        return None
    if not IDENT_RE.match(device):
        return Rejected(message.topic, f"bad device id {device[:80]!r} in the topic")
    try:
        doc = json.loads(message.payload)
    except (ValueError, UnicodeDecodeError):
        return Rejected(message.topic, "not JSON")
    if not isinstance(doc, dict):
        return Rejected(message.topic, "not a JSON object")
    try:
        return reader(device, doc, message)
    except _Invalid as exc:
        return Rejected(message.topic, str(exc))


class _Invalid(ValueError):
    pass


_Reader = Callable[[str, dict[str, Any], Message], Report]


def _text(doc: dict[str, Any], key: str, limit: int = _MAX_NAME) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _Invalid(f"{key}: a non-empty string of at most {limit} characters is required")
    return value


def _optional_text(doc: dict[str, Any], key: str, limit: int = _MAX_NAME) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) and len(value) <= limit else None


def _time_ms(doc: dict[str, Any], key: str) -> tuple[str, int]:
    value = doc.get(key)
    try:
        moment = parse_time(value)  # type: ignore[arg-type]  # parse_time checks the type
    except (ValueError, TypeError):
        raise _Invalid(f"{key}: an RFC 3339 UTC time is required") from None
    return str(value), int(moment.timestamp() * 1000)


def _compact(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _key(device: str, leaf: str, payload: bytes) -> str:
    return hashlib.sha256(b"\0".join((device.encode(), leaf.encode(), payload))).hexdigest()[:32]


def _state(device: str, doc: dict[str, Any], message: Message) -> StateReport:
    online = doc.get("online")
    if not isinstance(online, bool):
        raise _Invalid("online: true or false is required")
    groups = doc.get("groups")
    named = isinstance(groups, list) and all(isinstance(g, str) for g in groups)
    return StateReport(
        device=device,
        online=online,
        ward=ward_of(doc),
        groups=_compact(groups) if named else None,
        agent_version=_optional_text(doc, "agent_version"),
        raw=_compact(doc),
        received_ms=message.received_ms,
    )


def _status(device: str, doc: dict[str, Any], message: Message) -> StatusReport:
    return StatusReport(device, _compact(doc), message.received_ms)


def _ack(device: str, doc: dict[str, Any], message: Message) -> AckReport:
    cmd = doc.get("cmd")
    if cmd is not None and (not isinstance(cmd, str) or len(cmd) > _MAX_ID):
        raise _Invalid("cmd: a string or null is required")
    at, at_ms = _time_ms(doc, "at")
    detail = doc.get("detail")
    return AckReport(
        key=_key(device, "ack", message.payload),
        device=device,
        cmd=cmd,
        status=_text(doc, "status", 32),
        reason=_optional_text(doc, "reason"),
        detail=detail[:_MAX_DETAIL] if isinstance(detail, str) else "",
        at=at,
        at_ms=at_ms,
        topic=_optional_text(doc, "topic", 1024),
        raw=_compact(doc),
        received_ms=message.received_ms,
    )


def _event(device: str, doc: dict[str, Any], message: Message) -> EventReport:
    at, at_ms = _time_ms(doc, "at")
    detail = doc.get("detail")
    return EventReport(
        key=_key(device, "event", message.payload),
        device=device,
        at=at,
        at_ms=at_ms,
        severity=_text(doc, "severity", 32),
        code=_text(doc, "code"),
        detail=detail[:_MAX_DETAIL] if isinstance(detail, str) else "",
        raw=_compact(doc),
        received_ms=message.received_ms,
    )


def play_entry(raw: Any) -> PlayEntry:
    """One playlog entry, or ValueError saying which field is wrong."""
    if not isinstance(raw, dict):
        raise _Invalid("an entry must be a JSON object")
    started_at, started_ms = _time_ms(raw, "started_at")
    ended_at, ended_ms = _time_ms(raw, "ended_at")
    start_error = raw.get("start_error_ms")
    replayed = raw.get("replayed")
    return PlayEntry(
        id=_text(raw, "id", _MAX_ID),
        bulletin=_text(raw, "bulletin"),
        channel=_text(raw, "channel", 32),
        outcome=_text(raw, "outcome", 32),
        started_at=started_at,
        ended_at=ended_at,
        started_ms=started_ms,
        duration_ms=max(0, ended_ms - started_ms),
        ref=_optional_text(raw, "ref"),
        # bool is an int in Python, never a number of milliseconds.
        start_error_ms=start_error
        if isinstance(start_error, int) and not isinstance(start_error, bool)
        else None,
        reason=_optional_text(raw, "reason"),
        replayed=replayed if isinstance(replayed, bool) else None,
        raw=_compact(raw),
    )


def _playlog(device: str, doc: dict[str, Any], message: Message) -> PlaylogReport:
    raw_entries = doc.get("entries")
    if not isinstance(raw_entries, list):
        raise _Invalid("entries: a list is required")
    entries: list[PlayEntry] = []
    bad = 0
    for raw in raw_entries:
        try:
            entries.append(play_entry(raw))
        except _Invalid:
            bad += 1
    return PlaylogReport(device, tuple(entries), bad, message.received_ms)


_READERS: dict[str, _Reader] = {
    "state": _state,
    "status": _status,
    "ack": _ack,
    "event": _event,
    "playlog": _playlog,
}
