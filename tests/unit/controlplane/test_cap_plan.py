"""plan_alert: what is sent to whom for real CAP documents, chains included, and what is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane.cap import CapSettings, Ledger, Plan, SenderPolicy, plan_alert
from controlplane.cap.mapping import bulletin_id
from controlplane.keys import SigningKey, make_document
from protocol import Envelope
from tests.unit.controlplane.conftest import DATA, KTTV, NOW, Q10, cap_file, make_settings

ALERT_ID = "KTTV-2026-1126-001"


def plan(name: str | bytes, ledger: Ledger, settings: CapSettings, now: datetime = NOW) -> Plan:
    doc = cap_file(name) if isinstance(name, str) else name
    return plan_alert(doc, settings, ledger, now)


def sent(p: Plan) -> list[tuple[str, str]]:
    return [(c.type, c.target) for c in p.commands]


def send(p: Plan, ledger: Ledger, now: datetime = NOW) -> None:
    assert not p.refused, p.refusal
    ledger.record(p, now)


def test_an_alert_starts_an_emergency_in_each_of_its_groups(
    ledger: Ledger, settings: CapSettings
) -> None:
    p = plan("alert-flood.xml", ledger, settings)
    assert p.refusal is None
    assert sent(p) == [("emergency.start", "grp:q10-p12"), ("emergency.start", "grp:q1-ben-nghe")]
    start = p.commands[0]
    assert start.info == 1  # the vi-VN info
    assert start.expires_at == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert start.body["repeat_every_s"] == 600
    bulletin = start.body["bulletin"]
    assert bulletin["id"] == bulletin_id(KTTV, ALERT_ID, 1)
    assert bulletin["level"] == "emergency"
    assert bulletin["title"] == "Cảnh báo lũ quét tại Quận 10 và Quận 1"
    assert bulletin["screen"]["kind"] == "text" and bulletin["speaker"]["kind"] == "tts"
    assert p.commands[1].body["bulletin"] == bulletin  # one bulletin, two groups


def test_every_command_signs_into_an_envelope_devices_accept(
    ledger: Ledger, settings: CapSettings
) -> None:
    key = SigningKey.generate("hcm-2026")
    for name in ("alert-flood.xml", "alert-two-areas.xml", "alert-storm-priority.xml"):
        for cmd in plan(name, ledger, settings).commands:
            doc = make_document(
                key, cmd.type, cmd.target, cmd.body, ttl_s=cmd.ttl_s(NOW), now=NOW, doc_id=cmd.id
            )
            envelope = Envelope.model_validate(doc)
            assert envelope.id == cmd.id
            assert envelope.expires_at == "2026-11-26T12:00:00Z" or name != "alert-flood.xml"


def test_planning_twice_gives_the_same_ids(ledger: Ledger, settings: CapSettings) -> None:
    # A crash between sending and recording: sent again, the devices see duplicates (check 10).
    first = plan("alert-flood.xml", ledger, settings)
    again = plan("alert-flood.xml", ledger, settings, now=NOW + timedelta(minutes=3))
    assert [c.id for c in first.commands] == [c.id for c in again.commands]


def test_an_alert_is_acted_on_once(ledger: Ledger, settings: CapSettings) -> None:
    send(plan("alert-flood.xml", ledger, settings), ledger)
    again = plan("alert-flood.xml", ledger, settings, now=NOW + timedelta(minutes=1))
    assert again.commands == ()
    assert again.refusal is not None and again.refusal.code == "duplicate"


def test_alert_update_cancel(ledger: Ledger, settings: CapSettings) -> None:
    alert = plan("alert-flood.xml", ledger, settings)
    send(alert, ledger)
    later = NOW + timedelta(hours=1)
    update = plan("update-flood.xml", ledger, settings, now=later)
    # The new emergency first (no silent gap), then the old one stops (no second siren).
    assert sent(update) == [
        ("emergency.start", "grp:q10-p12"),
        ("emergency.start", "grp:q10-p13"),
        ("emergency.start", "grp:lab-drill"),
        ("emergency.stop", "grp:q10-p12"),
        ("emergency.stop", "grp:q1-ben-nghe"),
    ]
    stops = update.commands[3:]
    assert [s.body for s in stops] == [{"ref": c.id} for c in alert.commands]
    assert [s.stops for s in stops] == [c.id for c in alert.commands]
    assert stops[0].expires_at == alert.commands[0].expires_at  # not needed past its end
    assert update.commands[0].body["bulletin"]["title"] == "Lũ quét lan rộng: sơ tán khẩn cấp"
    assert update.commands[0].expires_at == datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    send(update, ledger, later)

    even_later = later + timedelta(hours=1)
    cancel = plan("cancel-flood.xml", ledger, settings, now=even_later)
    # Exactly the emergencies still in force: the update's (the alert's were stopped).
    assert sent(cancel) == [
        ("emergency.stop", "grp:q10-p12"),
        ("emergency.stop", "grp:q10-p13"),
        ("emergency.stop", "grp:lab-drill"),
    ]
    assert [c.stops for c in cancel.commands] == [c.id for c in update.commands[:3]]
    send(cancel, ledger, even_later)
    again = plan("cancel-flood.xml", ledger, settings, even_later)
    assert again.refusal is not None and again.refusal.code == "duplicate"


def test_a_cancel_stops_what_the_alert_started(ledger: Ledger, settings: CapSettings) -> None:
    alert = plan("alert-flood.xml", ledger, settings)
    send(alert, ledger)
    cancel = plan("cancel-flood.xml", ledger, settings)
    assert [c.body for c in cancel.commands] == [{"ref": c.id} for c in alert.commands]
    assert [c.target for c in cancel.commands] == [c.target for c in alert.commands]


def test_a_cancel_that_arrives_first_keeps_the_alert_from_starting(
    ledger: Ledger, settings: CapSettings
) -> None:
    cancel = plan("cancel-flood.xml", ledger, settings)
    assert cancel.refusal is None and cancel.commands == ()
    assert "nothing that it references is in force" in cancel.notes[0]
    send(cancel, ledger)
    late = plan("alert-flood.xml", ledger, settings)
    assert late.commands == ()
    assert late.refusal is not None and late.refusal.code == "superseded"
    assert "replaced by Cancel 'KTTV-2026-1126-003'" in late.refusal.message


def test_an_update_that_arrives_after_the_cancel_restarts_nothing(
    ledger: Ledger, settings: CapSettings
) -> None:
    send(plan("alert-flood.xml", ledger, settings), ledger)
    only_the_alert = cap_file("cancel-flood.xml").replace(
        b" canhbao@kttv.gov.vn,KTTV-2026-1126-002,2026-11-26T14:00:00+07:00", b""
    )
    send(plan(only_the_alert, ledger, settings), ledger)
    late = plan("update-flood.xml", ledger, settings)
    assert late.commands == ()
    assert late.refusal is not None and late.refusal.code == "superseded"
    assert "'KTTV-2026-1126-001', which it updates, was cancelled by" in late.refusal.message


def test_an_update_that_is_not_broadcast_still_stops_what_it_replaces(
    ledger: Ledger, settings: CapSettings
) -> None:
    send(plan("alert-flood.xml", ledger, settings), ledger)
    minor = cap_file("update-flood.xml").replace(b"<severity>Extreme", b"<severity>Minor")
    p = plan(minor, ledger, settings, now=NOW + timedelta(minutes=30))
    assert sent(p) == [("emergency.stop", "grp:q10-p12"), ("emergency.stop", "grp:q1-ben-nghe")]
    assert any("severity Minor" in note for note in p.notes)


def test_an_expired_update_stops_what_it_replaces(ledger: Ledger, settings: CapSettings) -> None:
    send(plan("alert-flood.xml", ledger, settings), ledger)
    short = cap_file("update-flood.xml").replace(
        b"<expires>2026-11-26T21:00:00+07:00", b"<expires>2026-11-26T13:10:00+07:00"
    )
    p = plan(short, ledger, settings, now=NOW + timedelta(minutes=15))
    assert [c.type for c in p.commands] == ["emergency.stop", "emergency.stop"]


def test_an_update_of_an_unknown_alert_is_a_new_alert(
    ledger: Ledger, settings: CapSettings
) -> None:
    p = plan("update-flood.xml", ledger, settings)
    assert [c.type for c in p.commands] == ["emergency.start"] * 3
    assert "references no alert acted on here" in p.notes[0]


def test_an_expired_alert_is_not_sent(ledger: Ledger, settings: CapSettings) -> None:
    p = plan("alert-flood.xml", ledger, settings, now=datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    assert p.commands == ()
    assert p.refusal is not None and p.refusal.code == "expired"
    assert "expired at 2026-11-26T12:00:00Z" in p.refusal.message


def test_without_expires_an_alert_lasts_the_default_from_sent(
    ledger: Ledger, settings: CapSettings
) -> None:
    doc = cap_file("alert-flood.xml").replace(b"<expires>2026-11-26T19:00:00+07:00</expires>", b"")
    p = plan(doc, ledger, make_settings(default_duration_s=7200))
    assert p.commands[0].expires_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_a_priority_alert_is_a_play_now(ledger: Ledger, settings: CapSettings) -> None:
    p = plan("alert-storm-priority.xml", ledger, make_settings(priority_repeat=2))
    assert sent(p) == [("play.now", "grp:hue-phu-hoi")]
    body = p.commands[0].body
    assert body["repeat"] == 2
    assert body["bulletin"]["level"] == "priority"
    assert body["bulletin"]["title"] == "Tropical storm No. 14 approaching Thua Thien Hue"
    assert p.commands[0].expires_at == datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


STORM_REF = b"<references>canhbao@kttv.gov.vn,NCHMF-STORM-2026-14,2026-11-26T08:00:00+07:00 "


def test_a_cancel_withdraws_the_play_now_of_a_priority_alert(
    ledger: Ledger, settings: CapSettings
) -> None:
    alert = plan("alert-storm-priority.xml", ledger, settings)
    send(alert, ledger)
    cancel_doc = cap_file("cancel-flood.xml").replace(
        b"<references>canhbao@kttv.gov.vn,KTTV-2026-1126-001,2026-11-26T13:00:00+07:00 ", STORM_REF
    )
    cancel = plan(cancel_doc, ledger, settings)
    assert cancel.refusal is None and sent(cancel) == [("play.stop", "grp:hue-phu-hoi")]
    [stop] = cancel.commands
    assert stop.body == {"ref": alert.commands[0].id} and stop.stops == alert.commands[0].id
    assert stop.expires_at == alert.commands[0].expires_at
    assert stop.describe().startswith(f"play.stop grp:hue-phu-hoi {stop.id} until ")
    key = SigningKey.generate("hcm-2026")
    doc = make_document(key, stop.type, stop.target, stop.body, ttl_s=stop.ttl_s(NOW), now=NOW)
    assert Envelope.model_validate(doc).body.ref == alert.commands[0].id
    send(cancel, ledger)
    again = cancel_doc.replace(b"KTTV-2026-1126-003", b"KTTV-2026-1126-004")
    assert plan(again, ledger, settings).commands == ()  # withdrawn once: not again


def test_an_update_of_a_priority_alert_withdraws_the_old_play_now(
    ledger: Ledger, settings: CapSettings
) -> None:
    alert = plan("alert-storm-priority.xml", ledger, settings)
    send(alert, ledger)
    update_doc = (
        cap_file("alert-storm-priority.xml")
        .replace(
            b"<identifier>NCHMF-STORM-2026-14</identifier>",
            b"<identifier>NCHMF-STORM-2026-15</identifier>",
        )
        .replace(b"<msgType>Alert</msgType>", b"<msgType>Update</msgType>")
        .replace(
            b"<scope>Public</scope>",
            b"<scope>Public</scope>" + STORM_REF.rstrip() + b"</references>",
        )
        .replace(b"approaching Thua Thien Hue", b"now over Thua Thien Hue")
    )
    update = plan(update_doc, ledger, settings, now=NOW + timedelta(hours=1))
    assert update.refusal is None
    # The new announcement first, then the old one withdrawn (wherever it waits or speaks).
    assert sent(update) == [("play.now", "grp:hue-phu-hoi"), ("play.stop", "grp:hue-phu-hoi")]
    assert update.commands[1].body == {"ref": alert.commands[0].id}
    assert update.commands[0].body["bulletin"]["title"].endswith("now over Thua Thien Hue")


def test_areas_with_different_texts_get_their_own_bulletins(
    ledger: Ledger, settings: CapSettings
) -> None:
    p = plan("alert-two-areas.xml", ledger, settings)
    # Ward 12 is in both infos: the emergency wins; Ward 13 gets the priority one.
    assert sent(p) == [("emergency.start", "grp:q10-p12"), ("play.now", "grp:q10-p13")]
    titles = [c.body["bulletin"]["title"] for c in p.commands]
    assert titles == ["Sơ tán khẩn cấp Phường 12", "Chuẩn bị sơ tán Phường 13"]
    assert [c.info for c in p.commands] == [0, 1]


def test_an_exercise_reaches_only_drill_groups(ledger: Ledger, settings: CapSettings) -> None:
    p = plan("alert-exercise.xml", ledger, settings)
    assert sent(p) == [("emergency.start", "grp:lab-drill")]
    assert p.commands[0].body["bulletin"]["title"] == "DIỄN TẬP – Cảnh báo lũ quét"


def test_a_test_alert_without_a_drill_group_is_refused(
    ledger: Ledger, settings: CapSettings
) -> None:
    doc = cap_file("alert-flood.xml").replace(b"<status>Actual", b"<status>Test")
    p = plan(doc, ledger, settings)
    assert p.commands == ()
    assert p.refusal is not None and p.refusal.code == "drill_only"


def test_a_test_cancel_never_stops_a_real_emergency(ledger: Ledger, settings: CapSettings) -> None:
    send(plan("update-flood.xml", ledger, settings), ledger)  # q10-p12, q10-p13, lab-drill
    doc = (
        cap_file("cancel-flood.xml")
        .replace(b"<status>Actual", b"<status>Test")
        .replace(b"canhbao@kttv.gov.vn,KTTV-2026-1126-001,2026-11-26T13:00:00+07:00 ", b"")
    )
    p = plan(doc, ledger, settings)
    assert sent(p) == [("emergency.stop", "grp:lab-drill")]
    assert sum("is not a drill group" in note for note in p.notes) == 2


def test_one_feed_cannot_cancel_another_feeds_alert(ledger: Ledger, settings: CapSettings) -> None:
    send(plan("alert-flood.xml", ledger, settings), ledger)
    doc = cap_file("cancel-flood.xml").replace(
        b"<sender>canhbao@kttv.gov.vn", f"<sender>{Q10}".encode()
    )
    p = plan(doc, ledger, settings)
    assert p.commands == ()
    assert "reference to canhbao@kttv.gov.vn's 'KTTV-2026-1126-001' ignored" in p.notes


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        (b"<status>Actual", b"<status>System", "not_actual"),
        (b"<status>Actual", b"<status>Draft", "not_actual"),
        (
            b"<scope>Public</scope>",
            b"<scope>Restricted</scope><restriction>PCTT</restriction>",
            "not_public",
        ),
        (
            b"<scope>Public</scope>",
            b"<scope>Private</scope><addresses>q10</addresses>",
            "not_public",
        ),
        (b"<msgType>Alert", b"<msgType>Ack", "not_actionable"),
        (b"<severity>Severe", b"<severity>Minor", "below_threshold"),
        (b"<severity>Severe", b"<severity>Unknown", "below_threshold"),
        (b"<value>27175</value>", b"<value>00000</value>", "not_our_area"),
    ],
)
def test_what_is_never_broadcast(
    old: bytes, new: bytes, code: str, ledger: Ledger, settings: CapSettings
) -> None:
    doc = cap_file("alert-flood.xml")
    if code == "not_our_area":
        doc = doc.replace(
            b"<circle>10.7769,106.7009 1.0</circle>", b"<circle>21.0,105.8 1.0</circle>"
        )
    p = plan(doc.replace(old, new), ledger, settings)
    assert p.commands == ()
    assert p.refusal is not None and p.refusal.code == code, p.refusal


@pytest.mark.parametrize("path", sorted(DATA.glob("bad-*.xml")), ids=lambda p: p.name)
def test_a_bad_document_plans_nothing(path: Path, ledger: Ledger, settings: CapSettings) -> None:
    p = plan(path.read_bytes().replace(b"@HOST@", b"127.0.0.1:9"), ledger, settings)
    assert p.refused and p.commands == () and p.alert is None
    assert not ledger.seen(KTTV, "BAD-LOL")


def test_an_unsigned_alert_from_a_sender_that_must_sign_plans_nothing(ledger: Ledger) -> None:
    from tests.unit.controlplane.test_cap_trust import make_signer

    cert = make_signer("canhbao.kttv.gov.vn").cert_pem
    settings = make_settings(
        senders=(SenderPolicy(sender=KTTV, must_sign=True, certificates=(cert,)),)
    )
    p = plan("alert-flood.xml", ledger, settings)
    assert p.commands == () and p.refusal is not None and p.refusal.code == "unsigned"


def test_the_plan_describes_itself(ledger: Ledger, settings: CapSettings) -> None:
    lines = plan("alert-flood.xml", ledger, settings).describe()
    assert lines[0] == "Alert KTTV-2026-1126-001 from canhbao@kttv.gov.vn (Actual)"
    assert lines[1].startswith("emergency.start grp:q10-p12 cap-")
    assert lines[1].endswith("until 2026-11-26T12:00:00Z: Cảnh báo lũ quét tại Quận 10 và Quận 1")
    refused = plan("alert-flood.xml", ledger, settings, now=NOW + timedelta(days=1)).describe()
    assert refused[1].startswith("refused: expired: ")
