"""protocol.signing against an independent reading of PROTOCOL.md (tests.unit.fakes.Signer)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import signing
from tests.unit.fakes import Signer, bulletin, canonical, document


def vietnamese_doc() -> dict[str, Any]:
    return document("play.now", {"bulletin": bulletin("Thông báo: cắt điện khu phố 3")})


def test_signing_input_is_the_canonical_form_of_the_protocol() -> None:
    doc = Signer().sign(vietnamese_doc())
    expected = json.dumps(
        {k: v for k, v in doc.items() if k != "sig"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    assert signing.signing_input(doc) == expected == canonical(doc)
    assert b'"sig"' not in signing.signing_input(doc)
    assert "Thông báo".encode() in signing.signing_input(doc)  # raw UTF-8, not \u escapes


def test_signing_input_ignores_key_order_and_sig() -> None:
    doc = vietnamese_doc()
    reordered = dict(reversed(list(doc.items())))
    assert signing.signing_input(doc) == signing.signing_input({**reordered, "sig": "x"})


def test_agent_signature_verifies_with_independent_code() -> None:
    signer = Signer()
    signed = signing.sign({**vietnamese_doc(), "kid": signer.kid}, signer.private)
    raw = base64.urlsafe_b64decode(signed["sig"] + "=" * (-len(signed["sig"]) % 4))
    assert "=" not in signed["sig"]
    signer.public.verify(raw, canonical(signed))  # raises InvalidSignature if not


def test_independent_signature_is_valid_for_agent() -> None:
    signer = Signer()
    signed = signer.sign(vietnamese_doc())
    assert signing.signature_valid(signed, signer.public)


@pytest.mark.parametrize(
    "sig",
    [
        None,
        42,
        "",
        "not base64!",
        "AAAA",  # valid base64url, wrong length
        "A" * 86 + "==",  # padded: the protocol says no padding
    ],
)
def test_malformed_signatures_are_invalid_not_errors(sig: Any) -> None:
    signer = Signer()
    signed = {**signer.sign(vietnamese_doc()), "sig": sig}
    assert not signing.signature_valid(signed, signer.public)


def test_changed_content_or_other_key_is_invalid() -> None:
    signer = Signer()
    signed = signer.sign(vietnamese_doc())
    assert not signing.signature_valid({**signed, "id": "01JDX3M7K2Q9"}, signer.public)
    assert not signing.signature_valid(signed, Signer(seed=2).public)


def test_b64url_round_trip_and_strictness() -> None:
    for raw in (b"", b"\x00", b"\xff\xfe", bytes(range(64))):
        text = signing.b64url(raw)
        assert "=" not in text and "+" not in text and "/" not in text
        assert signing.b64url_decode(text) == raw
    with pytest.raises(ValueError):
        signing.b64url_decode("AA==")


def test_key_round_trips() -> None:
    private = Ed25519PrivateKey.generate()
    again = signing.private_key_from_b64(signing.private_key_to_b64(private))
    text = signing.public_key_to_b64(private.public_key())
    assert len(base64.b64decode(text)) == 32
    assert signing.public_key_to_b64(again.public_key()) == text
    assert signing.public_key_to_b64(signing.public_key_from_b64(text)) == text
