"""The eleven checks of PROTOCOL.md, each passing and failing, and their order."""

from __future__ import annotations

import base64
import json
import sys
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.verify import Accepted, Rejection, Verifier
from protocol import PlayNowBody, ProgramBody, VolumeSetBody
from tests.unit.fakes import (
    CMD_TOPIC,
    DEVICE,
    GROUPS,
    NOW,
    PROGRAM_TOPIC,
    TOPICS,
    FakeClock,
    MemoryHistory,
    Signer,
    bulletin,
    document,
    encode,
    program_body,
    rfc3339,
)

GROUP_CMD = TOPICS.grp("q10", "cmd")
GROUP_PROGRAM = TOPICS.grp("q10-p12", "program")


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def history() -> MemoryHistory:
    return MemoryHistory()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(signer: Signer, history: MemoryHistory, clock: FakeClock) -> Verifier:
    return Verifier(DEVICE, GROUPS, {signer.kid: signer.public}, TOPICS, history, clock)


def reason(result: Accepted | Rejection) -> str:
    return result.reason if isinstance(result, Rejection) else "accepted"


def accepted(result: Accepted | Rejection) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


def rejected(result: Accepted | Rejection, code: str) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.reason == code, result
    return result


def padded(signer: Signer, size: int) -> bytes:
    """A valid signed ping whose wire form is exactly ``size`` bytes."""
    doc = document("ping")
    doc["pad"] = ""
    base = len(signer.payload(doc))
    doc["pad"] = "x" * (size - base)
    payload = signer.payload(doc)
    assert len(payload) == size
    return payload


# --------------------------------------------------------------------------- a valid document


def test_independently_signed_vietnamese_document_verifies(history: MemoryHistory) -> None:
    """Signed with cryptography and json directly, per PROTOCOL.md, not with protocol.signing."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    title_nfd = unicodedata.normalize("NFD", "Thông báo khẩn: nước lên ở bờ kè Nhiêu Lộc")
    doc: dict[str, Any] = {
        "v": 1,
        "id": "tb-2026_1126-khan",
        "type": "play.now",
        "target": "grp:q10",
        "issued_at": "2026-11-26T05:59:00Z",
        "expires_at": "2026-11-26T07:00:00Z",
        "body": {"bulletin": bulletin(title_nfd, level="priority"), "repeat": 2},
        "kid": "tp-hcm",
    }
    signing_input = json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert title_nfd.encode("utf-8") in signing_input and b"\\u" not in signing_input
    sig = base64.urlsafe_b64encode(key.sign(signing_input)).rstrip(b"=").decode("ascii")
    # On the wire the JSON may be laid out any way (here: ASCII escapes, indented).
    wire = json.dumps({**doc, "sig": sig}, ensure_ascii=True, indent=2).encode("ascii")
    verifier = Verifier(DEVICE, GROUPS, {"tp-hcm": key.public_key()}, TOPICS, history, FakeClock())

    ok = accepted(verifier.verify(GROUP_CMD, wire))

    assert ok.topic == GROUP_CMD
    assert ok.envelope.id == "tb-2026_1126-khan"
    body = ok.envelope.body
    assert isinstance(body, PlayNowBody)
    assert body.repeat == 2
    assert body.bulletin.title == unicodedata.normalize("NFC", title_nfd)  # NFC after checking

    # The same document signed over ASCII-escaped JSON is not the protocol's signing input.
    escaped = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    bad = base64.urlsafe_b64encode(key.sign(escaped.encode())).rstrip(b"=").decode("ascii")
    rejected(verifier.verify(GROUP_CMD, encode({**doc, "sig": bad})), "bad_signature")


def test_every_check_passes_for_a_valid_command(verifier: Verifier, signer: Signer) -> None:
    ok = accepted(
        verifier.verify(CMD_TOPIC, signer.payload(document("volume.set", {"percent": 40})))
    )
    assert isinstance(ok.envelope.body, VolumeSetBody)
    assert ok.envelope.body.percent == 40


def test_verifying_changes_no_history(
    verifier: Verifier, signer: Signer, history: MemoryHistory
) -> None:
    accepted(verifier.verify(CMD_TOPIC, signer.payload(document())))
    accepted(verifier.verify(CMD_TOPIC, signer.payload(document())))
    assert history.seen_ids == set() and history.versions == {}


# --------------------------------------------------------------------------- 1. too_large


def test_1_too_large(signer: Signer, verifier: Verifier) -> None:
    limit = verifier.max_payload_bytes
    assert limit == 262144
    accepted(verifier.verify(CMD_TOPIC, padded(signer, limit)))
    rej = rejected(verifier.verify(CMD_TOPIC, padded(signer, limit + 1)), "too_large")
    assert rej.doc_id is None


def test_1_too_large_uses_the_configured_limit(
    signer: Signer, history: MemoryHistory, clock: FakeClock
) -> None:
    small = Verifier(DEVICE, GROUPS, {signer.kid: signer.public}, TOPICS, history, clock, 2048)
    accepted(small.verify(CMD_TOPIC, padded(signer, 2048)))
    rejected(small.verify(CMD_TOPIC, padded(signer, 2049)), "too_large")


# --------------------------------------------------------------------------- 2. malformed


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe{}",
        b"not json",
        b'{"v": 1,',
        b"[1, 2]",
        b'"a string"',
        b"42",
        b"null",
        b'{"v": 1, "x": NaN}',
        b'{"v": 1, "x": Infinity}',
        '{"title": "Thông báo"}'.encode("utf-16"),
        b"[" * 100_000,
        # Lone surrogates have no UTF-8 form: computing the signing input used to raise.
        b'{"v": 1, "kid": "hcm-2026", "sig": "' + b"A" * 86 + b'", "x": "\\ud800"}',
        b'{"v": 1, "kid": "hcm-2026", "sig": "' + b"A" * 86 + b'", "\\udfff": 1}',
        b'{"v": 1, "kid": "hcm-2026", "body": {"a": ["ok", "x\\udc00y"]}}',
    ],
)
def test_2_malformed(verifier: Verifier, payload: bytes) -> None:
    rej = rejected(verifier.verify(CMD_TOPIC, payload), "malformed")
    assert rej.doc_id is None


def test_2_escaped_surrogate_pairs_are_text(verifier: Verifier, signer: Signer) -> None:
    doc = signer.sign(document("play.now", {"bulletin": bulletin("📢 Thông báo")}))
    wire = json.dumps(doc, ensure_ascii=True).encode("ascii")
    assert b"\\ud83d\\udce2" in wire
    accepted(verifier.verify(CMD_TOPIC, wire))


def nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_2_nesting_is_bounded(verifier: Verifier, signer: Signer) -> None:
    # The document object is level 1, so "x" may hold 31 levels of arrays.
    accepted(verifier.verify(CMD_TOPIC, signer.payload({**document(), "x": nested(31)})))
    rej = rejected(
        verifier.verify(CMD_TOPIC, signer.payload({**document(), "x": nested(32)})), "malformed"
    )
    assert "nested" in rej.detail
    deep_object = {"a": {"b": {"c": nested(30)}}}
    rejected(
        verifier.verify(CMD_TOPIC, signer.payload({**document(), "x": deep_object})), "malformed"
    )


def test_2_deep_nesting_never_raises(verifier: Verifier) -> None:
    """Unsigned, but with a trusted kid: once json.loads had accepted such a payload, computing
    its signing input used to overflow the recursion limit, for depths just below the parser's
    own limit (where exactly depends on the caller's stack, so try them all)."""
    for levels in range(32, sys.getrecursionlimit() + 10):
        payload = (
            b'{"v":1,"kid":"hcm-2026","sig":"' + b"A" * 86 + b'","x":'
            + b"[" * levels + b"]" * levels + b"}"
        )  # fmt: skip
        assert reason(verifier.verify(CMD_TOPIC, payload)) == "malformed", levels


# --------------------------------------------------------------------------- 3. version


@pytest.mark.parametrize("version", [2, 0, "1", True, None, [1], "absent"])
def test_3_unsupported_version(verifier: Verifier, signer: Signer, version: Any) -> None:
    doc = document()
    if version == "absent":
        del doc["v"]
    else:
        doc["v"] = version
    rej = rejected(verifier.verify(CMD_TOPIC, signer.payload(doc)), "unsupported_version")
    assert rej.doc_id == doc["id"]  # readable ids are reported back


# --------------------------------------------------------------------------- 4. key


@pytest.mark.parametrize("kid", ["hcm-2025", "", 7, None, "absent"])
def test_4_unknown_key(verifier: Verifier, kid: Any) -> None:
    doc = Signer(kid="placeholder", seed=3).sign(document())
    if kid == "absent":
        del doc["kid"]
    else:
        doc["kid"] = kid
    rejected(verifier.verify(CMD_TOPIC, encode(doc)), "unknown_key")


def test_4_every_trusted_key_is_accepted(history: MemoryHistory, clock: FakeClock) -> None:
    old, new = Signer("hcm-2025", seed=4), Signer("hcm-2026", seed=5)
    verifier = Verifier(
        DEVICE, GROUPS, {old.kid: old.public, new.kid: new.public}, TOPICS, history, clock
    )
    accepted(verifier.verify(CMD_TOPIC, old.payload(document(doc_id="signed-by-old"))))
    accepted(verifier.verify(CMD_TOPIC, new.payload(document(doc_id="signed-by-new"))))
    verifier.set_keys({new.kid: new.public})
    rejected(verifier.verify(CMD_TOPIC, old.payload(document())), "unknown_key")


# --------------------------------------------------------------------------- 5. signature


def _tamper(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "body": {"percent": 100}}


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda d: {**d, "sig": Signer(seed=9).sign(d)["sig"]}, id="other-key"),
        pytest.param(_tamper, id="content-changed"),
        pytest.param(lambda d: {**d, "id": "01JDX3M7K2Q9"}, id="id-changed"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "sig"}, id="no-sig"),
        pytest.param(lambda d: {**d, "sig": d["sig"][:-4]}, id="truncated"),
        pytest.param(lambda d: {**d, "sig": d["sig"] + "=="}, id="padded"),
        pytest.param(lambda d: {**d, "sig": 12345}, id="not-a-string"),
        pytest.param(lambda d: {**d, "extra": "added after signing"}, id="field-added"),
    ],
)
def test_5_bad_signature(
    verifier: Verifier, signer: Signer, spoil: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    doc = signer.sign(document("volume.set", {"percent": 10}))
    accepted(verifier.verify(CMD_TOPIC, encode(doc)))
    rejected(verifier.verify(CMD_TOPIC, encode(spoil(doc))), "bad_signature")


# --------------------------------------------------------------------------- 6. invalid


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda d: {k: v for k, v in d.items() if k != key}


INVALID = [
    ("float-in-body", document("volume.set", {"percent": 50.0}), "body.percent"),
    (
        "float-anywhere",
        {**document(), "extra": {"x": [1, 2.5]}},
        "extra.x[1]",
    ),
    (
        "float-deep-in-bulletin",
        document(
            "play.now",
            {"bulletin": bulletin(screen={"kind": "text", "text": "a", "duration_ms": 15000.0})},
        ),
        "body.bulletin.screen.duration_ms",
    ),
    ("command-without-expires_at", _without("expires_at")(document()), "expires_at"),
    ("percent-too-high", document("volume.set", {"percent": 101}), "body.percent"),
    ("percent-a-string", document("volume.set", {"percent": "50"}), "body.percent"),
    ("percent-a-bool", document("volume.set", {"percent": True}), "body.percent"),
    ("percent-missing", document("volume.set", {}), "body.percent"),
    (
        "bad-level",
        document("play.now", {"bulletin": bulletin(level="urgent")}),
        "body.bulletin.level",
    ),
    (
        "bad-media-hash",
        document(
            "play.now",
            {
                "bulletin": bulletin(
                    screen={
                        "kind": "image",
                        "media": {
                            "url": "https://cdn.example/a.png",
                            "sha256": "ABC",
                            "size": 1,
                            "mime": "image/png",
                        },
                    }
                )
            },
        ),
        "sha256",
    ),
    ("unknown-type", document("reboot.now"), "type"),
    ("body-not-object", {**document(), "body": []}, "body"),
    ("bad-issued_at", {**document(), "issued_at": "2026-11-26 06:00:00"}, "issued_at"),
    ("local-expires_at", {**document(), "expires_at": "2026-11-26T07:00:00+07:00"}, "expires_at"),
    ("bad-target", {**document(), "target": "dev:Q10_Bang"}, "target"),
    ("bad-id", {**document(), "id": "short"}, "id"),
    ("id-with-slash", {**document(), "id": "../../etc/x"}, "id"),
    (
        "negative-program-version",
        document("program", {**program_body(), "version": -1}),
        "body.version",
    ),
]


@pytest.mark.parametrize(("doc", "field"), [pytest.param(d, f, id=name) for name, d, f in INVALID])
def test_6_invalid_names_the_field(
    verifier: Verifier, signer: Signer, doc: dict[str, Any], field: str
) -> None:
    topic = PROGRAM_TOPIC if doc["type"] == "program" else CMD_TOPIC
    rej = rejected(verifier.verify(topic, signer.payload(doc)), "invalid")
    assert rej.detail.startswith(field) or f"{field}:" in rej.detail, rej.detail


@pytest.mark.parametrize(
    ("doc", "topic"),
    [
        pytest.param(document("volume.set", {"percent": 0}), CMD_TOPIC, id="volume-0"),
        pytest.param(document("volume.set", {"percent": 100}), CMD_TOPIC, id="volume-100"),
        pytest.param(document("program", program_body()), PROGRAM_TOPIC, id="program-no-expiry"),
        pytest.param(
            {**document("program", program_body()), "expires_at": rfc3339(NOW + timedelta(1))},
            PROGRAM_TOPIC,
            id="program-with-expiry",
        ),
        pytest.param(
            {**document(), "future_field": {"ok": [1, "two", None, True]}},
            CMD_TOPIC,
            id="unknown-field-ignored",
        ),
        pytest.param(
            document(
                "stream.start",
                {
                    "url": "rtsp://phuong12.example/live",
                    "channels": ["speaker"],
                    "level": "priority",
                },
            ),
            CMD_TOPIC,
            id="stream.start",
        ),
    ],
)
def test_6_valid_schemas(
    verifier: Verifier, signer: Signer, doc: dict[str, Any], topic: str
) -> None:
    accepted(verifier.verify(topic, signer.payload(doc)))


# --------------------------------------------------------------------------- 7. wrong_target


@pytest.mark.parametrize(
    ("target", "doc_type", "topic"),
    [
        pytest.param(
            "dev:q10-p12-bang-02", "ping", TOPICS.dev("q10-p12-bang-02", "cmd"), id="other-device"
        ),
        pytest.param("grp:q11", "ping", TOPICS.grp("q11", "cmd"), id="group-not-mine"),
        pytest.param(f"dev:{DEVICE}", "ping", GROUP_CMD, id="mine-on-group-topic"),
        pytest.param("grp:q10", "ping", CMD_TOPIC, id="group-on-device-topic"),
        pytest.param("grp:q10", "ping", TOPICS.grp("q10-p12", "cmd"), id="other-group-topic"),
        pytest.param(f"dev:{DEVICE}", "program", CMD_TOPIC, id="program-on-cmd-topic"),
        pytest.param(f"dev:{DEVICE}", "ping", PROGRAM_TOPIC, id="command-on-program-topic"),
        pytest.param(f"dev:{DEVICE}", "ping", f"other/v1/dev/{DEVICE}/cmd", id="other-prefix"),
        pytest.param(f"dev:{DEVICE}", "ping", f"ttcs/v1/dev/{DEVICE}/cmd/x", id="deeper-topic"),
    ],
)
def test_7_wrong_target(
    verifier: Verifier, signer: Signer, target: str, doc_type: str, topic: str
) -> None:
    body = program_body() if doc_type == "program" else {}
    rej = rejected(
        verifier.verify(topic, signer.payload(document(doc_type, body, target=target))),
        "wrong_target",
    )
    assert rej.doc_id == "01JDX3M7K2Q8"


@pytest.mark.parametrize(
    ("target", "doc_type", "topic"),
    [
        (f"dev:{DEVICE}", "ping", CMD_TOPIC),
        ("grp:q10", "ping", GROUP_CMD),
        ("grp:q10-p12", "ping", TOPICS.grp("q10-p12", "cmd")),
        (f"dev:{DEVICE}", "program", PROGRAM_TOPIC),
        ("grp:q10-p12", "program", GROUP_PROGRAM),
    ],
)
def test_7_right_target(
    verifier: Verifier, signer: Signer, target: str, doc_type: str, topic: str
) -> None:
    body = program_body() if doc_type == "program" else {}
    accepted(verifier.verify(topic, signer.payload(document(doc_type, body, target=target))))


# --------------------------------------------------------------------------- 8. from_future


@pytest.mark.parametrize(
    ("ahead_s", "code"),
    [(299, "accepted"), (300, "accepted"), (301, "from_future"), (86400, "from_future")],
)
def test_8_from_future(verifier: Verifier, signer: Signer, ahead_s: int, code: str) -> None:
    doc = document(issued_at=NOW + timedelta(seconds=ahead_s))
    assert reason(verifier.verify(CMD_TOPIC, signer.payload(doc))) == code


def test_8_uses_the_clock_at_verification_time(
    verifier: Verifier, signer: Signer, clock: FakeClock
) -> None:
    payload = signer.payload(document(issued_at=NOW + timedelta(seconds=400)))
    rejected(verifier.verify(CMD_TOPIC, payload), "from_future")
    clock.advance(100)
    accepted(verifier.verify(CMD_TOPIC, payload))


# --------------------------------------------------------------------------- 9. expired


@pytest.mark.parametrize(
    ("ttl_s", "code"), [(-3600, "expired"), (0, "expired"), (1, "accepted"), (3600, "accepted")]
)
def test_9_expired(verifier: Verifier, signer: Signer, ttl_s: int, code: str) -> None:
    doc = document(ttl_s=ttl_s)
    assert reason(verifier.verify(CMD_TOPIC, signer.payload(doc))) == code


def test_9_expired_program(verifier: Verifier, signer: Signer) -> None:
    doc = {**document("program", program_body()), "expires_at": rfc3339(NOW)}
    rejected(verifier.verify(PROGRAM_TOPIC, signer.payload(doc)), "expired")


def test_9_a_replay_after_expiry(verifier: Verifier, signer: Signer, clock: FakeClock) -> None:
    payload = signer.payload(document(ttl_s=60))
    accepted(verifier.verify(CMD_TOPIC, payload))
    clock.advance(60)
    rejected(verifier.verify(CMD_TOPIC, payload), "expired")


# --------------------------------------------------------------------------- 10. duplicate


def test_10_duplicate(verifier: Verifier, signer: Signer, history: MemoryHistory) -> None:
    history.seen_ids.add("01JDX3M7K2Q8")
    rej = rejected(verifier.verify(CMD_TOPIC, signer.payload(document())), "duplicate")
    assert rej.doc_id == "01JDX3M7K2Q8"
    accepted(verifier.verify(CMD_TOPIC, signer.payload(document(doc_id="01JDX3M7K2Q9"))))


# --------------------------------------------------------------------------- 11. stale


@pytest.mark.parametrize(("version", "code"), [(4, "stale"), (5, "stale"), (6, "accepted")])
def test_11_stale(
    verifier: Verifier, signer: Signer, history: MemoryHistory, version: int, code: str
) -> None:
    history.versions[PROGRAM_TOPIC] = 5
    doc = document("program", program_body(version))
    result = verifier.verify(PROGRAM_TOPIC, signer.payload(doc))
    assert reason(result) == code
    if code == "accepted":
        body = accepted(result).envelope.body
        assert isinstance(body, ProgramBody) and body.version == 6


def test_11_versions_are_per_topic(
    verifier: Verifier, signer: Signer, history: MemoryHistory
) -> None:
    history.versions[PROGRAM_TOPIC] = 50
    doc = document("program", program_body(3), target="grp:q10-p12")
    accepted(verifier.verify(GROUP_PROGRAM, signer.payload(doc)))


def test_11_commands_have_no_version(
    verifier: Verifier, signer: Signer, history: MemoryHistory
) -> None:
    history.versions[CMD_TOPIC] = 50
    accepted(verifier.verify(CMD_TOPIC, signer.payload(document())))


# --------------------------------------------------------------------------- order


def _past_and_future() -> dict[str, str]:
    return {
        "issued_at": rfc3339(NOW + timedelta(hours=1)),
        "expires_at": rfc3339(NOW - timedelta(hours=1)),
    }


def _order_cases(signer: Signer) -> list[tuple[str, str, bytes]]:
    """(expected reason, topic, payload): each payload fails that check and later ones."""
    stranger = Signer(kid="nobody", seed=7)
    everything_wrong = {
        **document("volume.set", {"percent": 5.5}, target="grp:q99"),
        **_past_and_future(),
    }
    return [
        ("too_large", CMD_TOPIC, b"\xff" * 262145),
        ("too_large", CMD_TOPIC, b"[" * 262145),
        ("malformed", CMD_TOPIC, b'["v", 2]'),
        ("unsupported_version", CMD_TOPIC, encode({**stranger.sign(everything_wrong), "v": 2})),
        ("unknown_key", CMD_TOPIC, stranger.payload(everything_wrong)),
        ("bad_signature", CMD_TOPIC, encode({**signer.sign(everything_wrong), "sig": "A" * 86})),
        ("invalid", CMD_TOPIC, signer.payload(everything_wrong)),
        (
            "wrong_target",
            CMD_TOPIC,
            signer.payload({**document(target="grp:q99"), **_past_and_future()}),
        ),
        (
            "wrong_target",
            PROGRAM_TOPIC,
            signer.payload({**document(doc_id="seen-before-01"), **_past_and_future()}),
        ),
        (
            "from_future",
            CMD_TOPIC,
            signer.payload({**document(doc_id="seen-before-01"), **_past_and_future()}),
        ),
        ("expired", CMD_TOPIC, signer.payload(document(doc_id="seen-before-01", ttl_s=-1))),
        (
            "duplicate",
            PROGRAM_TOPIC,
            signer.payload(document("program", program_body(1), doc_id="seen-before-01")),
        ),
    ]


def test_order_first_failure_decides(
    verifier: Verifier, signer: Signer, history: MemoryHistory
) -> None:
    history.seen_ids.add("seen-before-01")
    history.versions[PROGRAM_TOPIC] = 9  # so the duplicate program is also stale
    for code, topic, payload in _order_cases(signer):
        assert reason(verifier.verify(topic, payload)) == code, code


def test_rejection_details_quoting_input_are_bounded(verifier: Verifier) -> None:
    result = verifier.verify(CMD_TOPIC, json.dumps({"v": "x" * 5000}).encode())
    assert isinstance(result, Rejection)
    assert result.reason == "unsupported_version"
    assert len(result.detail) <= 201
