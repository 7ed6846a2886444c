"""The typed documents the source sends (PROTOCOL.md §3-§6): programs and commands.

Every document that arrives is checked against these models after its signature has been
verified. Unknown extra fields are ignored (the protocol may grow compatibly); floats are
refused everywhere because signed documents contain none.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol.wire import (
    CLOCK_RE,
    SHA256_RE,
    STREAM_URL,
    TARGET_RE,
    DocId,
    Ident,
    Text,
    Time,
    describe_error,
    parse_time,
)


class Doc(BaseModel):
    """A document the source sends. Unknown fields are ignored so that the protocol can grow."""

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


class Media(Doc):
    """A file fetched over HTTP(S), verified by size and sha256, stored by its hash."""

    url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)]
    sha256: Annotated[str, Field(pattern=SHA256_RE.pattern)]
    size: Annotated[StrictInt, Field(ge=0)]
    mime: Annotated[str, Field(pattern=r"^[a-z]+/[A-Za-z0-9.+-]+$")]


class ScreenPart(Doc):
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


class SpeakerPart(Doc):
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


CHARS_PER_SECOND = 14.0  # a calm announcer's pace in Vietnamese
SPEAKING_MIN_S, SPEAKING_MAX_S = 2.0, 600.0


def speaking_time_s(part: SpeakerPart | None) -> float:
    """How long saying a speaker part's text takes at a calm announcer's pace, between 2 s and
    10 minutes; a part without text (a file, a stream) or no part: 2 s."""
    text = part.text if part is not None and part.text else ""
    return min(SPEAKING_MAX_S, max(SPEAKING_MIN_S, len(text) / CHARS_PER_SECOND))


class Schedule(Doc):
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


class Bulletin(Doc):
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


class ScreenHours(Doc):
    """Local times at which the screen is switched on and off."""

    on: Annotated[str, Field(pattern=CLOCK_RE.pattern)]
    off: Annotated[str, Field(pattern=CLOCK_RE.pattern)]


class ProgramBody(Doc):
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


class EmptyBody(Doc):
    """A body with no fields."""


class PlayNowBody(Doc):
    bulletin: Bulletin
    play_at: Time | None = None
    repeat: Annotated[StrictInt, Field(ge=1, le=100)] | None = None


class EmergencyStartBody(Doc):
    bulletin: Bulletin
    repeat_every_s: Annotated[StrictInt, Field(ge=10, le=86400)] | None = None


class EmergencyStopBody(Doc):
    ref: DocId | None = None


class PlayStopBody(Doc):
    """An extension: withdraw the ``play.now`` whose command id is ``ref``, wherever it is."""

    ref: DocId


class StreamStartBody(Doc):
    url: Annotated[str, Field(pattern=STREAM_URL, max_length=2048)]
    channels: Annotated[list[Literal["speaker", "screen"]], Field(min_length=1, max_length=2)]
    level: Level = Level.NORMAL


class VolumeSetBody(Doc):
    percent: Annotated[StrictInt, Field(ge=0, le=100)]


class PowerSetBody(Doc):
    screen: Literal["on", "off", "auto"] | None = None
    amplifier: Literal["on", "off", "auto"] | None = None


class ScreenshotBody(Doc):
    max_width: Annotated[StrictInt, Field(ge=16, le=7680)] | None = None


class LogsUploadBody(Doc):
    lines: Annotated[StrictInt, Field(ge=1, le=10000)] | None = None


# A release version as the agent spells it: 1 to 4 dot-separated numbers ("0.2.0").
RELEASE_VERSION_RE = r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$"


class AgentUpdateBody(Doc):
    """A signed release artifact to install: where it is and what it must hash to."""

    version: Annotated[str, Field(pattern=RELEASE_VERSION_RE)]
    url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)]
    sha256: Annotated[str, Field(pattern=SHA256_RE.pattern)]
    size: Annotated[StrictInt, Field(ge=1, le=4 * 1024**3)]
    min_free_mb: Annotated[StrictInt, Field(ge=0, le=1024**2)] | None = None


BODY_MODELS: dict[str, type[Doc]] = {
    "ping": EmptyBody,
    "play.now": PlayNowBody,
    "emergency.start": EmergencyStartBody,
    "emergency.stop": EmergencyStopBody,
    "play.stop": PlayStopBody,
    "stream.start": StreamStartBody,
    "stream.stop": EmptyBody,
    "volume.set": VolumeSetBody,
    "power.set": PowerSetBody,
    "screenshot": ScreenshotBody,
    "logs.upload": LogsUploadBody,
    "agent.restart": EmptyBody,
    "agent.update": AgentUpdateBody,
    "program": ProgramBody,
}
COMMAND_TYPES = tuple(t for t in BODY_MODELS if t != "program")


class Envelope(Doc):
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
