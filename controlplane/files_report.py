"""Proof-of-play reports: collected playlogs → plays per ward, device, bulletin and local day.

``ttcs-control collect`` appends one JSON line per playlog message it receives::

    {"device": "q10-p12-bang-01", "received_at": "2026-11-26T06:01:00Z", "ward": "q10-p12",
     "playlog": {"v": 1, "device": "q10-p12-bang-01", "entries": [...]}}

and ``ttcs-control report`` turns such files into a CSV. Everything here is a pure function of
its inputs; the files and the broker are ``controlplane.playlog_files``'s business.

The broker delivers at least once, so the same entry may be collected twice (a lost PUBACK, a
collector stopped before it acknowledged): entries count once per id.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any, TextIO

from pydantic import ValidationError

from protocol import PlaylogEntry, format_time, parse_time

COLUMNS = (
    "ward",
    "device",
    "bulletin",
    "channel",
    "day",
    "plays",
    "completed",
    "interrupted",
    "failed",
    "seconds",
    "replayed",
    "skipped",
    "skip_reasons",
)


def ward_of(state: Mapping[str, Any]) -> str | None:
    """The ward of a device: the first group of its ``state`` message, if it names one.

    The last will (``{"online": false}``) names no groups: it tells nothing about the ward.
    """
    groups = state.get("groups")
    if isinstance(groups, list) and groups and isinstance(groups[0], str) and groups[0]:
        return groups[0]
    return None


def collected_line(
    device: str, received_at: datetime, ward: str | None, playlog: Mapping[str, Any]
) -> str:
    """One line of a collected file (without its newline)."""
    record = {
        "device": device,
        "received_at": format_time(received_at),
        "ward": ward,
        "playlog": playlog,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _record(line: str) -> dict[str, Any] | None:
    """A collected line as a dict with a device and a playlog, or None when it is not one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("device"), str)
        or not isinstance(record.get("playlog"), dict)
        or not isinstance(record["playlog"].get("entries"), list)
    ):
        return None
    return record


def wards_from_lines(lines: Iterable[str]) -> dict[str, str]:
    """The last ward known for each device in collected lines."""
    wards: dict[str, str] = {}
    for line in lines:
        record = _record(line)
        if record is not None and isinstance(record.get("ward"), str) and record["ward"]:
            wards[record["device"]] = record["ward"]
    return wards


@dataclass(frozen=True)
class Play:
    """One playlog entry, counted once, with the ward and device it came from."""

    ward: str  # "" when no state message of the device ever named its groups
    device: str
    entry: PlaylogEntry


@dataclass
class Reading:
    """What ``read_collected`` found."""

    plays: list[Play] = field(default_factory=list)
    duplicates: int = 0  # entries seen again (same id) and not counted
    bad_lines: int = 0  # lines that are not a collected playlog (a torn last line, say)
    bad_entries: int = 0  # entries that do not match the protocol


def read_collected(lines: Iterable[str]) -> Reading:
    """Read collected lines (of one or more files, in order) into de-duplicated plays.

    The first copy of an entry counts. A line collected before the device's state was known
    has no ward; it takes the last ward known for that device from any line read.
    """
    reading = Reading()
    seen: set[str] = set()
    found: list[tuple[str | None, str, PlaylogEntry]] = []
    wards: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        record = _record(line)
        if record is None:
            reading.bad_lines += 1
            continue
        device: str = record["device"]
        ward = record.get("ward") if isinstance(record.get("ward"), str) else None
        if ward:
            wards[device] = ward
        for raw in record["playlog"]["entries"]:
            try:
                entry = PlaylogEntry.model_validate(raw)
            except ValidationError:
                reading.bad_entries += 1
                continue
            if entry.id in seen:
                reading.duplicates += 1
                continue
            seen.add(entry.id)
            found.append((ward or None, device, entry))
    reading.plays = [Play(ward or wards.get(device, ""), device, e) for ward, device, e in found]
    return reading


@dataclass(frozen=True)
class Row:
    """One line of the report: a bulletin on one channel of a device on one local day."""

    ward: str
    device: str
    bulletin: str
    channel: str
    day: date
    plays: int
    completed: int
    interrupted: int
    failed: int
    seconds: int
    replayed: int = 0  # of the interrupted, those played again
    skipped: int = 0
    skip_reasons: tuple[tuple[str, int], ...] = ()  # (reason, count), by reason

    def cells(self) -> list[str]:
        return [
            self.ward,
            self.device,
            self.bulletin,
            self.channel,
            self.day.isoformat(),
            str(self.plays),
            str(self.completed),
            str(self.interrupted),
            str(self.failed),
            str(self.seconds),
            str(self.replayed),
            str(self.skipped),
            ";".join(f"{reason}={count}" for reason, count in self.skip_reasons),
        ]


def aggregate(plays: Iterable[Play], tz: tzinfo) -> list[Row]:
    """Count plays per (ward, device, bulletin, channel, local day of ``started_at`` in ``tz``).

    A screen showing and a loudspeaker announcement are different proofs: never added up.

    ``plays`` counts what played (``completed``, ``interrupted``, ``failed``); ``replayed`` the
    interrupted ones that were played again; ``skipped`` what was accepted but never played,
    with its reasons; ``seconds`` is the total of ``ended_at - started_at`` (never negative),
    rounded to whole seconds.
    """
    totals: dict[tuple[str, str, str, str, date], dict[str, float]] = {}
    reasons: dict[tuple[str, str, str, str, date], dict[str, int]] = {}
    for play in plays:
        started = parse_time(play.entry.started_at)
        ended = parse_time(play.entry.ended_at)
        entry = play.entry
        key = (play.ward, play.device, entry.bulletin, entry.channel, started.astimezone(tz).date())
        total = totals.setdefault(key, dict.fromkeys(_COUNTS, 0.0))
        total[entry.outcome] += 1
        if entry.outcome == "skipped":
            why = reasons.setdefault(key, {})
            why[entry.reason or "unknown"] = why.get(entry.reason or "unknown", 0) + 1
            continue
        total["plays"] += 1
        total["replayed"] += 1 if entry.replayed else 0
        total["seconds"] += max(0.0, (ended - started).total_seconds())
    return [
        Row(
            ward,
            device,
            bulletin,
            channel,
            day,
            int(t["plays"]),
            int(t["completed"]),
            int(t["interrupted"]),
            int(t["failed"]),
            round(t["seconds"]),
            int(t["replayed"]),
            int(t["skipped"]),
            tuple(sorted(reasons.get((ward, device, bulletin, channel, day), {}).items())),
        )
        for (ward, device, bulletin, channel, day), t in sorted(totals.items())
    ]


_COUNTS = ("plays", "completed", "interrupted", "replayed", "failed", "skipped", "seconds")


def write_csv(rows: Iterable[Row], out: TextIO) -> None:
    """The report as CSV with a header line (``COLUMNS``)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_inert(cell) for cell in row.cells()])


def _inert(cell: str) -> str:
    """Bulletin ids come from devices: never let a spreadsheet read one as a formula."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell
