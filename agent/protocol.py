"""Wire protocol v1: topics, times, and the typed documents of PROTOCOL.md.

Every document that arrives is checked against these models after its signature has been
verified. Unknown extra fields are ignored (the protocol may grow compatibly); floats are
refused everywhere because signed documents contain none.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from player.text import nfc

PROTOCOL_VERSION = 1
DEFAULT_PREFIX = "ttcs/v1"
DOC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
IDENT = r"[a-z0-9][a-z0-9-]{1,62}"
IDENT_RE = re.compile(f"^{IDENT}$")
TARGET_RE = re.compile(f"^(dev|grp):({IDENT})$")
STREAM_URL = r"^(https?|rtsp|rtmp)://\S+$"
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- times


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 UTC time with a ``Z`` suffix; raise ValueError otherwise."""
    if not isinstance(value, str) or not TIME_RE.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 UTC time ending in Z")
    base, _, frac = value[:-1].partition(".")
    parsed = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    if frac:
        parsed = parsed.replace(microsecond=int(frac[:6].ljust(6, "0")))
    return parsed


def format_time(moment: datetime | float) -> str:
    """Format a datetime or a POSIX timestamp as an RFC 3339 UTC string with ``Z``."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: str) -> str:
    parse_time(value)
    return value


Time = Annotated[str, AfterValidator(_time)]
Text = Annotated[str, AfterValidator(nfc)]
Ident = Annotated[str, Field(pattern=IDENT_RE.pattern)]
DocId = Annotated[str, Field(pattern=DOC_ID_RE.pattern)]


# --------------------------------------------------------------------------- topics


class Topics:
    """The topic names of one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix

    def dev(self, device: str, leaf: str) -> str:
        return f"{self.prefix}/dev/{device}/{leaf}"

    def grp(self, group: str, leaf: str) -> str:
        return f"{self.prefix}/grp/{group}/{leaf}"

    def for_target(self, target: str, leaf: str) -> str:
        """The ``cmd`` or ``program`` topic that a ``dev:``/``grp:`` target is published on."""
        match = TARGET_RE.match(target)
        if not match:
            raise ValueError(f"bad target {target!r}")
        kind, name = match.groups()
        return self.dev(name, leaf) if kind == "dev" else self.grp(name, leaf)

    def parse_inbound(self, topic: str) -> tuple[str, str] | None:
        """Map an inbound ``cmd``/``program`` topic to ``(target, leaf)``, or None."""
        parts = topic.split("/")
        head = self.prefix.split("/")
        if len(parts) != len(head) + 3 or parts[: len(head)] != head:
            return None
        kind, name, leaf = parts[len(head) :]
        if kind not in ("dev", "grp") or leaf not in ("cmd", "program"):
            return None
        return f"{kind}:{name}", leaf


# --------------------------------------------------------------------------- content


class _Doc(BaseModel):
    # Unknown fields are ignored so that the protocol can grow compatibly.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Level(StrEnum):
    """The three bulletin levels of the national rules for grassroots radio."""

    NORMAL = "normal"
    PRIORITY = "priority"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        """0, 1, 2: a higher level goes first and interrupts a lower one."""
        return ("normal", "priority", "emergency").index(self.value)


class Media(_Doc):
    """A file fetched over HTTP(S), verified by size and sha256, stored by its hash."""

    url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)]
    sha256: Annotated[str, Field(pattern=SHA256_RE.pattern)]
    size: Annotated[StrictInt, Field(ge=0)]
    mime: Annotated[str, Field(pattern=r"^[a-z]+/[A-Za-z0-9.+-]+$")]


class ScreenPart(_Doc):
    """What a bulletin shows on the screen."""

    kind: Literal["text", "image", "video"]
    text: Text | None = None
    media: Media | None = None
    duration_ms: Annotated[StrictInt, Field(ge=1000, le=3_600_000)] = 15000
    sound: StrictBool = False  # an extension: a video's own sound (muted unless asked)

    @model_validator(mode="after")
    def _content(self) -> ScreenPart:
        if self.kind == "text" and not self.text:
            raise ValueError("text: required for kind 'text'")
        if self.kind in ("image", "video") and self.media is None:
            raise ValueError(f"media: required for kind '{self.kind}'")
        return self


class SpeakerPart(_Doc):
    """What a bulletin says or plays on the loudspeakers.

    ``url`` (an extension) names a live stream for kind ``stream``; ``media`` may be used instead.
    """

    kind: Literal["tts", "audio", "stream"]
    text: Text | None = None
    voice: Ident | None = None
    media: Media | None = None
    url: Annotated[str, Field(pattern=STREAM_URL, max_length=2048)] | None = None
    chime: StrictBool = True

    @model_validator(mode="after")
    def _content(self) -> SpeakerPart:
        if self.kind == "tts" and not self.text:
            raise ValueError("text: required for kind 'tts'")
        if self.kind == "audio" and self.media is None:
            raise ValueError("media: required for kind 'audio'")
        if self.kind == "stream" and self.url is None and self.media is None:
            raise ValueError("url: required for kind 'stream'")
        return self


class Schedule(_Doc):
    """Weekdays (ISO, 1 = Monday) and local times of day at which a bulletin is announced."""

    weekdays: Annotated[list[Annotated[StrictInt, Field(ge=1, le=7)]], Field(max_length=7)] = [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
    ]
    times: Annotated[list[Annotated[str, Field(pattern=CLOCK_RE.pattern)]], Field(min_length=1)]


class Bulletin(_Doc):
    """One item of a program, an announcement or an emergency alert."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    title: Text
    level: Level = Level.NORMAL
    screen: ScreenPart | None = None
    speaker: SpeakerPart | None = None
    valid_from: Time | None = None
    valid_until: Time | None = None
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _parts(self) -> Bulletin:
        if self.screen is None and self.speaker is None:
            raise ValueError("screen: a bulletin needs a screen part, a speaker part or both")
        if (
            self.valid_from
            and self.valid_until
            and parse_time(self.valid_until) <= parse_time(self.valid_from)
        ):
            raise ValueError("valid_until: must be after valid_from")
        return self


class ScreenHours(_Doc):
    """Local times at which the screen is switched on and off."""

    on: Annotated[str, Field(pattern=CLOCK_RE.pattern)]
    off: Annotated[str, Field(pattern=CLOCK_RE.pattern)]


class ProgramBody(_Doc):
    """A retained program: the rotation, the scheduled announcements and the ticker."""

    version: Annotated[StrictInt, Field(ge=0)]
    bulletins: Annotated[list[Bulletin], Field(max_length=500)] = []
    ticker: Annotated[list[Text], Field(max_length=100)] = []
    screen_hours: ScreenHours | None = None

    @field_validator("bulletins")
    @classmethod
    def _unique(cls, value: list[Bulletin]) -> list[Bulletin]:
        ids = [b.id for b in value]
        if len(ids) != len(set(ids)):
            raise ValueError("bulletin ids must be unique within a program")
        return value


# --------------------------------------------------------------------------- commands


class EmptyBody(_Doc):
    """A body with no fields."""


class PlayNowBody(_Doc):
    bulletin: Bulletin
    play_at: Time | None = None
    repeat: Annotated[StrictInt, Field(ge=1, le=100)] | None = None


class EmergencyStartBody(_Doc):
    bulletin: Bulletin
    repeat_every_s: Annotated[StrictInt, Field(ge=10, le=86400)] | None = None


class EmergencyStopBody(_Doc):
    ref: DocId | None = None


class StreamStartBody(_Doc):
    url: Annotated[str, Field(pattern=STREAM_URL, max_length=2048)]
    channels: Annotated[list[Literal["speaker", "screen"]], Field(min_length=1, max_length=2)]
    level: Level = Level.NORMAL


class VolumeSetBody(_Doc):
    percent: Annotated[StrictInt, Field(ge=0, le=100)]


class PowerSetBody(_Doc):
    screen: Literal["on", "off", "auto"] | None = None
    amplifier: Literal["on", "off", "auto"] | None = None


class ScreenshotBody(_Doc):
    max_width: Annotated[StrictInt, Field(ge=16, le=7680)] | None = None


class LogsUploadBody(_Doc):
    lines: Annotated[StrictInt, Field(ge=1, le=10000)] | None = None


BODY_MODELS: dict[str, type[_Doc]] = {
    "ping": EmptyBody,
    "play.now": PlayNowBody,
    "emergency.start": EmergencyStartBody,
    "emergency.stop": EmergencyStopBody,
    "stream.start": StreamStartBody,
    "stream.stop": EmptyBody,
    "volume.set": VolumeSetBody,
    "power.set": PowerSetBody,
    "screenshot": ScreenshotBody,
    "logs.upload": LogsUploadBody,
    "agent.restart": EmptyBody,
    "program": ProgramBody,
}
COMMAND_TYPES = tuple(t for t in BODY_MODELS if t != "program")


class Envelope(_Doc):
    """A signed command or program, with its body typed after verification."""

    v: Literal[1]
    id: DocId
    type: str
    target: Annotated[str, Field(pattern=TARGET_RE.pattern)]
    issued_at: Time
    expires_at: Time | None = None
    body: Any
    kid: Annotated[str, Field(min_length=1, max_length=64)]
    sig: str

    @model_validator(mode="before")
    @classmethod
    def _typed_body(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("type")
        if not isinstance(kind, str) or kind not in BODY_MODELS:
            raise ValueError(f"type: unknown document type {kind!r}")
        if kind != "program" and data.get("expires_at") is None:
            raise ValueError("expires_at: required for commands")
        body = data.get("body")
        if not isinstance(body, dict):
            raise ValueError("body: must be an object")
        try:
            typed = BODY_MODELS[kind].model_validate(body)
        except ValidationError as exc:
            raise ValueError(f"body.{describe_error(exc)}") from None
        return {**data, "body": typed}

    @property
    def is_program(self) -> bool:
        return self.type == "program"


# --------------------------------------------------------------------------- device → server


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


def describe_error(exc: ValidationError) -> str:
    """The first validation error as ``field.path: message``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def to_json(data: Any) -> bytes:
    """Compact UTF-8 JSON as published on the wire."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
