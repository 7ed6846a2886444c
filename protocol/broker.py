"""The broker's address and the client's settings towards it, one TOML section (``[mqtt]``).

The agent's configuration and the control plane's tools read the same section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)


class MqttConfig(BaseModel):
    """Broker connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_prefix: str = "ttcs/v1"
    client_id: Annotated[str, Field(min_length=1, max_length=65535)] | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    # 3G/4G carrier NATs drop idle TCP flows after a few minutes; 60 s keeps the mapping alive
    # while costing only a few bytes a minute.
    keepalive_s: StrictInt = Field(default=60, ge=10, le=1200)
    session_expiry_s: StrictInt = Field(default=7 * 86400, ge=86400, le=2**32 - 1)
    reconnect_min_s: StrictFloat = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: StrictFloat = Field(default=60.0, ge=1, le=3600)

    @model_validator(mode="after")
    def _check_backoff(self) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s: must not exceed reconnect_max_s")
        return self

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not hold credentials: set mqtt.username and mqtt.password")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be just mqtt[s]://host:port")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from exc
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if (
            not value
            or value.startswith("/")
            or value.endswith("/")
            or any(c in value for c in "#+")
        ):
            raise ValueError("must be a non-empty topic path without wildcards or edge slashes")
        return value

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)
