"""Reports from the store, in SQL: plays per ward, device, bulletin, channel and local day (the
CSV of ``controlplane.files_report``, same columns and meaning), a per-ward daily summary (hours
on air, emergencies), outcomes by reason, and the commands sent with the devices' answers.

Local days: the time zone is a report parameter, and SQLite knows no time zones, so the days
are computed here — each local day of the period as ``[start_ms, end_ms)`` in UTC, exact across
DST changes — and passed to the SQL as a ``VALUES`` table that entries join on their start
time. Everything else (grouping, counting, summing, the union of intervals) is SQL that both
back ends run as written. A play counts on the local day on which it started.

Which entries count: ``plays`` and its columns count the outcomes that are plays
(``completed``, ``interrupted``, ``failed``); other outcomes (``skipped``, say) appear in
``outcomes`` only. A ward is the one stored with the entry when it was received, or else the
device's last known ward, or else empty.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, TextIO

from controlplane.db import Transaction
from controlplane.files_report import COLUMNS, Row, write_csv
from controlplane.store import Store

__all__ = [
    "COLUMNS",
    "COMMAND_COLUMNS",
    "OUTCOME_COLUMNS",
    "SUMMARY_COLUMNS",
    "CommandRow",
    "DaySummary",
    "OutcomeRow",
    "commands",
    "local_days",
    "outcomes",
    "plays",
    "summary",
    "write_commands_csv",
    "write_csv",
    "write_outcomes_csv",
    "write_summary_csv",
]

PLAY_OUTCOMES = ("completed", "interrupted", "failed")
# Outcomes during which the loudspeakers were sounding: on air.
ON_AIR_OUTCOMES = ("completed", "interrupted")
# Acks by which a device took an emergency in hand.
TAKEN = ("accepted", "done")

SUMMARY_COLUMNS = ("ward", "day", "speaker_plays", "hours_on_air", "emergencies")
OUTCOME_COLUMNS = ("ward", "device", "channel", "day", "outcome", "reason", "entries")
COMMAND_COLUMNS = (
    "day", "issued_at", "id", "type", "target", "devices", "done", "failed", "rejected", "pending",
)  # fmt: skip

_WARD = "COALESCE(p.ward, dv.ward, '')"


@dataclass(frozen=True)
class DaySummary:
    """One ward on one local day.

    ``hours_on_air``: how long at least one of the ward's loudspeakers was playing (the union
    of its speaker plays, so two clusters announcing the same bulletin at once count once);
    ``emergencies``: ``emergency.start`` commands issued that day which a device of the ward
    acknowledged as ``accepted`` or ``done``.
    """

    ward: str
    day: date
    speaker_plays: int
    on_air_ms: int
    emergencies: int

    def cells(self) -> list[str]:
        return [
            self.ward,
            self.day.isoformat(),
            str(self.speaker_plays),
            f"{self.on_air_ms / 3_600_000:.2f}",
            str(self.emergencies),
        ]


@dataclass(frozen=True)
class OutcomeRow:
    """How many entries of one device and channel had one outcome and reason on one day."""

    ward: str
    device: str
    channel: str
    day: date
    outcome: str
    reason: str  # "" when the entry gave none
    entries: int

    def cells(self) -> list[str]:
        return [
            self.ward,
            self.device,
            self.channel,
            self.day.isoformat(),
            self.outcome,
            self.reason,
            str(self.entries),
        ]


@dataclass(frozen=True)
class CommandRow:
    """One command the control plane sent (recorded before publishing) and how the devices
    answered: ``devices`` that acked it at all; ``pending``: of those, the ones whose last word
    was ``accepted`` (no outcome yet). Devices that never answered are not in the store: the
    fan-out view (``send``) names them while it waits."""

    day: date
    issued_at: str
    id: str
    type: str
    target: str
    devices: int
    done: int
    failed: int
    rejected: int

    @property
    def pending(self) -> int:
        return self.devices - self.done - self.failed - self.rejected

    def cells(self) -> list[str]:
        counts = (self.devices, self.done, self.failed, self.rejected, self.pending)
        head = [self.day.isoformat(), self.issued_at, self.id, self.type, self.target]
        return head + [str(n) for n in counts]


def local_days(tz: tzinfo, first: date, last: date) -> list[tuple[str, int, int]]:
    """Each local day from ``first`` to ``last`` as (ISO date, start ms, end ms) in UTC; each
    day ends where the next begins, so every instant falls in exactly one."""
    bounds = []
    day = first
    while day <= last + timedelta(days=1):
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        bounds.append((day, int(midnight.timestamp() * 1000)))
        day += timedelta(days=1)
    return [(d.isoformat(), lo, hi) for (d, lo), (_, hi) in itertools.pairwise(bounds)]


def plays(
    store: Store, tz: tzinfo, since: date | None = None, until: date | None = None
) -> list[Row]:
    """The rows of the plays CSV (``controlplane.files_report.COLUMNS``), sorted, for local days
    ``since``..``until`` (inclusive; default: every day with an entry)."""
    with store.db.transaction() as tx:
        days = _Days(tx, tz, since, until)
        if not days.bounds:
            return []
        marks = ", ".join("?" for _ in PLAY_OUTCOMES)
        rows = days.rows(
            f"""
            SELECT {_WARD}, p.device, p.bulletin, p.channel, days.day,
                SUM(CASE WHEN p.outcome IN ({marks}) THEN 1 ELSE 0 END),
                SUM(CASE WHEN p.outcome = 'completed' THEN 1 ELSE 0 END),
                SUM(CASE WHEN p.outcome = 'interrupted' THEN 1 ELSE 0 END),
                SUM(CASE WHEN p.outcome = 'failed' THEN 1 ELSE 0 END),
                SUM(CASE WHEN p.outcome IN ({marks}) THEN p.duration_ms ELSE 0 END),
                SUM(CASE WHEN p.outcome = 'interrupted' AND p.replayed THEN 1 ELSE 0 END),
                SUM(CASE WHEN p.outcome = 'skipped' THEN 1 ELSE 0 END)
            FROM playlog p
            JOIN days ON p.started_ms >= days.lo AND p.started_ms < days.hi
            LEFT JOIN devices dv ON dv.device = p.device
            WHERE p.outcome IN ({marks}, 'skipped')
            GROUP BY {_WARD}, p.device, p.bulletin, p.channel, days.day""",  # noqa: S608
            (*PLAY_OUTCOMES, *PLAY_OUTCOMES, *PLAY_OUTCOMES),
        )
        skips = days.rows(
            f"""
            SELECT {_WARD}, p.device, p.bulletin, p.channel, days.day,
                COALESCE(p.reason, 'unknown'), COUNT(*)
            FROM playlog p
            JOIN days ON p.started_ms >= days.lo AND p.started_ms < days.hi
            LEFT JOIN devices dv ON dv.device = p.device
            WHERE p.outcome = 'skipped'
            GROUP BY {_WARD}, p.device, p.bulletin, p.channel, days.day,
                COALESCE(p.reason, 'unknown')""",  # noqa: S608
        )
    reasons: dict[tuple[str, ...], list[tuple[str, int]]] = {}
    for ward, device, bulletin, channel, day, why, n in skips:
        reasons.setdefault((ward, device, bulletin, channel, day), []).append((why, int(n)))
    result = []
    for ward, device, bulletin, channel, day, *counts in rows:
        n, completed, interrupted, failed, ms, replayed, skipped = (int(c) for c in counts)
        key = (ward, device, bulletin, channel, day)
        result.append(
            Row(
                *key[:4],
                date.fromisoformat(day),
                n,
                completed,
                interrupted,
                failed,
                round(ms / 1000),
                replayed,
                skipped,
                tuple(sorted(reasons.get(key, []))),
            )
        )
    # Sorted here, not in SQL: a PostgreSQL collation would order text unlike Python.
    return sorted(result, key=lambda r: (r.ward, r.device, r.bulletin, r.channel, r.day))


def summary(
    store: Store, tz: tzinfo, since: date | None = None, until: date | None = None
) -> list[DaySummary]:
    """Per ward and local day: speaker plays, hours on air, emergencies (``DaySummary``)."""
    with store.db.transaction() as tx:
        days = _Days(tx, tz, since, until)
        if not days.bounds:
            return []
        on_air = ", ".join("?" for _ in ON_AIR_OUTCOMES)
        # Gaps and islands: in start order, a play that begins after every earlier one of the
        # ward and day has ended starts a new island; on air is the sum of the islands' spans.
        air = days.rows(
            f""",
            s AS (
                SELECT {_WARD} AS ward, days.day AS day, p.started_ms AS lo,
                    p.started_ms + p.duration_ms AS hi
                FROM playlog p
                JOIN days ON p.started_ms >= days.lo AND p.started_ms < days.hi
                LEFT JOIN devices dv ON dv.device = p.device
                WHERE p.channel = 'speaker' AND p.outcome IN ({on_air})
            ),
            o AS (
                SELECT ward, day, lo, hi, MAX(hi) OVER (PARTITION BY ward, day ORDER BY lo, hi
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
                FROM s
            ),
            g AS (
                SELECT ward, day, lo, hi, SUM(CASE WHEN reach IS NULL OR lo > reach
                    THEN 1 ELSE 0 END) OVER (PARTITION BY ward, day ORDER BY lo, hi
                    ROWS UNBOUNDED PRECEDING) AS island
                FROM o
            ),
            i AS (
                SELECT ward, day, MAX(hi) - MIN(lo) AS span, COUNT(*) AS n
                FROM g GROUP BY ward, day, island
            )
            SELECT ward, day, SUM(n), SUM(span) FROM i GROUP BY ward, day""",  # noqa: S608
            ON_AIR_OUTCOMES,
        )
        taken = ", ".join("?" for _ in TAKEN)
        emergencies = days.rows(
            f""",
            e AS (
                SELECT DISTINCT COALESCE(dv.ward, '') AS ward, days.day AS day, c.id AS id
                FROM commands c
                JOIN days ON c.issued_ms >= days.lo AND c.issued_ms < days.hi
                JOIN acks a ON a.cmd = c.id
                LEFT JOIN devices dv ON dv.device = a.device
                WHERE c.type = 'emergency.start' AND a.status IN ({taken})
            )
            SELECT ward, day, COUNT(*) FROM e GROUP BY ward, day""",  # noqa: S608
            TAKEN,
        )
    totals: dict[tuple[str, str], list[int]] = {}
    for ward, day, n, span in air:
        totals.setdefault((ward, day), [0, 0, 0])[:2] = [int(n), int(span)]
    for ward, day, n in emergencies:
        totals.setdefault((ward, day), [0, 0, 0])[2] = int(n)
    return [
        DaySummary(ward, date.fromisoformat(day), n, ms, em)
        for (ward, day), (n, ms, em) in sorted(totals.items())
    ]


def outcomes(
    store: Store, tz: tzinfo, since: date | None = None, until: date | None = None
) -> list[OutcomeRow]:
    """Entries per ward, device, channel, local day, outcome and reason (every outcome)."""
    with store.db.transaction() as tx:
        days = _Days(tx, tz, since, until)
        if not days.bounds:
            return []
        rows = days.rows(
            f"""
            SELECT {_WARD}, p.device, p.channel, days.day, p.outcome,
                COALESCE(p.reason, ''), COUNT(*)
            FROM playlog p
            JOIN days ON p.started_ms >= days.lo AND p.started_ms < days.hi
            LEFT JOIN devices dv ON dv.device = p.device
            GROUP BY {_WARD}, p.device, p.channel, days.day, p.outcome,
                COALESCE(p.reason, '')""",  # noqa: S608
        )
    result = [
        OutcomeRow(w, d, c, date.fromisoformat(day), o, r, int(n)) for w, d, c, day, o, r, n in rows
    ]
    return sorted(result, key=lambda r: (r.ward, r.device, r.channel, r.day, r.outcome, r.reason))


def commands(
    store: Store, tz: tzinfo, since: date | None = None, until: date | None = None
) -> list[CommandRow]:
    """The commands issued in the period, oldest first, each with its answers."""
    with store.db.transaction() as tx:
        days = _Days(tx, tz, since, until)
        if not days.bounds:
            return []
        rows = days.rows(
            """
            SELECT days.day, c.issued_at, c.id, c.type, c.target,
                COUNT(DISTINCT a.device),
                COUNT(DISTINCT CASE WHEN a.status = 'done' THEN a.device END),
                COUNT(DISTINCT CASE WHEN a.status = 'failed' THEN a.device END),
                COUNT(DISTINCT CASE WHEN a.status = 'rejected' THEN a.device END),
                c.issued_ms
            FROM commands c
            JOIN days ON c.issued_ms >= days.lo AND c.issued_ms < days.hi
            LEFT JOIN acks a ON a.cmd = c.id
            GROUP BY days.day, c.issued_at, c.id, c.type, c.target, c.issued_ms
            ORDER BY c.issued_ms, c.id""",
        )
    return [
        CommandRow(date.fromisoformat(day), at, cid, kind, target, *map(int, counts))
        for day, at, cid, kind, target, *counts, _ in rows
    ]


def write_commands_csv(rows: Iterable[CommandRow], out: TextIO) -> None:
    """The commands and their answers as CSV with a header line (``COMMAND_COLUMNS``)."""
    _write(COMMAND_COLUMNS, (r.cells() for r in rows), out)


def write_summary_csv(rows: Iterable[DaySummary], out: TextIO) -> None:
    """The daily summary as CSV with a header line (``SUMMARY_COLUMNS``)."""
    _write(SUMMARY_COLUMNS, (r.cells() for r in rows), out)


def write_outcomes_csv(rows: Iterable[OutcomeRow], out: TextIO) -> None:
    """Outcomes by reason as CSV with a header line (``OUTCOME_COLUMNS``)."""
    _write(OUTCOME_COLUMNS, (r.cells() for r in rows), out)


def _write(header: Sequence[str], rows: Iterable[list[str]], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for cells in rows:
        writer.writerow([_inert(c) for c in cells])


def _inert(cell: str) -> str:
    """Wards, devices and reasons come from devices: never let a spreadsheet read a formula."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


class _Days:
    """The local days of a report's period, for queries in one transaction: given, or from the
    first to the last entry or command; ``rows`` puts them before its SQL as the table
    ``days (day, lo, hi)``."""

    def __init__(self, tx: Transaction, tz: tzinfo, since: date | None, until: date | None):
        self.tx = tx
        if since is None or until is None:
            row = tx.one(
                """SELECT MIN(lo), MAX(hi) FROM (
                    SELECT MIN(started_ms) AS lo, MAX(started_ms) AS hi FROM playlog
                    UNION ALL SELECT MIN(issued_ms), MAX(issued_ms) FROM commands
                ) spans"""
            )
            if row is None or row[0] is None:
                self.bounds: list[tuple[str, int, int]] = []
                return
            since = since or _local_date(int(row[0]), tz)
            until = until or _local_date(int(row[1]), tz)
        self.bounds = local_days(tz, since, until) if since <= until else []

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """``sql`` follows ``WITH days (…) AS (VALUES …)``: more tables (``, t AS (…)``), then the
        query; ``params`` are its own."""
        values = ", ".join("(?, ?, ?)" for _ in self.bounds)
        flat = [value for day in self.bounds for value in day]
        return self.tx.rows(
            f"WITH days (day, lo, hi) AS (VALUES {values}){sql}",
            (*flat, *params),
        )


def _local_date(ms: int, tz: tzinfo) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).date()
