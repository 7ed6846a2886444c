"""The compressed week's plan: its mix and the play log it expects, from the plan alone."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from soak_week_plan import LOCAL, MARGIN, make_plan, screen_expected

START = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)  # Monday 12:00 local


def local(at: datetime) -> str:
    return (at + LOCAL).strftime("%a %H:%M")


def test_a_day_and_a_half_holds_each_kind_at_its_local_time() -> None:
    plan = make_plan(START, START + timedelta(hours=30), play_nows=300)
    kinds = Counter(e.kind for e in plan.events)
    # Mon 14:00, 20:00, Tue 09:30, 14:00; the end is Tue 18:00.
    assert kinds["emergency.start"] == kinds["emergency.stop"] == 4
    assert [local(e.at) for e in plan.events if e.kind == "power.off"] == [
        "Mon 12:30",
        "Tue 12:30",
    ]
    assert [local(e.at) for e in plan.events if e.kind == "program"] == ["Tue 05:00"]
    assert 0 < kinds["play.now"] < 300
    go_live = [e for e in plan.events if e.play_at]
    assert go_live and all(e.play_at == e.at + timedelta(seconds=30) for e in go_live)


def test_no_play_now_in_a_quiet_window_and_each_expected_once() -> None:
    plan = make_plan(START, START + timedelta(hours=30), play_nows=300)
    play_nows = [e for e in plan.events if e.kind == "play.now"]
    for e in play_nows:
        assert not any(a <= e.at <= b for a, b in plan.quiet), local(e.at)
        hhmm = (e.at + LOCAL).strftime("%H:%M")
        assert "06:00" <= hhmm < "22:00"
    expected = plan.expected(START, START + timedelta(hours=30))
    assert all(expected[e.ident] == 1 for e in play_nows)
    assert expected["sch"] == 3  # Mon 17:00, Tue 07:00 and 17:00 (the end: Tue 18:00)
    assert sum(1 for k in expected if k.startswith("em-")) == 4


def test_an_emergency_whose_stop_falls_after_the_end_is_left_out() -> None:
    plan = make_plan(START, START + timedelta(hours=2, minutes=5), play_nows=10)  # to 14:05
    assert not [e for e in plan.events if e.kind.startswith("emergency")]


def test_the_screen_expected_on_off_and_unknown_near_a_change() -> None:
    plan = make_plan(START, START + timedelta(hours=30), play_nows=0)
    at = START  # Mon 12:00
    assert screen_expected(at, plan) is True
    assert screen_expected(at + timedelta(minutes=45), plan) is False  # 12:45, forced off
    assert screen_expected(at + timedelta(minutes=30), plan) is None  # 12:30, the change
    assert screen_expected(at + timedelta(hours=11), plan) is False  # 23:00, screen hours
    assert screen_expected(at + timedelta(hours=8, minutes=5), plan) is True  # an emergency
    assert screen_expected(at + timedelta(hours=8) - MARGIN / 2, plan) is None
