"""Fuzzing the MQTT payload decoder and verifier (``agent.verify``) on its own.

Whatever the bytes, ``Verifier.verify`` returns a ``Rejection`` or an ``Accepted`` and raises
nothing; it accepts only documents that ``tests/unit/spec.py`` (PROTOCOL.md written again as
plain checks) finds nothing wrong with and that carry a valid signature. Mutated documents are
also signed again after the mutation (a compromised or buggy source), so the checks after the
signature (schema, target, times) are reached too.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent.verify import Accepted, Rejection, Verifier
from protocol import Topics
from tests import fuzzing
from tests.unit.fakes import DEVICE, GROUPS, NOW, PREFIX, FakeClock, MemoryHistory
from tests.unit.spec import envelope_problems
from tests.unit.test_fuzz import (
    SIGNER,
    TOPICS_TRIED,
    VALID,
    byte_mutations,
    field_mutations,
    is_a_signed_document,
    json_values,
)

NAME = "verify (MQTT payload decoder + 11 checks)"
VERIFIER = Verifier(
    DEVICE,
    GROUPS,
    {SIGNER.kid: SIGNER.public},
    Topics(PREFIX),
    MemoryHistory(),  # empty: checks 10 and 11 pass for every new id and version
    clock=FakeClock(),
)


def verify_and_check(topic: str, payload: bytes, resigned: bool = False) -> None:
    result = VERIFIER.verify(topic, payload)
    assert isinstance(result, Accepted | Rejection), result
    if isinstance(result, Rejection):
        assert result.reason in {
            "too_large",
            "malformed",
            "unsupported_version",
            "unknown_key",
            "bad_signature",
            "invalid",
            "wrong_target",
            "from_future",
            "expired",
        }, result
        assert len(result.detail) <= 201, result
        return
    fuzzing.accepted(NAME)
    doc = json.loads(payload)
    problems = envelope_problems(doc, topic, NOW, DEVICE, GROUPS, PREFIX)
    assert problems == [], (problems, payload[:400])
    if not resigned:  # nobody signed it again: it must be one of the signed documents
        assert is_a_signed_document(payload, topic), payload[:400]
    assert result.topic == topic and result.envelope.id == doc["id"]


@fuzzing.fuzz_settings(120)
@given(payload=st.binary(max_size=600), topic=st.sampled_from(TOPICS_TRIED))
@fuzzing.target(NAME)
def test_verify_arbitrary_bytes(payload: bytes, topic: str) -> None:
    verify_and_check(topic, payload)


@fuzzing.fuzz_settings(120)
@given(value=json_values, topic=st.sampled_from(TOPICS_TRIED))
@fuzzing.target(NAME)
def test_verify_arbitrary_json(value: Any, topic: str) -> None:
    verify_and_check(topic, json.dumps(value).encode("utf-8", "surrogatepass"))


@fuzzing.fuzz_settings(160)
@given(mutated=byte_mutations())
@fuzzing.target(NAME)
def test_verify_byte_mutations(mutated: tuple[str, bytes]) -> None:
    verify_and_check(*mutated)


@fuzzing.fuzz_settings(160)
@given(mutated=field_mutations(resign=True))
@fuzzing.target(NAME)
def test_verify_signed_field_mutations(mutated: tuple[str, bytes]) -> None:
    verify_and_check(*mutated, resigned=True)


@fuzzing.fuzz_settings(40)
@given(depth=st.integers(min_value=1, max_value=3000), opener=st.sampled_from("[{"))
@fuzzing.target(NAME)
def test_verify_deep_nesting(depth: int, opener: str) -> None:
    inner = '"x"' if opener == "[" else '{"a":1}'
    nested = (opener + ('"k":' if opener == "{" else "")) * depth
    closer = ("]" if opener == "[" else "}") * depth
    verify_and_check(TOPICS_TRIED[0], (nested + inner + closer).encode())


def test_verify_accepts_the_valid_documents() -> None:
    """The oracle's other side: every valid document passes, on its own topic."""
    for topic, doc in VALID:
        assert isinstance(VERIFIER.verify(topic, json.dumps(doc).encode()), Accepted)


def test_verify_memory_stayed_bounded() -> None:
    fuzzing.check_memory(NAME)
