"""Fuzzing the director's message handling with Hypothesis.

Whatever arrives, handling it never raises, and nothing is executed (no id remembered, no
setting changed, no ack other than ``rejected``, no reply published) unless the payload is the
signed document itself. "Itself" means: it decodes to a JSON object whose canonical form (the
signing input of PROTOCOL.md) is that of a validly signed document, so re-spacing or
re-escaping the same JSON counts as the same document, as the protocol intends.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig
from agent.events import Inbound
from agent.store import Store
from tests import fuzzing
from tests.unit.fakes import (
    CMD_TOPIC,
    PROGRAM_TOPIC,
    TOPICS,
    Rig,
    Signer,
    agent_config,
    bulletin,
    canonical,
    document,
    make_rig,
    program_body,
)

# The same examples on every run (derandomized): a failure is always reproducible. Scaled by
# TTCS_FUZZ_INPUTS like every fuzz target (tests/fuzzing.py).
FUZZ = fuzzing.fuzz_settings(250)
DIRECTOR = "director (message handling)"
SIGNER = Signer()
GROUP_CMD = TOPICS.grp("q10", "cmd")

# Valid signed documents of every kind the director knows, with the topic each belongs on.
VALID: list[tuple[str, dict[str, Any]]] = [
    (CMD_TOPIC, SIGNER.sign(document("ping", doc_id="fuzz-ping-01"))),
    (CMD_TOPIC, SIGNER.sign(document("volume.set", {"percent": 25}, doc_id="fuzz-vol-01"))),
    (CMD_TOPIC, SIGNER.sign(document("logs.upload", {"lines": 5}, doc_id="fuzz-logs-01"))),
    (CMD_TOPIC, SIGNER.sign(document("agent.restart", doc_id="fuzz-restart-01"))),
    (
        GROUP_CMD,
        SIGNER.sign(
            document(
                "play.now",
                {"bulletin": bulletin("Thông báo mất nước khu phố 4"), "repeat": 2},
                target="grp:q10",
                doc_id="fuzz-play-01",
            )
        ),
    ),
    (PROGRAM_TOPIC, SIGNER.sign(document("program", program_body(7), doc_id="fuzz-prog-07"))),
]
VALID_FORMS = {canonical(doc) for _, doc in VALID}
TOPICS_TRIED = [CMD_TOPIC, PROGRAM_TOPIC, GROUP_CMD, TOPICS.grp("q10-p12", "program")]


@pytest.fixture(scope="module")
def config() -> Iterator[AgentConfig]:
    with tempfile.TemporaryDirectory(prefix="ttcs-fuzz-") as tmp:
        yield agent_config(Path(tmp), SIGNER)


def fresh_rig(config: AgentConfig) -> Rig:
    """A director with an empty store (in memory: hundreds of examples, each from scratch)."""
    return make_rig(Store(Path(":memory:")), config, SIGNER)


def is_a_signed_document(payload: bytes, topic: str) -> bool:
    """The payload is one of VALID, byte for byte or re-laid-out, on its own topic."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    if not isinstance(doc, dict):
        return False
    try:
        form = canonical(doc)
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form, so never signed
        return False
    return form in VALID_FORMS and any(form == canonical(d) and topic == t for t, d in VALID)


def handle_and_check(config: AgentConfig, topic: str, payload: bytes) -> None:
    rig = fresh_rig(config)
    try:
        rig.director.handle(Inbound(topic, payload, None, False))
        if is_a_signed_document(payload, topic):
            return  # executing it is right
        statuses = [a["status"] for a in rig.acks()]
        assert set(statuses) <= {"rejected"}, (statuses, payload[:300])
        assert rig.seen_ids() == set()
        assert rig.settings() == {}
        assert rig.director.conductor.volume == 70
        assert rig.director.exit_reason is None
        assert {t.rsplit("/", 1)[-1] for t, _ in rig.outbox()} <= {"ack", "event"}
    finally:
        rig.store.close()


# --------------------------------------------------------------------------- strategies

# Text, sometimes with a lone surrogate, which JSON can escape (\ud800) but UTF-8 cannot encode.
TEXT = st.text(max_size=12) | st.builds(
    lambda head, odd, tail: head + odd + tail,
    st.text(max_size=4),
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]),
    st.text(max_size=4),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key/index path inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def byte_mutations(draw: st.DrawFn) -> tuple[str, bytes]:
    topic, doc = draw(st.sampled_from(VALID))
    data = bytearray(json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8"))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        action = draw(
            st.sampled_from(
                ["text", "text", "text", "flip", "set", "delete", "insert", "truncate", "repeat"]
            )
        )
        if action == "text":  # a letter or digit for another: still JSON, so checks 3-11 work
            inside = [i for i, b in enumerate(data) if chr(b).isalnum()]
            if inside:
                data[draw(st.sampled_from(inside))] = draw(st.sampled_from(b"019aAzZ-_."))
        elif action == "flip":
            data[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif action == "set":
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif action == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=8))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at : at + draw(st.integers(min_value=1, max_value=16))]
    return topic, bytes(data)


@st.composite
def field_mutations(draw: st.DrawFn, resign: bool = False) -> tuple[str, bytes]:
    topic, original = draw(st.sampled_from(VALID))
    doc = json.loads(json.dumps(original))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        candidates = list(paths(doc))
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = _parent(doc, path)
        action = draw(st.sampled_from(["drop", "replace", "add", "retype"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(TEXT)] = draw(json_values)
        else:
            old = parent[path[-1]]
            retyped: list[Any] = [str(old), [old], {"value": old}, None]
            if isinstance(old, int) and not isinstance(old, bool):
                retyped += [float(old), bool(old), -old, old + 1]
            parent[path[-1]] = draw(st.sampled_from(retyped))
    if resign:
        with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate cannot be signed
            doc = SIGNER.sign(doc)
    topic = draw(st.sampled_from([topic, *TOPICS_TRIED]))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True)
    return topic, text.encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------- properties


@FUZZ
@given(payload=st.binary(max_size=600), topic=st.sampled_from(TOPICS_TRIED))
@fuzzing.target(DIRECTOR)
def test_arbitrary_bytes_execute_nothing(config: AgentConfig, payload: bytes, topic: str) -> None:
    handle_and_check(config, topic, payload)


@FUZZ
@given(
    doc=st.dictionaries(
        st.sampled_from(
            ["v", "id", "type", "target", "issued_at", "expires_at", "body", "kid", "sig"]
        ),
        json_values,
    ),
    topic=st.sampled_from(TOPICS_TRIED),
)
@fuzzing.target(DIRECTOR)
def test_arbitrary_envelopes_execute_nothing(
    config: AgentConfig, doc: dict[str, Any], topic: str
) -> None:
    handle_and_check(config, topic, json.dumps(doc).encode("utf-8"))


@FUZZ
@given(mutated=byte_mutations())
@fuzzing.target(DIRECTOR)
def test_byte_mutations_of_signed_documents_execute_nothing(
    config: AgentConfig, mutated: tuple[str, bytes]
) -> None:
    handle_and_check(config, *mutated)


@FUZZ
@given(mutated=field_mutations())
@fuzzing.target(DIRECTOR)
def test_field_mutations_of_signed_documents_execute_nothing(
    config: AgentConfig, mutated: tuple[str, bytes]
) -> None:
    handle_and_check(config, *mutated)


NEAR_MISSES = [
    CMD_TOPIC + "/",
    "/" + CMD_TOPIC,
    CMD_TOPIC.upper(),
    CMD_TOPIC.replace("/cmd", "/program/cmd"),
    CMD_TOPIC + "\x00",
    "ttcs/v1//dev/q10-p12-bang-01/cmd",
    "ttcs/v1/dev/+/cmd",
    "ttcs/v1/dev/#",
    "ttcs/v1/grp/all/cmd",
    TOPICS.grp("q10", "program"),
    TOPICS.dev("q10-p12-bang-02", "cmd"),
    *TOPICS_TRIED,
]


@settings(FUZZ, max_examples=fuzzing.examples(80))  # each example tries every valid document
@given(topic=st.one_of(st.text(max_size=60), st.sampled_from(NEAR_MISSES)))
@fuzzing.target(DIRECTOR)
def test_signed_documents_on_any_other_topic_execute_nothing(
    config: AgentConfig, topic: str
) -> None:
    for _, doc in VALID:
        handle_and_check(config, topic, json.dumps(doc).encode("utf-8"))


@FUZZ
@given(mutated=field_mutations(resign=True))
@fuzzing.target(DIRECTOR)
def test_signed_garbage_never_raises_and_a_rejection_changes_nothing(
    config: AgentConfig, mutated: tuple[str, bytes]
) -> None:
    """Even with a valid signature (a compromised or buggy source system), a document that
    fails a check is rejected without a trace in the state."""
    topic, payload = mutated
    rig = fresh_rig(config)
    rig.director.handle(Inbound(topic, payload, None, False))
    [ack] = rig.acks()
    if ack["status"] == "rejected":
        assert rig.seen_ids() == set()
        assert rig.settings() == {}
        assert rig.director.exit_reason is None
    else:
        assert ack["status"] in {"done", "accepted", "failed"}
        assert rig.seen_ids() == {ack["cmd"]}
    rig.store.close()


def test_the_valid_documents_are_executed(config: AgentConfig) -> None:
    """The oracle's other side: unchanged, each valid document does run."""
    for topic, doc in VALID:
        for payload in (json.dumps(doc).encode(), json.dumps(doc, indent=1).encode()):
            assert is_a_signed_document(payload, topic)
            rig = fresh_rig(config)
            rig.director.handle(Inbound(topic, payload, None, False))
            assert rig.seen_ids() == {doc["id"]}
            first, *_ = rig.acks()
            assert first["status"] in {"done", "accepted", "failed"}
            rig.store.close()


def test_the_director_memory_stays_bounded(config: AgentConfig) -> None:
    """Without Hypothesis (whose own record of its inputs grows within a property), a
    thousand messages through fresh directors leave the resident set where it was."""
    payloads = [json.dumps({"v": 1, "id": f"fuzz-mem-{n:06d}"}).encode() for n in range(1000)]
    handle_and_check(config, CMD_TOPIC, payloads[0])  # the first use's imports and caches
    start = fuzzing.rss_bytes()
    for payload in payloads:
        handle_and_check(config, CMD_TOPIC, payload)
    assert fuzzing.rss_bytes() - start < 16 * 1024 * 1024
