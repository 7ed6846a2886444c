"""The shape of the wire, shared by the device and the server: names, times, topics, JSON.

Nothing here imports the agent, the players or the control plane.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError

from protocol.text import nfc

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
    # The pattern fixed every digit's place; datetime() checks the ranges (strptime is 10×
    # slower, and every command's times are parsed on its path to the ack).
    frac = value[20:-1]
    return datetime(
        int(value[0:4]),
        int(value[5:7]),
        int(value[8:10]),
        int(value[11:13]),
        int(value[14:16]),
        int(value[17:19]),
        int(frac[:6].ljust(6, "0")) if frac else 0,
        tzinfo=UTC,
    )


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


def describe_error(exc: ValidationError) -> str:
    """The first validation error as ``field.path: message``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def to_json(data: Any) -> bytes:
    """Compact UTF-8 JSON as published on the wire."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def find_float(value: Any, path: str = "") -> str | None:
    """The path of the first float in parsed JSON, or None (signed documents hold none)."""
    if isinstance(value, float):
        return path or "(document)"
    if isinstance(value, dict):
        for key, item in value.items():
            found = find_float(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = find_float(item, f"{path}[{index}]")
            if found:
                return found
    return None
