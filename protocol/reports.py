"""What the device sends back (PROTOCOL.md §7-§10): acks, state, status, playlog, events."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    model_serializer,
)

from protocol.wire import Time, to_json


class Status(StrEnum):
    ACCEPTED = "accepted"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


class Ack(BaseModel):
    """The result of a command or program, published on ``dev/{device}/ack``."""

    model_config = ConfigDict(frozen=True)
    v: Literal[1] = 1
    cmd: str | None
    status: Status
    reason: str | None = None
    detail: str = ""
    at: Time
    topic: str | None = None

    def payload(self) -> bytes:
        data = self.model_dump(mode="json")
        if data["topic"] is None:
            del data["topic"]
        return to_json(data)


class DeviceState(BaseModel):
    """Retained birth/last-will state."""

    v: Literal[1] = 1
    online: bool
    device: str
    agent_version: str | None = None
    groups: list[str] | None = None
    capabilities: list[str] | None = None
    since: Time | None = None

    def payload(self) -> bytes:
        return to_json(self.model_dump(mode="json", exclude_none=True))


class NowPlaying(BaseModel):
    """What shows and what speaks. Extensions: ``speaker_ref`` names what asked for the
    announcement (a command id, a program topic), ``start_error_ms`` how far a synchronized one
    started from its ``play_at``, as soon as it sounds."""

    screen: str | None = None
    speaker: str | None = None
    speaker_ref: str | None = None
    start_error_ms: int | None = None

    @model_serializer(mode="wrap")
    def _without_empty_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        for key in ("speaker_ref", "start_error_ms"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class CacheUsage(BaseModel):
    bytes: int = 0
    items: int = 0


class LinkStats(BaseModel):
    reconnects: int = 0
    connected: bool | None = None


class PowerState(BaseModel):
    """An extension: what the screen's power is, and whether ``power.set`` forces it."""

    screen: Literal["on", "off"] | None = None
    screen_mode: Literal["auto", "on", "off"] = "auto"
    amplifier_mode: Literal["auto", "on", "off"] = "auto"


class DeviceStatus(BaseModel):
    """Retained telemetry published every ``status_interval_s``."""

    v: Literal[1] = 1
    at: Time
    uptime_s: int
    programs: dict[str, int] = {}
    now: NowPlaying = NowPlaying()
    volume: int
    cache: CacheUsage = CacheUsage()
    disk_free_bytes: int
    temperature_c: int | None = None
    link: LinkStats = LinkStats()
    outbox: int | None = None
    power: PowerState | None = None

    def payload(self) -> bytes:
        return to_json(self.model_dump(mode="json"))


Channel = Literal["screen", "speaker"]
Outcome = Literal["completed", "interrupted", "failed", "skipped"]


class PlaylogEntry(BaseModel):
    """One finished play of a bulletin on one channel (proof of play), or one that could not be.

    Extensions (optional, left out of the JSON when None): ``ref`` names what asked for the
    play (a ``play.now`` or ``emergency.start`` command id, for example); ``start_error_ms`` is
    how late (positive) or early (negative) a synchronized start began against its ``play_at``;
    ``reason`` says why an entry is ``failed`` or ``skipped`` (the outcome of an announcement
    that never sounded); ``replayed`` says of an ``interrupted`` entry whether it is played
    again (a later entry of the same ``ref`` and bulletin, with ``attempt`` one higher).
    """

    id: str
    bulletin: str
    channel: Channel
    started_at: Time
    ended_at: Time
    outcome: Outcome
    ref: Annotated[str, Field(max_length=128)] | None = None
    start_error_ms: StrictInt | None = None
    reason: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None
    replayed: StrictBool | None = None
    attempt: Annotated[StrictInt, Field(ge=2)] | None = None


class Playlog(BaseModel):
    """A batch of playlog entries, published on ``dev/{device}/playlog``."""

    v: Literal[1] = 1
    device: str
    entries: list[PlaylogEntry]

    def payload(self) -> bytes:
        return to_json(self.model_dump(mode="json", exclude_none=True))


class Event(BaseModel):
    """A warning or error worth a person's attention."""

    v: Literal[1] = 1
    at: Time
    severity: Literal["warning", "error"]
    code: str
    detail: str = ""

    def payload(self) -> bytes:
        return to_json(self.model_dump(mode="json"))
