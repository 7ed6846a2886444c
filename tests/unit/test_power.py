"""Power hooks run a configured argv (never a shell), report failures and apply the latest state."""

from __future__ import annotations

import time
from pathlib import Path

from player.power import PowerHook
from tests.helpers import wait_for


def test_the_hook_runs_the_argv_for_each_change(tmp_path: Path) -> None:
    reports: list[str] = []
    hook = PowerHook(
        "screen",
        ["touch", str(tmp_path / "on")],
        ["touch", str(tmp_path / "off")],
        5,
        reports.append,
    )
    try:
        hook.set(False)
        wait_for(lambda: (tmp_path / "off").exists(), 5, "the off hook")
        hook.set(True)
        wait_for(lambda: (tmp_path / "on").exists(), 5, "the on hook")
        wait_for(lambda: hook.applied is True, 5, "the state applied")
    finally:
        hook.close()
    assert reports == []


def test_shell_syntax_is_not_interpreted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    reports: list[str] = []
    # With a shell this would create the marker; as an argv, echo just prints its argument.
    hook = PowerHook("screen", None, ["echo", f"off; touch {marker}"], 5, reports.append)
    try:
        hook.set(False)
        wait_for(lambda: hook.applied is False, 5, "the hook to run")
    finally:
        hook.close()
    assert not marker.exists()


def test_a_failing_or_hanging_hook_is_reported_and_the_next_change_tries_again(
    tmp_path: Path,
) -> None:
    reports: list[str] = []
    hook = PowerHook("screen", ["sleep", "5"], ["false"], 1, reports.append)
    try:
        hook.set(False)
        wait_for(lambda: len(reports) == 1, 5, "the failure report")
        assert "screen power off: false exited 1" in reports[0]
        assert hook.applied is None
        hook.set(True)
        wait_for(lambda: len(reports) == 2, 5, "the timeout report")
        assert "screen power on: sleep failed" in reports[1] and "timed out" in reports[1]
    finally:
        started = time.monotonic()
        hook.close()
        assert time.monotonic() - started < 3


def test_a_missing_program_is_reported() -> None:
    reports: list[str] = []
    hook = PowerHook("screen", ["/nonexistent/cec-ctl"], None, 1, reports.append)
    try:
        hook.set(True)
        wait_for(lambda: reports, 5, "the report")
    finally:
        hook.close()
    assert "No such file" in reports[0]
