"""Agent configuration: one TOML file, validated once into a frozen, typed model.

Unknown keys and bad values stop the agent at start with a message that names the key
(and, for a misspelt key, suggests the closest known one).
"""

from __future__ import annotations

import base64
import difflib
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol import IDENT_RE, Level
from protocol.broker import MqttConfig
from protocol.documents import RELEASE_VERSION_RE

DEFAULT_CONFIG_PATH = Path("/etc/ttcs-agent/agent.toml")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the offending key."""


def _ident(value: str) -> str:
    if not IDENT_RE.match(value):
        raise ValueError(f"{value!r} is not an identifier (^[a-z0-9][a-z0-9-]{{1,62}}$)")
    return value


Ident = Annotated[str, AfterValidator(_ident)]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _public_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ValueError("not standard base64") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrustConfig(_Section):
    """Public keys that may sign commands and programs, by key id."""

    keys: dict[str, Annotated[str, AfterValidator(_public_key)]] = Field(default_factory=dict)


class PathsConfig(_Section):
    """Where the agent keeps its state, its content cache, its socket and its log."""

    state_dir: Path = Path("/var/lib/ttcs-agent")
    cache_dir: Path = Path("/var/cache/ttcs-agent")
    control_socket: Path | None = None
    log_file: Path | None = None

    @property
    def socket_path(self) -> Path:
        return self.control_socket or self.state_dir / "control.sock"

    @property
    def log_path(self) -> Path:
        return self.log_file or self.state_dir / "agent.log"


Argv = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]


class ScreenConfig(_Section):
    """The public screen: an LCD, or an LED wall fed over HDMI."""

    enabled: StrictBool = True
    driver: Literal["window", "headless"] = "headless"
    width: StrictInt = Field(default=1920, ge=16, le=7680)
    height: StrictInt = Field(default=1080, ge=16, le=4320)
    # lcd: 1080p panels; led: low-resolution walls (larger type, bold strokes only).
    profile: Literal["lcd", "led"] = "lcd"
    # Degrees clockwise the picture is turned before it leaves (a portrait-mounted panel: 90).
    rotation: Literal[0, 90, 180, 270] = 0
    # x, y, w, h of the frame that an LED controller actually shows; nothing is drawn outside.
    region: tuple[StrictInt, StrictInt, StrictInt, StrictInt] | None = None
    ward_name: str = ""  # the header's title; empty: the device id
    fullscreen: StrictBool = True  # driver "window" only
    ticker_fps: StrictInt = Field(default=30, ge=1, le=60)
    # Extra font files tried before Noto Sans and DejaVu Sans (e.g. a ward's own typeface).
    fonts: tuple[Path, ...] = ()
    # Screen power hooks, run as argv lists (never through a shell), e.g.
    # ["vcgencmd", "display_power", "0"] or ["cec-ctl", "--to", "0", "--standby"].
    power_on: Argv | None = None
    power_off: Argv | None = None
    power_timeout_s: StrictInt = Field(default=10, ge=1, le=120)
    # libVLC's audio output for videos that ask for sound (others are always muted).
    video_aout: str = "alsa"

    @model_validator(mode="after")
    def _check_region(self) -> ScreenConfig:
        if self.region is not None:
            x, y, w, h = self.region
            if w < 16 or h < 16 or x < 0 or y < 0 or x + w > self.width or y + h > self.height:
                raise ValueError(
                    f"region: {list(self.region)} must be x, y, w, h (w, h >= 16) inside the "
                    f"{self.width}x{self.height} frame"
                )
        return self

    @property
    def frame_region(self) -> tuple[int, int, int, int]:
        """The part of the frame that is shown: ``region``, or the whole frame."""
        return self.region or (0, 0, self.width, self.height)


class SpeakerConfig(_Section):
    """The loudspeaker output, its chime and its amplifier."""

    enabled: StrictBool = True
    output: str = "default"
    # A sound file played before announcements that ask for a chime; empty: a generated chime.
    chime_file: Path | None = None
    # Amplifier power: an argv hook (never a shell) or a GPIO line ("gpiochip0:17").
    amplifier_on: Argv | None = None
    amplifier_off: Argv | None = None
    amplifier_gpio: Annotated[str, Field(pattern=r"^[A-Za-z0-9/_.-]+:[0-9]{1,4}$")] | None = None
    amplifier_active_low: StrictBool = False
    amplifier_warmup_s: StrictFloat = Field(default=1.5, ge=0, le=30)
    amplifier_hold_s: StrictFloat = Field(default=30.0, ge=0, le=3600)
    # How early a synchronized announcement (play_at) is made ready: synthesis, files, amplifier.
    prepare_s: StrictFloat = Field(default=10.0, ge=3, le=120)
    # How late a synchronized start may be before it is skipped (late_for_play_at): a street
    # whose loudspeakers start apart echoes.
    sync_tolerance_ms: StrictInt = Field(default=200, ge=0, le=10_000)
    # Interrupted announcements of these levels are played again from the start afterwards.
    replay_levels: tuple[Level, ...] = (Level.NORMAL, Level.PRIORITY)
    # … within this long after the interruption (and never after their own expiry).
    replay_within_s: StrictInt = Field(default=3600, ge=0, le=86_400)
    # At most this many announcements wait for the loudspeakers; the last in precedence falls off.
    queue_max: StrictInt = Field(default=50, ge=1, le=1000)
    # The volume before any volume.set or `ttcs-agent volume`.
    default_volume: StrictInt = Field(default=70, ge=0, le=100)

    @model_validator(mode="after")
    def _check_amplifier(self) -> SpeakerConfig:
        if self.amplifier_gpio and (self.amplifier_on or self.amplifier_off):
            raise ValueError("amplifier_gpio: use either a GPIO line or amplifier_on/off hooks")
        return self

    @field_validator("output")
    @classmethod
    def _check_output(cls, value: str) -> str:
        if value in ("default", "null") or (value.startswith("file:") and len(value) > 5):
            return value
        raise ValueError("must be 'default', 'null' or 'file:/path/to/capture.wav'")


class TtsConfig(_Section):
    """Text-to-speech voices by name (e.g. vi-north) → Piper model path."""

    default_voice: str = "vi-north"
    voices: dict[str, Path] = Field(default_factory=dict)


class CacheConfig(_Section):
    """The content cache (in ``paths.cache_dir``) and the downloads that fill it."""

    quota_bytes: StrictInt = Field(default=2 * 1024**3, ge=1024**2)
    # The SQLite store and the log usually share the disk: a download must not fill it.
    min_free_bytes: StrictInt = Field(default=128 * 1024**2, ge=0)
    connect_timeout_s: StrictInt = Field(default=10, ge=1, le=300)
    read_timeout_s: StrictInt = Field(default=30, ge=1, le=3600)
    attempts: StrictInt = Field(default=5, ge=1, le=100)
    # A program's downloads start after a random delay of up to this many seconds, so that a
    # group's devices given the same program at once do not all reach the server at once.
    fetch_jitter_s: StrictInt = Field(default=0, ge=0, le=3600)


def _release_version(value: str) -> str:
    if not re.match(RELEASE_VERSION_RE, value):
        raise ValueError(f"{value!r} is not a release version (1 to 4 numbers: '0.2.0')")
    return value


class UpdateConfig(_Section):
    """``agent.update``: who may sign releases, the oldest version allowed, the health proof."""

    # Release signing keys, kid -> base64 raw Ed25519 public key. Distinct from [trust] keys:
    # a command key alone must not be able to install code. Empty: agent.update is refused.
    release_keys: dict[str, Annotated[str, AfterValidator(_public_key)]] = Field(
        default_factory=dict
    )
    # No release older than this is installed, whoever signed it (a vulnerable old version).
    min_version: Annotated[str, AfterValidator(_release_version)] | None = None
    # Where the release slots are: ROOT/releases/VERSION and ROOT/current.
    root: Path = Path("/opt/ttcs-agent")
    # The new version has this long, from its first start, to prove itself healthy.
    health_timeout_s: StrictInt = Field(default=300, ge=5, le=86_400)
    # Starts of the new version (crashes, power cuts) before the previous one is restored.
    max_starts: StrictInt = Field(default=3, ge=1, le=20)
    # Free space the releases' file system must keep after unpacking (a body's min_free_mb wins).
    min_free_mb: StrictInt = Field(default=200, ge=0, le=1024**2)
    # Slots kept besides the current one (the previous, to return to); older ones are removed.
    keep_previous: StrictInt = Field(default=1, ge=1, le=10)
    # Who writes ROOT's slots: "direct" (the agent itself), "helper" (the root-side unit
    # ttcs-agent-slots.path of the package), "auto" (direct when ROOT/releases is writable).
    installer: Literal["auto", "direct", "helper"] = "auto"
    # How long the agent waits for the helper's answer to one request (an install unpacks).
    installer_timeout_s: StrictInt = Field(default=300, ge=5, le=3600)


class LogConfig(_Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AgentConfig(_Section):
    """The whole agent configuration."""

    device_id: Ident
    groups: tuple[Ident, ...] = ()
    timezone: Annotated[str, AfterValidator(_timezone)] = "Asia/Ho_Chi_Minh"
    status_interval_s: StrictInt = Field(default=60, ge=5, le=86400)
    max_payload_bytes: StrictInt = Field(default=262144, ge=1024, le=16 * 1024 * 1024)
    mqtt: MqttConfig = MqttConfig()
    trust: TrustConfig = TrustConfig()
    paths: PathsConfig = PathsConfig()
    screen: ScreenConfig = ScreenConfig()
    speaker: SpeakerConfig = SpeakerConfig()
    tts: TtsConfig = TtsConfig()
    cache: CacheConfig = CacheConfig()
    log: LogConfig = LogConfig()
    update: UpdateConfig = UpdateConfig()

    @model_validator(mode="after")
    def _check_release_keys(self) -> AgentConfig:
        shared = set(self.update.release_keys.values()) & set(self.trust.keys.values())
        if shared:
            raise ValueError(
                "update.release_keys: a release key must not also be a [trust] command key"
            )
        return self

    @model_validator(mode="after")
    def _check_groups(self) -> AgentConfig:
        if self.device_id in self.groups:
            raise ValueError("groups: must not contain the device's own id")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError("groups: listed twice")
        return self

    def secrets(self) -> list[str]:
        """Secret strings that must never appear in logs."""
        out = []
        if self.mqtt.password is not None and self.mqtt.password.get_secret_value():
            out.append(self.mqtt.password.get_secret_value())
        return out


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        full = f"{prefix}{name}"
        keys.append(full)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_known_keys(ann, full + "."))
    return keys


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        known = _known_keys(AgentConfig)
        parent = loc.rsplit(".", 1)[0] + "." if "." in loc else ""
        siblings = [k for k in known if k.startswith(parent) and "." not in k[len(parent) :]]
        guess = difflib.get_close_matches(loc, siblings, n=1, cutoff=0.6)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ""
        return f"unknown key '{loc}'{hint}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return msg
    return f"'{loc}': {msg}"


def parse_config(data: dict[str, Any], source: str = "<config>") -> AgentConfig:
    """Validate a parsed TOML document; raise ConfigError naming every bad key."""
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(e)}" for e in exc.errors())
        raise ConfigError(f"{source}: invalid configuration:\n{problems}") from None


def load_config(path: Path) -> AgentConfig:
    """Read and validate the TOML configuration file at ``path``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path))


def check_files(config: AgentConfig, source: str = "<config>") -> None:
    """Raise ConfigError naming each configured file this process cannot read.

    Separate from parsing so that an example configuration parses anywhere; ``run`` and
    ``config check`` call it on the device, where a wrong path must stop the agent at start.
    """
    problems = [
        f"  - 'mqtt.{key}': {path} is not a readable file"
        for key in ("ca_file", "cert_file", "key_file")
        if (path := getattr(config.mqtt, key)) is not None
        and not (path.is_file() and os.access(path, os.R_OK))
    ]
    problems += [
        f"  - 'screen.fonts': {path} is not a readable file"
        for path in config.screen.fonts
        if not (path.is_file() and os.access(path, os.R_OK))
    ]
    problems += [
        f"  - '{section}.{key}': {hook[0]} is not an executable program"
        for section, key in (
            ("screen", "power_on"),
            ("screen", "power_off"),
            ("speaker", "amplifier_on"),
            ("speaker", "amplifier_off"),
        )
        if (hook := getattr(getattr(config, section), key)) is not None
        and shutil.which(hook[0]) is None
    ]
    chime = config.speaker.chime_file
    if chime is not None and not (chime.is_file() and os.access(chime, os.R_OK)):
        problems.append(f"  - 'speaker.chime_file': {chime} is not a readable file")
    if problems:
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(problems))
