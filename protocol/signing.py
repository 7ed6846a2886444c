"""Ed25519 signatures over the canonical signing input of PROTOCOL.md."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)


def signing_input(doc: dict[str, Any]) -> bytes:
    """The bytes that are signed: the envelope without ``sig``, canonically serialized."""
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url without padding; raise ValueError on anything else."""
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """Load a raw 32-byte public key given in standard base64 with padding."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def public_key_to_b64(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def private_key_to_b64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode("ascii")


def private_key_from_b64(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text.strip(), validate=True))


def sign(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``sig`` set."""
    signed = {k: v for k, v in doc.items() if k != "sig"}
    signed["sig"] = b64url(key.sign(signing_input(signed)))
    return signed


def signature_valid(doc: dict[str, Any], key: Ed25519PublicKey) -> bool:
    """True when ``doc["sig"]`` is a valid signature of its signing input by ``key``."""
    try:
        raw = b64url_decode(doc.get("sig"))  # type: ignore[arg-type]
    except ValueError:
        return False
    if len(raw) != 64:
        return False
    try:
        key.verify(raw, signing_input(doc))
    except InvalidSignature:
        return False
    return True
