"""``ttcs-control collect`` and ``report`` against a real Mosquitto: playlogs published while
the collector is away or running all reach the file, with each device's ward; acknowledged
messages are not collected again; the CSV counts each entry id once."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from controlplane.files_report import COLUMNS
from tests.helpers import (
    CONTROL_SCRIPT,
    PREFIX,
    ROOT,
    Broker,
    Listener,
    control_cli,
    occurrences,
    wait_for,
)

DEV1, DEV2, DEV3, DEV4 = "q10-p12-bang-01", "q10-p13-loa-01", "q10-p14-bang-01", "q10-p15-loa-01"


def _entry(
    entry_id: str, bulletin: str, start: str, end: str, outcome: str = "completed"
) -> dict[str, Any]:
    return {
        "id": entry_id,
        "bulletin": bulletin,
        "channel": "screen",
        "started_at": start,
        "ended_at": end,
        "outcome": outcome,
    }


def _publish_playlog(device: Listener, device_id: str, *entries: dict[str, Any]) -> None:
    doc = {"v": 1, "device": device_id, "entries": list(entries)}
    device.publish(f"{PREFIX}/dev/{device_id}/playlog", json.dumps(doc).encode())


def _publish_state(device: Listener, device_id: str, groups: list[str] | None) -> None:
    state: dict[str, Any] = {"v": 1, "online": groups is not None, "device": device_id}
    if groups is not None:
        state["groups"] = groups
    device.publish(f"{PREFIX}/dev/{device_id}/state", json.dumps(state).encode(), retain=True)


def _collect(broker: Broker, out: Path, duration: str) -> list[str]:
    return [
        sys.executable,
        str(CONTROL_SCRIPT),
        "collect",
        "--broker",
        broker.url,
        "--out",
        str(out),
        "--duration",
        duration,
    ]


E1 = _entry("q10-p12-bang-01-a1", "tb-01", "2026-11-26T01:00:00Z", "2026-11-26T01:00:15Z")
E2 = _entry(
    "q10-p12-bang-01-a2", "tb-01", "2026-11-26T01:01:00Z", "2026-11-26T01:01:05Z", "interrupted"
)
E3 = _entry("q10-p13-loa-01-b1", "tb-02", "2026-11-26T02:00:00Z", "2026-11-26T02:00:00Z", "failed")
# 23:30 UTC is 06:30 the next morning in Ho Chi Minh City.
E4 = _entry("q10-p12-bang-01-a3", "tb-01", "2026-11-26T23:30:00Z", "2026-11-26T23:30:30Z")
E5 = _entry("q10-p14-bang-01-c1", "tb-03", "2026-11-26T03:00:00Z", "2026-11-26T03:01:00Z")
E6 = _entry("q10-p15-loa-01-d1", "tb-03", "2026-11-26T04:00:00Z", "2026-11-26T04:00:20Z")


def test_collect_and_report(tmp_path: Path, broker: Broker) -> None:
    out = tmp_path / "collected" / "playlogs.jsonl"
    report_csv = tmp_path / "report.csv"
    with (
        Listener(broker, []) as device,
        Listener(broker, [f"{PREFIX}/dev/+/playlog"]) as witness,
    ):
        _publish_state(device, DEV1, ["q10-p12", "q10"])
        _publish_state(device, DEV2, ["q10-p13", "q10"])
        _publish_state(device, DEV4, None)  # only its last will: the ward is unknown

        # The first run makes the collector's persistent session: from now on the broker keeps
        # the playlogs for it.
        first = control_cli("collect", "--broker", broker.url, "--out", str(out), "--duration", "1")
        assert first.returncode == 0, first.stderr
        assert "collected 0 playlog message(s)" in first.stderr

        # Published while no collector runs; the first message twice (a redelivery).
        _publish_playlog(device, DEV1, E1, E2)
        _publish_playlog(device, DEV2, E3)
        _publish_playlog(device, DEV1, E1, E2)
        wait_for(lambda: len(witness.json_on("/playlog")) == 3, 10, "the broker to hold 3")

        second = subprocess.Popen(
            _collect(broker, out, "3"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: occurrences(out, E3["id"]) == 1, 15, "the kept messages on disk")
            # Published while it runs; DEV3's ward comes from a state message it sees live.
            _publish_playlog(device, DEV1, E4)
            _publish_state(device, DEV3, ["q10-p14", "q10"])
            _publish_playlog(device, DEV3, E5)
            _publish_playlog(device, DEV4, E6)
            _, stderr = second.communicate(timeout=30)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait(10)
        assert second.returncode == 0, stderr
        assert "collected 6 playlog message(s) with 8 entries from 4 device(s)" in stderr

    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [
        (r["device"], r["ward"], [e["id"] for e in r["playlog"]["entries"]]) for r in lines
    ] == [
        (DEV1, "q10-p12", [E1["id"], E2["id"]]),
        (DEV2, "q10-p13", [E3["id"]]),
        (DEV1, "q10-p12", [E1["id"], E2["id"]]),
        (DEV1, "q10-p12", [E4["id"]]),
        (DEV3, "q10-p14", [E5["id"]]),
        (DEV4, None, [E6["id"]]),
    ]
    assert all(r["received_at"].endswith("Z") for r in lines)

    # Everything was acknowledged once written: a third run finds nothing new.
    third = control_cli("collect", "--broker", broker.url, "--out", str(out), "--duration", "0.5")
    assert third.returncode == 0, third.stderr
    assert "collected 0 playlog message(s)" in third.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(lines)

    made = control_cli("report", str(out), "--out", str(report_csv))
    assert made.returncode == 0, made.stderr
    assert "6 plays in 5 rows (2 duplicate entries ignored)" in made.stderr
    with report_csv.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        list(COLUMNS),
        ["", DEV4, "tb-03", "screen", "2026-11-26", "1", "1", "0", "0", "20", "0", "0", ""],
        ["q10-p12", DEV1, "tb-01", "screen", "2026-11-26", "2", "1", "1", "0", "20", "0", "0", ""],
        ["q10-p12", DEV1, "tb-01", "screen", "2026-11-27", "1", "1", "0", "0", "30", "0", "0", ""],
        ["q10-p13", DEV2, "tb-02", "screen", "2026-11-26", "1", "0", "0", "1", "0", "0", "0", ""],
        ["q10-p14", DEV3, "tb-03", "screen", "2026-11-26", "1", "1", "0", "0", "60", "0", "0", ""],
    ]

    # Without --out the CSV goes to stdout; another time zone moves the morning play back.
    utc = control_cli("report", str(out), str(out), "--tz", "UTC")
    assert utc.returncode == 0, utc.stderr
    utc_rows = list(csv.reader(io.StringIO(utc.stdout)))
    assert [
        "q10-p12",
        DEV1,
        "tb-01",
        "screen",
        "2026-11-26",
        "3",
        "2",
        "1",
        "0",
        "50",
        "0",
        "0",
        "",
    ] in utc_rows
    assert "10 duplicate entries ignored" in utc.stderr  # the same file twice

    bad = control_cli("report", str(out), "--tz", "Mars/Olympus")
    assert bad.returncode == 2 and "unknown time zone" in bad.stderr
    missing = control_cli("report", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
