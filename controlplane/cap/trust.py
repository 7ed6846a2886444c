"""Whose alerts are acted on: the sender allowlist and enveloped XML Signatures (signxml).

- The ``sender`` must be on the allowlist (``CapSettings.senders``), or the alert is refused.
- An alert that carries a ``ds:Signature`` from a sender with certificates configured must
  verify with one of them; one from a sender that ``must_sign`` must carry one. A sender that
  need not sign and has no certificate configured is trusted on the allowlist alone (its
  signature, if any, is not checked: an attacker could as well have left it out).
- A signature counts only if it is enveloped and covers the whole alert (one reference,
  ``URI=""``); the alert is then read from what was verified, never from the bytes around it,
  so nothing outside the signature (a wrapped copy, an added element) is ever acted on.
- The certificates are pinned: the configured certificate is the trust anchor (self-signed is
  fine), its validity period is checked at ``now``, and SHA-1 signatures and digests are
  refused (signxml's defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from lxml import etree
from signxml.exceptions import InvalidDigest, SignXMLException
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from controlplane.cap.parse import DSIG_NS, NS, has_signature, safe_parser
from controlplane.cap.refusal import Refused
from controlplane.cap.settings import CapSettings, SenderPolicy

# The signature is a child of <alert> (the schema's <any namespace=xmldsig>), covering it all.
_CONFIG = SignatureConfiguration(location="./", expect_references=1)


@dataclass(frozen=True)
class Trusted:
    """An alert that passed the trust checks: the element to read, and how it was trusted."""

    root: etree._Element
    policy: SenderPolicy
    signed_by: str | None  # the verifying certificate's subject, when signed


def authenticate(root: etree._Element, settings: CapSettings, now: datetime) -> Trusted:
    """Check the sender and the signature of a validated alert; ``Refused`` when not trusted."""
    sender = (root.findtext("cap:sender", namespaces=NS) or "").strip()
    policy = settings.sender(sender)
    if policy is None:
        raise Refused("unknown_sender", f"sender {sender!r} is not on the allowlist (cap.senders)")
    signed = has_signature(root)
    if not signed:
        if policy.must_sign:
            raise Refused(
                "unsigned", f"sender {sender!r} must sign its alerts and this one is not signed"
            )
        return Trusted(root, policy, None)
    if not policy.certificates:
        return Trusted(root, policy, None)
    return _verify(root, policy, now)


def _verify(root: etree._Element, policy: SenderPolicy, now: datetime) -> Trusted:
    config = replace(_CONFIG, verification_time=now)
    failures: list[str] = []
    for cert in policy.x509_certificates():
        try:
            result = XMLVerifier().verify(
                root, x509_cert=cert, expect_config=config, parser=safe_parser()
            )
        except InvalidDigest as exc:
            failures.append(f"{exc} (the alert was changed after it was signed)")
            continue
        except SignXMLException as exc:
            failures.append(str(exc))
            continue
        if not isinstance(result, VerifyResult):  # a list only when several are expected
            failures.append("the signature has more than one reference")
            continue
        signed = result.signed_xml
        reference = result.signature_xml.find(f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}Reference")
        if reference is None or reference.get("URI") != "" or signed is None:
            failures.append('the signature does not cover the whole alert (Reference URI="")')
            continue
        if signed.tag != root.tag:
            failures.append("what the signature covers is not the alert")
            continue
        return Trusted(signed, policy, cert.subject.rfc4514_string())
    unique = list(dict.fromkeys(failures))
    raise Refused(
        "bad_signature",
        f"the XML signature does not verify with the certificate(s) configured for "
        f"{policy.sender!r}: {'; '.join(unique)}",
    )
