"""The simulated fleet's identities and documents: device configurations, the signing key,
signed commands and programs (and the forged one every device must refuse)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import Envelope, format_time
from protocol.signing import public_key_to_b64, sign

KID = "fleet-sim"
GROUP_ALL = "all"
WARD_SIZE = 50  # devices per ward group
PREFIX = "ttcs/v1"


def device_id(index: int) -> str:
    return f"sim-{index:04d}"


def ward_of(index: int) -> str:
    return f"w{index // WARD_SIZE:03d}"


@dataclass(frozen=True)
class FleetLayout:
    """Where the devices' configurations live, and what they all share."""

    root: Path
    broker_port: int
    count: int
    fetch_jitter_s: int

    def config_path(self, index: int) -> Path:
        return self.root / device_id(index) / "agent.toml"


def write_configs(layout: FleetLayout, key: Ed25519PrivateKey) -> None:
    """One TOML configuration per device, as ``ttcs-control provision`` would write it, with
    state and cache directories of its own (SQLite in WAL mode, ``synchronous=FULL``)."""
    public = public_key_to_b64(key.public_key())
    for index in range(layout.count):
        base = layout.root / device_id(index)
        base.mkdir(parents=True, exist_ok=True)
        groups = json.dumps([ward_of(index), GROUP_ALL])
        layout.config_path(index).write_text(
            f'device_id = "{device_id(index)}"\ngroups = {groups}\n'
            f'[mqtt]\nurl = "mqtt://127.0.0.1:{layout.broker_port}"\n'
            f'topic_prefix = "{PREFIX}"\n'
            f'[trust.keys]\n{KID} = "{public}"\n'
            f'[paths]\nstate_dir = "{base / "state"}"\ncache_dir = "{base / "cache"}"\n'
            f"[cache]\nfetch_jitter_s = {layout.fetch_jitter_s}\nmin_free_bytes = 0\n"
            f'[log]\nlevel = "WARNING"\n'
            f"[screen]\nenabled = false\n[speaker]\nenabled = false\n",
            encoding="utf-8",
        )


def new_id() -> str:
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def signed(
    key: Ed25519PrivateKey,
    doc_type: str,
    target: str,
    body: dict[str, Any],
    ttl_s: int | None = 3600,
) -> dict[str, Any]:
    """A signed envelope, checked against the devices' own schema before it is sent."""
    now = datetime.now(UTC)
    doc: dict[str, Any] = {
        "v": 1,
        "id": new_id(),
        "type": doc_type,
        "target": target,
        "issued_at": format_time(now),
        "body": body,
        "kid": KID,
    }
    if ttl_s is not None:
        doc["expires_at"] = format_time(now + timedelta(seconds=ttl_s))
    out = sign(doc, key)
    Envelope.model_validate(out)
    return out


def forged(doc: dict[str, Any]) -> dict[str, Any]:
    """The same command under a new id, signed by a key nobody trusts but with the trusted key
    id: what an attacker who knows the protocol but not the key can send."""
    fake = {**doc, "id": new_id()}
    return sign(fake, Ed25519PrivateKey.generate())


def emergency_body(text: str) -> dict[str, Any]:
    return {
        "bulletin": {
            "id": "bao-dong-bao",
            "title": "Cảnh báo bão khẩn cấp",
            "level": "emergency",
            "screen": {"kind": "text", "text": text, "duration_ms": 15000},
            "speaker": {"kind": "tts", "text": text, "chime": True},
        }
    }


def program_body(version: int, media: list[dict[str, Any]]) -> dict[str, Any]:
    """A program of one image bulletin per file (screen only)."""
    bulletins = [
        {
            "id": f"tb-{index:02d}",
            "title": f"Thông báo số {index + 1}",
            "level": "normal",
            "screen": {"kind": "image", "media": m, "duration_ms": 10000},
        }
        for index, m in enumerate(media)
    ]
    return {"version": version, "bulletins": bulletins, "ticker": ["Bản tin phường"]}


def payload(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
