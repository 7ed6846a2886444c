"""The alert ledger: recorded once, what each alert started and stopped, successors, pruning."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.cap import CapSettings, Ledger, LedgerError, Successor, plan_alert
from tests.unit.controlplane.conftest import KTTV, NOW, cap_file

ALERT = "KTTV-2026-1126-001"
UPDATE = "KTTV-2026-1126-002"


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    """The ledger in the control plane's store, once on SQLite and once on PostgreSQL."""
    with Ledger.open(store_url) as opened:
        yield opened


def test_a_recorded_alert_is_seen_with_what_it_started(
    ledger: Ledger, settings: CapSettings
) -> None:
    plan = plan_alert(cap_file("alert-flood.xml"), settings, ledger, NOW)
    assert not ledger.seen(KTTV, ALERT)
    ledger.record(plan, NOW)
    assert ledger.seen(KTTV, ALERT)
    started = ledger.started(KTTV, ALERT)
    assert [(s.id, s.type, s.target, s.expires_at) for s in started] == [
        (c.id, c.type, c.target, c.expires_at) for c in plan.commands
    ]
    assert all(s.stopped_by is None for s in started)
    assert ledger.successors(KTTV, ALERT) == []


def test_stops_mark_what_they_ended_and_the_update_is_the_successor(
    ledger: Ledger, settings: CapSettings
) -> None:
    ledger.record(plan_alert(cap_file("alert-flood.xml"), settings, ledger, NOW), NOW)
    update = plan_alert(cap_file("update-flood.xml"), settings, ledger, NOW)
    ledger.record(update, NOW)
    stops = {c.stops: c.id for c in update.commands if c.stops}
    assert {s.id: s.stopped_by for s in ledger.started(KTTV, ALERT)} == stops
    assert ledger.successors(KTTV, ALERT) == [Successor(UPDATE, "Update")]
    # The update's own list holds its starts, not its stops.
    assert [s.type for s in ledger.started(KTTV, UPDATE)] == ["emergency.start"] * 3


def test_a_plan_is_recorded_once(ledger: Ledger, settings: CapSettings) -> None:
    plan = plan_alert(cap_file("alert-flood.xml"), settings, ledger, NOW)
    ledger.record(plan, NOW)
    with pytest.raises(LedgerError, match="recorded already"):
        ledger.record(plan, NOW)
    assert len(ledger.started(KTTV, ALERT)) == 2  # nothing half-written


def test_a_refused_plan_is_not_recorded(ledger: Ledger, settings: CapSettings) -> None:
    refused = plan_alert(cap_file("bad-doctype.xml"), settings, ledger, NOW)
    with pytest.raises(LedgerError, match="refused"):
        ledger.record(refused, NOW)


def test_old_alerts_are_forgotten_a_day_after_they_expire(
    ledger: Ledger, settings: CapSettings
) -> None:
    ledger.record(plan_alert(cap_file("alert-flood.xml"), settings, ledger, NOW), NOW)
    # It expires at 12:00Z: kept until 12:00Z the next day.
    assert ledger.prune(NOW + timedelta(hours=29)) == 0
    assert ledger.seen(KTTV, ALERT)
    assert ledger.prune(NOW + timedelta(hours=31)) == 1
    assert not ledger.seen(KTTV, ALERT) and ledger.started(KTTV, ALERT) == []


def test_the_ledger_survives_a_reopen(tmp_path: Path, settings: CapSettings) -> None:
    path = tmp_path / "cap.sqlite"
    with Ledger.open(path) as ledger:
        ledger.record(plan_alert(cap_file("alert-flood.xml"), settings, ledger, NOW), NOW)
    with Ledger.open(path) as ledger:
        again = plan_alert(cap_file("alert-flood.xml"), settings, ledger, NOW)
        assert again.refusal is not None and again.refusal.code == "duplicate"
