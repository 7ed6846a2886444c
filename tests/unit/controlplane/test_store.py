"""controlplane.store on SQLite and on a real PostgreSQL: the same tests, both back ends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controlplane.db import DatabaseError, connect, redact
from controlplane.keys import SigningKey, make_document
from controlplane.store import Store
from tests.unit.controlplane.util import (
    DEV1,
    DEV2,
    entry,
    ingest_playlog,
    ingest_state,
    report,
)

KEY = SigningKey.generate("hcm-2026")


def test_entries_are_stored_once_per_id(store: Store) -> None:
    first = ingest_playlog(store, DEV1, entry("a"), entry("b"))
    assert (first.messages, first.entries, first.duplicates) == (1, 2, 0)
    again = ingest_playlog(store, DEV1, entry("b"), entry("c"))  # a redelivery, and more
    assert (again.entries, again.duplicates) == (1, 1)
    # The same id in one batch twice, and under another device: still once.
    both = store.ingest(
        [
            report(DEV1, "playlog", {"entries": [entry("d")]}),
            report(DEV2, "playlog", {"entries": [entry("d"), entry("a")]}),
        ]
    )
    assert (both.entries, both.duplicates) == (1, 2)
    assert store.playlog_ids() == ["a", "b", "c", "d"]


def test_ingest_is_committed_when_it_returns(store: Store, store_url: str) -> None:
    ingest_playlog(store, DEV1, entry("a"))
    # Another connection (another collector, the report) sees it at once.
    with Store.open(store_url) as other:
        assert other.playlog_ids() == ["a"]


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.db.transaction() as tx:
        tx.execute(
            "INSERT INTO devices (device, first_seen_ms, last_seen_ms) VALUES (?, ?, ?)",
            (DEV1, 1, 1),
        )
        raise RuntimeError("the collector died halfway")
    assert store.devices() == []


def test_every_entry_field_is_kept(store: Store) -> None:
    extra: dict[str, Any] = {
        "ref": "cmd-01",
        "start_error_ms": 12,
        "reason": "late",
        "replayed": False,
    }
    ingest_playlog(store, DEV1, entry("a", outcome="skipped", future_field={"n": 1}, **extra))
    with store.db.transaction() as tx:
        row = tx.one(
            "SELECT outcome, ref, start_error_ms, reason, replayed, raw FROM playlog WHERE id = ?",
            ("a",),
        )
    assert row is not None
    outcome, ref, start_error, reason, replayed, raw = row
    assert (outcome, ref, start_error, reason, bool(replayed)) == (
        "skipped",
        "cmd-01",
        12,
        "late",
        False,
    )
    assert replayed is not None
    assert json.loads(raw)["future_field"] == {"n": 1}


def test_the_ward_is_the_one_known_when_the_entry_arrived(store: Store) -> None:
    ingest_playlog(store, DEV1, entry("before"))  # no state yet: no ward
    ingest_state(store, DEV1, ["q10-p12", "q10"], received_ms=2_000)
    ingest_playlog(store, DEV1, entry("during"))
    ingest_state(store, DEV1, ["q10-p14", "q10"], received_ms=3_000)  # moved to another ward
    ingest_state(store, DEV1, None, received_ms=4_000)  # the last will names no groups
    ingest_playlog(store, DEV1, entry("after"))
    with store.db.transaction() as tx:
        wards: dict[str, str | None] = dict(tx.rows("SELECT id, ward FROM playlog"))
    assert wards == {"before": None, "during": "q10-p12", "after": "q10-p14"}
    (device,) = store.devices()
    assert (device.ward, device.online) == ("q10-p14", False)


def test_an_older_state_does_not_replace_a_newer_one(store: Store) -> None:
    # Two collectors: the later message was written first by the faster one.
    store.ingest([report(DEV1, "state", {"online": True, "groups": ["w2"]}, received_ms=2_000)])
    store.ingest([report(DEV1, "state", {"online": False}, received_ms=1_000)])
    store.ingest([report(DEV1, "status", {"volume": 2}, received_ms=2_000)])
    store.ingest([report(DEV1, "status", {"volume": 1}, received_ms=1_000)])
    fleet = store.fleet()
    assert fleet[DEV1]["state"]["online"] is True
    assert fleet[DEV1]["status"]["volume"] == 2
    (device,) = store.devices()
    assert (device.ward, device.first_seen_ms, device.last_seen_ms) == ("w2", 1_000, 2_000)


def test_the_latest_state_in_one_batch_wins(store: Store) -> None:
    store.ingest(
        [
            report(DEV1, "state", {"online": True, "groups": ["w1"]}, received_ms=1_000),
            report(DEV1, "state", {"online": False}, received_ms=1_001),
        ]
    )
    (device,) = store.devices()
    assert (device.ward, device.online) == ("w1", False)


def test_fleet_has_the_shape_of_the_retained_messages(store: Store) -> None:
    birth = {"v": 1, "online": True, "device": DEV1, "groups": ["q10-p12"], "agent_version": "0.1"}
    status = {"v": 1, "at": "2026-11-26T06:00:00Z", "uptime_s": 5, "volume": 70}
    store.ingest([report(DEV1, "state", birth), report(DEV1, "status", status)])
    ingest_playlog(store, DEV2, entry("a"))  # seen, but no state or status yet
    assert store.fleet() == {DEV1: {"state": birth, "status": status}, DEV2: {}}
    assert [(d.device, d.agent_version) for d in store.devices()] == [(DEV1, "0.1"), (DEV2, None)]


def test_acks_and_events_stored_once_per_payload(store: Store) -> None:
    ack = {"v": 1, "cmd": "01JDX3M7K2Q8", "status": "done", "at": "2026-11-26T06:00:01Z"}
    accepted = {**ack, "status": "accepted", "at": "2026-11-26T06:00:00Z"}
    event = {"v": 1, "at": "2026-11-26T06:00:02Z", "severity": "error", "code": "no_voice"}
    first = store.ingest([report(DEV1, "ack", accepted), report(DEV1, "ack", ack)])
    again = store.ingest([report(DEV1, "ack", ack, 9_000), report(DEV1, "event", event)])
    store.ingest([report(DEV1, "event", event, 9_000), report(DEV2, "ack", ack)])
    assert (first.acks, again.acks, again.events) == (2, 0, 1)
    assert [(a.device, a.status) for a in store.acks_for("01JDX3M7K2Q8")] == [
        (DEV1, "accepted"),
        (DEV1, "done"),
        (DEV2, "done"),
    ]
    assert [(e.device, e.code, e.severity) for e in store.events()] == [(DEV1, "no_voice", "error")]
    assert store.events(device=DEV2) == []
    assert store.events(since=datetime(2026, 11, 27, tzinfo=UTC)) == []


def test_commands_are_recorded_as_signed(store: Store) -> None:
    doc = make_document(KEY, "volume.set", "grp:q10-p12", {"percent": 40})
    assert store.record_command(doc, "ttcs/v1/grp/q10-p12/cmd") is True
    assert store.record_command(doc, "ttcs/v1/grp/q10-p12/cmd") is False
    with store.db.transaction() as tx:
        row = tx.one(
            "SELECT type, target, kid, body, document FROM commands WHERE id = ?", (doc["id"],)
        )
    assert row is not None
    assert row[:3] == ("volume.set", "grp:q10-p12", "hcm-2026")
    assert json.loads(row[3]) == {"percent": 40}
    assert json.loads(row[4]) == doc  # with its signature: it can be shown to be ours


# --------------------------------------------------------------------------- URLs


def test_database_urls(tmp_path: Path) -> None:
    for url, path in [
        (f"sqlite://{tmp_path}/a.db", tmp_path / "a.db"),
        (f"sqlite:{tmp_path}/b.db", tmp_path / "b.db"),
        (str(tmp_path / "sub" / "c.db"), tmp_path / "sub" / "c.db"),
    ]:
        db = connect(url)
        db.close()
        assert path.exists(), url
    with pytest.raises(ValueError, match="unknown database URL"):
        connect("mysql://root:secret@db/x")
    with pytest.raises(ValueError, match="sqlite"):
        connect("sqlite:")


def test_passwords_are_redacted() -> None:
    assert (
        redact("postgresql://ttcs:s3cret@db.q10:5432/ttcs")
        == "postgresql://ttcs:***@db.q10:5432/ttcs"
    )
    assert redact("postgresql://ttcs@db/ttcs") == "postgresql://ttcs@db/ttcs"


def test_an_unreachable_postgresql_is_a_database_error() -> None:
    with pytest.raises(
        DatabaseError, match=r"cannot connect to postgresql://u:\*\*\*@127.0.0.1:9/"
    ):
        connect("postgresql://u:pw@127.0.0.1:9/x?connect_timeout=2")
