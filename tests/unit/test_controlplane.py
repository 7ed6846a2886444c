"""The control plane refuses to sign what every device would reject."""

from __future__ import annotations

import json

import pytest

from controlplane.cli import _parser, main
from controlplane.errors import ControlError
from controlplane.follow import SyncFollow
from controlplane.keys import SigningKey, make_document
from protocol.signing import public_key_from_b64, signature_valid


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


def test_the_synchronized_call_table_says_who_started_in_sync_and_why_not() -> None:
    follow = SyncFollow("call-0001", "grp:q10-p12", {"loa-01": "done", "loa-02": "done"})

    def playlog(device: str, **entry: object) -> tuple[str, bytes]:
        doc = {"ref": "call-0001", "channel": "speaker", **entry}
        return f"ttcs/v1/dev/{device}/playlog", json.dumps({"entries": [doc]}).encode()

    follow.take(*playlog("loa-01", outcome="completed", start_error_ms=1))
    follow.take(
        *playlog("loa-02", outcome="skipped", reason="late_for_play_at", start_error_ms=2300)
    )
    follow.take(*playlog("loa-01", outcome="completed", start_error_ms=1, attempt=2))  # a replay
    state = {"groups": ["q10-p12"], "online": True}
    follow.take("ttcs/v1/dev/loa-03/state", json.dumps(state).encode())
    status = {"now": {"speaker": "b", "speaker_ref": "call-0001", "start_error_ms": -3}}
    follow.take("ttcs/v1/dev/loa-04/status", json.dumps(status).encode())
    follow.take("ttcs/v1/dev/loa-05/state", json.dumps({"groups": ["q10"]}).encode())
    assert not follow.complete()  # loa-03 has not reported
    lines, in_sync = follow.table()
    assert not in_sync
    assert [line.split() for line in lines[1:]] == [
        ["loa-01", "in", "sync", "+1", "ms", "completed"],
        ["loa-02", "not", "played", "late_for_play_at", "(+2300", "ms)"],
        ["loa-03", "no", "report", "no", "ack"],
        ["loa-04", "in", "sync", "-3", "ms", "still", "playing"],
    ]


def test_the_synchronized_call_table_is_in_sync_when_every_device_was() -> None:
    follow = SyncFollow("call-0001", "dev:loa-01", {"loa-01": "done"})
    entry = {"ref": "call-0001", "channel": "speaker", "outcome": "completed", "start_error_ms": 0}
    follow.take("ttcs/v1/dev/loa-01/playlog", json.dumps({"entries": [entry]}).encode())
    assert follow.complete()
    assert follow.table()[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "grp:q10", "ping"],
        ["send", "ping", "--to", "grp:q10"],
        ["send", "--to", "grp:q10", "ping"],
    ],
)
def test_send_takes_its_target_before_the_type_or_as_to(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert (args.to or args.target, args.type) == ("grp:q10", "ping")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [(["send", "ping"], "no target"), (["send", "grp:a", "ping", "--to", "grp:b"], "two targets")],
)
def test_send_without_one_target_is_refused(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err
