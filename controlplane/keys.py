"""Signing keys, signed documents and device configurations (``keygen``, ``provision``).

Built on the shared protocol layer (models, Ed25519 signing), so the server and the devices
cannot disagree about what a valid document is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from controlplane.errors import ControlError
from protocol import (
    BODY_MODELS,
    IDENT_RE,
    TARGET_RE,
    Envelope,
    describe_error,
    find_float,
    format_time,
)
from protocol.signing import (
    private_key_from_b64,
    private_key_to_b64,
    public_key_to_b64,
    sign,
)

KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # also a bare TOML key in [trust.keys]


class SigningKey:
    """A key id and its Ed25519 private key, kept in a JSON file readable by its owner only."""

    def __init__(self, kid: str, key: Ed25519PrivateKey) -> None:
        if not KID_RE.match(kid):
            raise ControlError(f"bad key id {kid!r}: 1-64 of A-Z a-z 0-9 _ -")
        self.kid = kid
        self.key = key

    @property
    def public_b64(self) -> str:
        return public_key_to_b64(self.key.public_key())

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["kid"]), private_key_from_b64(str(data["private_key"])))
        except (OSError, ValueError, KeyError) as exc:
            raise ControlError(f"cannot load signing key {path}: {exc}") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "kid": self.kid,
            "private_key": private_key_to_b64(self.key),
            "public_key": self.public_b64,
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")


def new_id() -> str:
    """A unique document id (time-ordered prefix, random suffix)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def make_document(
    key: SigningKey,
    doc_type: str,
    target: str,
    body: dict[str, Any],
    ttl_s: int | None = 3600,
    now: datetime | None = None,
    doc_id: str | None = None,
) -> dict[str, Any]:
    """Build, check and sign a command or program envelope."""
    if doc_type not in BODY_MODELS:
        raise ControlError(f"unknown type {doc_type!r}; one of: {', '.join(BODY_MODELS)}")
    if not TARGET_RE.match(target):
        raise ControlError(f"bad target {target!r}: use dev:DEVICE or grp:GROUP")
    now = now or datetime.now(UTC)
    doc: dict[str, Any] = {
        "v": 1,
        "id": doc_id or new_id(),
        "type": doc_type,
        "target": target,
        "issued_at": format_time(now),
        "body": body,
        "kid": key.kid,
    }
    if ttl_s is not None:
        doc["expires_at"] = format_time(now + timedelta(seconds=ttl_s))
    signed = sign(doc, key.key)
    # The devices' own schema check (6), so that nothing is signed that every device rejects.
    where = find_float(signed)
    if where:
        raise ControlError(f"invalid {doc_type}: {where}: floating-point numbers are not allowed")
    try:
        Envelope.model_validate(signed)
    except ValidationError as exc:
        raise ControlError(f"invalid {doc_type}: {describe_error(exc)}") from None
    return signed


def device_config(
    device: str,
    groups: list[str],
    broker: str,
    key: SigningKey,
    prefix: str,
    state_dir: str,
    cache_dir: str,
) -> str:
    """A device's TOML configuration holding the control plane's public key."""
    if not IDENT_RE.match(device):
        raise ControlError(f"bad device id {device!r}")
    group_list = ", ".join(json.dumps(g) for g in groups)
    return f"""# ttcs-agent configuration for {device}, written by `ttcs-control provision`.
# Every key is described in config/agent.example.toml.
device_id = "{device}"
groups = [{group_list}]
timezone = "Asia/Ho_Chi_Minh"

[mqtt]
url = "{broker}"
topic_prefix = "{prefix}"

[trust.keys]
{key.kid} = "{key.public_b64}"

[paths]
state_dir = "{state_dir}"
cache_dir = "{cache_dir}"
"""


def cmd_keygen(args: argparse.Namespace) -> int:
    key = SigningKey.generate(args.kid)
    try:
        key.save(args.out)
    except FileExistsError:
        raise ControlError(f"{args.out} exists; refusing to overwrite a signing key") from None
    print(f"wrote {args.out} (kid {args.kid}); public key for [trust.keys]:")
    print(f'{args.kid} = "{key.public_b64}"')
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    text = device_config(
        args.device, args.group, args.broker, key, args.prefix, args.state_dir, args.cache_dir
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0
