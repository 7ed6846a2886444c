"""What the CAP intake is configured with: trusted senders, the area map, limits and defaults.

One frozen, typed model, loaded once by the caller (``load_settings``) and passed in. Unknown
keys and bad values are refused with a message naming the key and the file.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from cryptography import x509
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol import IDENT_RE, describe_error

_TOKEN = re.compile(r"^[^\s,<&]+$")  # a CAP sender: no spaces, commas, < or &


class CapConfigError(Exception):
    """A configuration that cannot be used; the message names the file and the key."""


def _ident(value: str) -> str:
    if not IDENT_RE.match(value):
        raise ValueError(f"{value!r} is not a group id (^[a-z0-9][a-z0-9-]{{1,62}}$)")
    return value


def _certificate(pem: str) -> str:
    try:
        x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError as exc:
        raise ValueError(f"not a PEM X.509 certificate ({exc})") from None
    return pem


Ident = Annotated[str, AfterValidator(_ident)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SenderPolicy(_Section):
    """One trusted CAP ``sender`` and how its alerts are authenticated.

    ``certificates`` are PEM texts (the loader reads them from files); an alert that carries
    an XML Signature must verify with one of them. ``must_sign`` refuses unsigned alerts.
    """

    sender: Annotated[str, Field(pattern=_TOKEN.pattern, max_length=256)]
    must_sign: StrictBool = False
    certificates: tuple[Annotated[str, AfterValidator(_certificate)], ...] = ()

    @model_validator(mode="after")
    def _signing(self) -> SenderPolicy:
        if self.must_sign and not self.certificates:
            raise ValueError("certificates: a sender that must sign needs at least one")
        return self

    def x509_certificates(self) -> list[x509.Certificate]:
        """The configured certificates, parsed."""
        return [x509.load_pem_x509_certificate(p.encode("ascii")) for p in self.certificates]


class AreaGroup(_Section):
    """A group of devices (usually one ward or commune) and what places it.

    ``codes`` are administrative-unit codes (matched against CAP geocodes whose ``valueName``
    is one of ``AreaMap.geocode_names``); ``names`` are matched against ``areaDesc``;
    ``locations`` are (lat, lon) points: the group is in a polygon or circle when one is.
    ``drill`` marks a group that may receive ``Exercise`` and ``Test`` alerts.
    """

    id: Ident
    name: Annotated[str, Field(min_length=1)]
    names: tuple[str, ...] = ()
    codes: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    locations: tuple[tuple[Latitude, Longitude], ...] = ()
    drill: StrictBool = False


class AreaMap(_Section):
    """Administrative units and places → the groups that devices subscribe to."""

    geocode_names: tuple[str, ...] = ("VN-DVHC",)
    groups: tuple[AreaGroup, ...] = ()

    @field_validator("groups")
    @classmethod
    def _unique(cls, value: tuple[AreaGroup, ...]) -> tuple[AreaGroup, ...]:
        ids = [g.id for g in value]
        if len(ids) != len(set(ids)):
            raise ValueError("group ids must be unique")
        return value


class CapSettings(_Section):
    """Everything ``plan_alert`` needs besides the document, the ledger and the clock."""

    senders: tuple[SenderPolicy, ...] = ()
    areas: AreaMap = AreaMap()
    max_document_bytes: Annotated[StrictInt, Field(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    max_resource_bytes: Annotated[StrictInt, Field(ge=1024, le=256 * 1024 * 1024)] = (
        16 * 1024 * 1024
    )
    resource_timeout_s: Annotated[float, Field(gt=0, le=300)] = 20.0
    # Used when an info has no `expires`: counted from `sent`.
    default_duration_s: Annotated[StrictInt, Field(ge=60, le=7 * 86400)] = 3600
    repeat_every_s: Annotated[StrictInt, Field(ge=10, le=86400)] | None = 900
    priority_repeat: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    screen_duration_ms: Annotated[StrictInt, Field(ge=1000, le=3_600_000)] = 60_000
    voice: Ident | None = None
    media_in_emergencies: StrictBool = False
    max_title_chars: Annotated[StrictInt, Field(ge=20, le=1000)] = 200
    max_screen_chars: Annotated[StrictInt, Field(ge=100, le=20_000)] = 2000
    max_spoken_chars: Annotated[StrictInt, Field(ge=100, le=20_000)] = 1000
    # For the `ttcs-control cap` commands: the ledger's SQLite file, and where resource files
    # are stored by their sha256 (``media_dir``) for an HTTP server to serve at ``media_url``.
    ledger: Path | None = None
    media_dir: Path | None = None
    media_url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=1024)] | None = None

    @model_validator(mode="after")
    def _media(self) -> CapSettings:
        if (self.media_dir is None) != (self.media_url is None):
            raise ValueError("media_dir: media_dir and media_url go together")
        return self

    @field_validator("senders")
    @classmethod
    def _unique(cls, value: tuple[SenderPolicy, ...]) -> tuple[SenderPolicy, ...]:
        names = [s.sender for s in value]
        if len(names) != len(set(names)):
            raise ValueError("each sender may be listed once")
        return value

    def sender(self, name: str) -> SenderPolicy | None:
        """The policy of a sender on the allowlist, or None."""
        return next((s for s in self.senders if s.sender == name), None)


# --------------------------------------------------------------------------- files


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise CapConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CapConfigError(f"{path}: not TOML: {exc}") from None


def load_areas(path: Path) -> AreaMap:
    """Read an area map file (``config/cap-areas.example.toml`` shows every key)."""
    try:
        return AreaMap.model_validate(_read_toml(path))
    except ValidationError as exc:
        raise CapConfigError(f"{path}: {describe_error(exc)}") from None


def load_settings(path: Path) -> CapSettings:
    """Read the ``[cap]`` section of the control plane's configuration file.

    ``areas`` names the area map file and each sender's ``certificates`` name PEM files, all
    relative to the configuration file (``config/cap.example.toml`` shows every key).
    """
    data = _read_toml(path)
    section = data.get("cap")
    if not isinstance(section, dict):
        raise CapConfigError(f"{path}: no [cap] section")
    section = dict(section)
    base = path.parent
    areas = section.pop("areas", None)
    if areas is not None:
        if not isinstance(areas, str):
            raise CapConfigError(f"{path}: cap.areas: the path of the area map file")
        section["areas"] = load_areas(base / areas)
    for name in ("ledger", "media_dir"):
        if isinstance(section.get(name), str):
            section[name] = base / section[name]
    senders = section.get("senders", [])
    if isinstance(senders, list):
        section["senders"] = [_with_pems(s, base, path, i) for i, s in enumerate(senders)]
    try:
        return CapSettings.model_validate(section)
    except ValidationError as exc:
        raise CapConfigError(f"{path}: cap.{describe_error(exc)}") from None


def _with_pems(sender: Any, base: Path, path: Path, index: int) -> Any:
    if not isinstance(sender, dict) or not isinstance(sender.get("certificates"), list):
        return sender
    pems = []
    for name in sender["certificates"]:
        if not isinstance(name, str):
            raise CapConfigError(f"{path}: cap.senders.{index}.certificates: file names")
        try:
            pems.append((base / name).read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CapConfigError(
                f"{path}: cap.senders.{index}.certificates: cannot read {name}: {exc}"
            ) from None
    return {**sender, "certificates": pems}
