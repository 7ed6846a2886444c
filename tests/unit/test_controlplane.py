"""The control plane refuses to sign what every device would reject."""

from __future__ import annotations

import pytest

from agent.controlplane import ControlError, SigningKey, make_document
from agent.signing import public_key_from_b64, signature_valid


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("hcm-2026")


def test_a_valid_command_is_signed(key: SigningKey) -> None:
    doc = make_document(key, "volume.set", "dev:q10-p12-bang-01", {"percent": 40})
    assert signature_valid(doc, public_key_from_b64(key.public_b64))
    assert doc["expires_at"] > doc["issued_at"]


@pytest.mark.parametrize(
    ("doc_type", "body", "fragment"),
    [
        ("volume.set", {"percent": 101}, "body.percent"),
        ("volume.set", {"percent": 40, "fade_s": 1.5}, "body.fade_s: floating-point"),
        ("program", {"version": 1, "ticker": [0.5]}, "body.ticker[0]: floating-point"),
        ("ping", {"extra": float("nan")}, "body.extra: floating-point"),
    ],
)
def test_a_body_every_device_would_reject_is_not_signed(
    key: SigningKey, doc_type: str, body: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ControlError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        make_document(key, doc_type, "dev:q10-p12-bang-01", body, ttl_s=60)


def test_bad_target_and_type_are_named(key: SigningKey) -> None:
    with pytest.raises(ControlError, match="bad target"):
        make_document(key, "ping", "q10-p12-bang-01", {})
    with pytest.raises(ControlError, match="unknown type"):
        make_document(key, "self.destruct", "dev:q10-p12-bang-01", {})


@pytest.mark.parametrize("kid", ["", "has space", "dotted.kid", "k" * 65])
def test_a_key_id_that_devices_cannot_hold_is_refused(kid: str) -> None:
    with pytest.raises(ControlError, match="bad key id"):
        SigningKey.generate(kid)
