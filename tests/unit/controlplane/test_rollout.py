"""Staged rollout against an in-memory fleet whose devices answer as real ones do: ``accepted``,
then ``done`` with a new birth message, or ``failed``/``rolled_back``, or nothing at all."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from controlplane.rollout import (
    DeviceRun,
    ReleaseRef,
    canary_share,
    duration_s,
    percent,
    plan_waves,
    rollout,
)

RELEASE = ReleaseRef("1.1.0", "https://releases.example/1.1.0.release", "a" * 64, 1000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class MemoryFleet:
    """Devices that answer an ``agent.update`` by ``behaviour``: ok, rolled_back, silent."""

    def __init__(self, behaviour: dict[str, str], clock: FakeClock) -> None:
        self.behaviour = behaviour
        self.clock = clock
        self.versions = dict.fromkeys(behaviour, "1.0.0")
        self.inbox: deque[tuple[str, dict[str, Any]]] = deque()
        self.sent: list[str] = []

    def send_update(self, device: str, body: dict[str, Any]) -> str:
        cmd = f"cmd-{len(self.sent):04d}"
        self.sent.append(device)
        self.inbox.append((device, {"cmd": cmd, "status": "accepted"}))
        how = self.behaviour[device]
        if how == "ok":
            self.versions[device] = body["version"]
            self.inbox.append((device, {"cmd": cmd, "status": "done"}))
        elif how == "rolled_back":
            ack = {"cmd": cmd, "status": "failed", "reason": "rolled_back", "detail": "boom"}
            self.inbox.append((device, ack))
        return cmd

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        out = list(self.inbox)
        self.inbox.clear()
        if not out:
            self.clock.now += timeout
        return out

    def version(self, device: str) -> str | None:
        return self.versions[device]


def fleet_of(n: int, bad: dict[int, str] | None = None) -> tuple[MemoryFleet, list[str]]:
    names = [f"q10-p{i:02d}-bang-01" for i in range(n)]
    behaviour = {name: (bad or {}).get(i, "ok") for i, name in enumerate(names)}
    return MemoryFleet(behaviour, FakeClock()), names


def test_waves_grow_from_the_canary() -> None:
    devices = [f"d{i:02d}" for i in range(20)]
    waves = plan_waves(devices, 10)
    assert [len(w) for w in waves] == [2, 4, 8, 6]
    assert sorted(d for w in waves for d in w) == sorted(devices)
    assert [len(w) for w in plan_waves(devices[:3], 10)] == [1, 2]
    assert plan_waves(devices[:3], 100) == [devices[:3]]
    with pytest.raises(ValueError):
        plan_waves(devices, 0)


def test_all_healthy_all_done() -> None:
    fleet, names = fleet_of(10)
    seen: list[str] = []

    def progress(run: DeviceRun) -> None:
        seen.append(run.state)

    report = rollout(fleet, names, RELEASE, canary_pct=10, clock=fleet.clock, progress=progress)
    assert report.stopped is None
    assert [r.state for r in report.runs] == ["done"] * 10
    assert {r.version for r in report.runs} == {"1.1.0"}
    assert report.waves == 4  # 1, 2, 4, 3
    assert fleet.sent[0] == names[0]  # the canary went first
    assert "10 done, 0 failed" in report.table()
    assert seen[:4] == ["sent", "accepted", "confirming", "done"]  # the canary, step by step


def test_a_failed_canary_stops_everything() -> None:
    fleet, names = fleet_of(10, {0: "rolled_back"})
    report = rollout(fleet, names, RELEASE, canary_pct=10, clock=fleet.clock)
    assert fleet.sent == [names[0]]
    assert report.runs[0].state == "failed" and report.runs[0].reason == "rolled_back"
    assert {r.state for r in report.runs[1:]} == {"skipped"}
    assert report.stopped == "1 of 1 failed after the canary"


def test_stops_when_the_failure_rate_passes_the_threshold() -> None:
    # Canary d00 fine; wave 1 (d01, d02) has one failure: 1 of 3 > 20 %.
    fleet, names = fleet_of(10, {2: "rolled_back"})
    report = rollout(fleet, names, RELEASE, canary_pct=10, max_failure_pct=20, clock=fleet.clock)
    assert fleet.sent == names[:3]
    assert report.stopped == "1 of 3 failed after wave 1"
    assert [r.state for r in report.runs[3:]] == ["skipped"] * 7


def test_below_the_threshold_it_goes_on() -> None:
    fleet, names = fleet_of(10, {9: "rolled_back"})
    report = rollout(fleet, names, RELEASE, canary_pct=10, max_failure_pct=20, clock=fleet.clock)
    assert report.stopped is None
    assert report.count("done") == 9 and report.count("failed") == 1


def test_a_silent_device_times_out() -> None:
    fleet, names = fleet_of(3, {0: "silent"})
    report = rollout(fleet, names, RELEASE, canary_pct=33, wait_healthy_s=600, clock=fleet.clock)
    assert report.runs[0].state == "timeout"
    assert fleet.clock.now >= 600
    assert report.stopped is not None and report.count("skipped") == 2


def test_command_line_shares_and_durations() -> None:
    assert (percent("10%"), percent("100"), percent("0%")) == (10, 100, 0)
    assert (duration_s("90"), duration_s("90s"), duration_s("10m"), duration_s("1h")) == (
        90, 90, 600, 3600,
    )  # fmt: skip
    with pytest.raises(ValueError):
        percent("150%")
    with pytest.raises(ValueError):
        canary_share("0%")
    with pytest.raises(ValueError):
        duration_s("ten minutes")
