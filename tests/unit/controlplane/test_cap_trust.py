"""Trust: the sender allowlist, and enveloped XML Signatures checked against pinned certificates.

The certificates are real (RSA, self-signed, made here with cryptography) and the alerts are
signed by signxml, as a feed would sign them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.signer import XMLSigner

from controlplane.cap import CapSettings, SenderPolicy, parse_alert
from controlplane.cap.parse import read_alert, read_document
from controlplane.cap.refusal import Refused
from controlplane.cap.trust import Trusted, authenticate
from tests.unit.controlplane.conftest import KTTV, NOW, cap_file, make_settings


@dataclass(frozen=True)
class Signer:
    """A feed's signing key and its self-signed certificate (PEM)."""

    key_pem: bytes
    cert_pem: str


def make_signer(name: str, not_after: datetime | None = None) -> Signer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Signer(key_pem, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def sign(doc: bytes, signer: Signer) -> bytes:
    """The alert with an enveloped XML Signature (RSA-SHA256), as the last child of <alert>."""
    root = etree.fromstring(doc)
    signed = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
    ).sign(root, key=signer.key_pem, cert=signer.cert_pem)
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


@pytest.fixture(scope="module")
def feed() -> Signer:
    return make_signer("canhbao.kttv.gov.vn")


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return make_signer("not-the-feed.example")


def signing_settings(*certs: str, must_sign: bool = True) -> CapSettings:
    return make_settings(
        senders=(SenderPolicy(sender=KTTV, must_sign=must_sign, certificates=certs),)
    )


def trust(doc: bytes, settings: CapSettings) -> Trusted:
    return authenticate(read_document(doc), settings, NOW)


def refusal(doc: bytes, settings: CapSettings) -> tuple[str, str]:
    with pytest.raises(Refused) as caught:
        trust(doc, settings)
    return caught.value.refusal.code, caught.value.refusal.message


def test_a_signed_alert_verifies_and_is_read_from_what_was_signed(feed: Signer) -> None:
    doc = sign(cap_file("alert-flood.xml"), feed)
    trusted = trust(doc, signing_settings(feed.cert_pem))
    assert trusted.signed_by == "CN=canhbao.kttv.gov.vn"
    alert = read_alert(trusted.root)
    assert alert == parse_alert(cap_file("alert-flood.xml"))  # the signature is not content
    assert trusted.root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None


def test_a_signed_alert_is_valid_cap(feed: Signer) -> None:
    # The schema's <any namespace="…xmldsig#"> admits the signature after the infos.
    read_document(sign(cap_file("update-flood.xml"), feed))


def test_a_tampered_description_is_refused(feed: Signer) -> None:
    doc = sign(cap_file("alert-flood.xml"), feed)
    tampered = doc.replace("Mực nước dâng nhanh.".encode(), "Không có gì nguy hiểm.".encode())
    assert tampered != doc
    code, message = refusal(tampered, signing_settings(feed.cert_pem))
    assert code == "bad_signature"
    assert "changed after it was signed" in message


def test_an_unsigned_alert_from_a_sender_that_must_sign_is_refused(feed: Signer) -> None:
    code, message = refusal(cap_file("alert-flood.xml"), signing_settings(feed.cert_pem))
    assert code == "unsigned"
    assert "must sign its alerts and this one is not signed" in message


def test_an_alert_signed_by_an_unknown_certificate_is_refused(
    feed: Signer, stranger: Signer
) -> None:
    doc = sign(cap_file("alert-flood.xml"), stranger)
    code, message = refusal(doc, signing_settings(feed.cert_pem))
    assert code == "bad_signature"
    assert "certificate(s) configured for 'canhbao@kttv.gov.vn'" in message


def test_any_configured_certificate_verifies(feed: Signer, stranger: Signer) -> None:
    doc = sign(cap_file("alert-flood.xml"), feed)
    trusted = trust(doc, signing_settings(stranger.cert_pem, feed.cert_pem))
    assert trusted.signed_by == "CN=canhbao.kttv.gov.vn"


def test_an_expired_certificate_does_not_verify() -> None:
    old = make_signer("old.kttv.gov.vn", not_after=NOW - timedelta(hours=1))
    doc = sign(cap_file("alert-flood.xml"), old)
    code, message = refusal(doc, signing_settings(old.cert_pem))
    assert code == "bad_signature"
    assert "valid" in message


def test_a_signature_wrapped_around_another_copy_is_refused(feed: Signer) -> None:
    # A genuinely signed alert, carried inside the signature (enveloping, Reference URI="#…"),
    # in an unsigned alert that says something else: the signature verifies, but it does not
    # cover the alert that would be acted on.
    genuine = etree.fromstring(cap_file("alert-flood.xml"))
    signature = XMLSigner(
        method=SignatureConstructionMethod.enveloping,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        # Exclusive canonicalization: the signature still verifies once moved into the forgery.
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(genuine, key=feed.key_pem, cert=feed.cert_pem)
    forged = etree.fromstring(
        cap_file("alert-flood.xml").replace(b"Move to higher floors.", b"Stay where you are.")
    )
    forged.append(signature)
    code, message = refusal(etree.tostring(forged), signing_settings(feed.cert_pem))
    assert code == "bad_signature"
    assert "does not cover the whole alert" in message


def test_a_sender_that_need_not_sign_may_still_sign(feed: Signer, stranger: Signer) -> None:
    settings = signing_settings(feed.cert_pem, must_sign=False)
    assert trust(cap_file("alert-flood.xml"), settings).signed_by is None
    assert trust(sign(cap_file("alert-flood.xml"), feed), settings).signed_by is not None
    # With a certificate configured, a signature that is there must verify.
    code, _ = refusal(sign(cap_file("alert-flood.xml"), stranger), settings)
    assert code == "bad_signature"


def test_a_sender_not_on_the_allowlist_is_refused() -> None:
    settings = make_settings(senders=(SenderPolicy(sender="other@example.vn"),))
    code, message = refusal(cap_file("alert-flood.xml"), settings)
    assert code == "unknown_sender"
    assert "'canhbao@kttv.gov.vn' is not on the allowlist" in message


def test_a_sender_that_must_sign_needs_a_certificate() -> None:
    with pytest.raises(ValueError, match="needs at least one"):
        SenderPolicy(sender=KTTV, must_sign=True)
    with pytest.raises(ValueError, match=r"not a PEM X\.509 certificate"):
        SenderPolicy(sender=KTTV, certificates=("-----BEGIN CERTIFICATE-----\nxx\n",))
