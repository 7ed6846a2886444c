"""Proof of play in files: ``collect`` appends the devices' playlogs to a JSON-lines file
(durable before the broker's acknowledgement) and ``report`` turns such files into a CSV
(``controlplane.files_report``)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controlplane import files_report as report
from controlplane.errors import ControlError
from controlplane.session import Session, json_object
from protocol import Topics
from protocol.link import Token

COLLECTOR_ID = "ttcs-control-collector"
_BATCH_MAX = 500  # messages written (and fsynced) together
_BATCH_QUIET_S = 0.05  # a batch ends when nothing more arrives for this long...
_BATCH_WINDOW_S = 0.2  # ...or after this long


def _known_wards(path: Path) -> dict[str, str]:
    """The wards in the lines an earlier run wrote: a device now offline (its retained state
    is the last will, which names no groups) keeps the ward it had."""
    if not path.exists():
        return {}
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return report.wards_from_lines(fh)
    except OSError as exc:
        raise ControlError(f"cannot read {path}: {exc.strerror}") from None


def _retained_wards(args: argparse.Namespace, topics: Topics) -> dict[str, str]:
    """The wards in the retained ``state`` messages, read by a clean session: a resumed
    persistent session keeps its subscriptions, and the broker sends retained messages to new
    subscriptions only."""
    wards: dict[str, str] = {}
    with Session(args, [topics.dev("+", "state")]) as session:
        deadline = time.monotonic() + 5.0
        # Retained messages follow the SUBACK at once: the first quiet moment ends them.
        while (item := session.next(min(0.5, deadline - time.monotonic()))) is not None:
            topic, payload = item
            state = json_object(payload)
            ward = report.ward_of(state) if state is not None else None
            if ward:
                wards[topic.split("/")[-2]] = ward
    return wards


@contextlib.contextmanager
def _appending(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for appending whole lines: a line torn by a crash is closed first, so
    the next one stays readable (the report skips the torn one)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        torn = False
        if existed and path.stat().st_size > 0:
            with path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
        out = path.open("ab")
    except OSError as exc:
        raise ControlError(f"cannot append to {path}: {exc.strerror}") from None
    with out:
        if torn:
            out.write(b"\n")
        if not existed:
            # The new file's name must survive a power cut as well as its lines.
            out.flush()
            os.fsync(out.fileno())
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        yield out


def _batch(session: Session, wait_s: float) -> list[tuple[str, bytes, Token | None]]:
    """The next messages: the first within ``wait_s``, then whatever follows at once."""
    first = session.next_inbound(wait_s)
    if first is None:
        return []
    batch = [first]
    end = time.monotonic() + _BATCH_WINDOW_S
    while len(batch) < _BATCH_MAX and time.monotonic() < end:
        item = session.next_inbound(min(_BATCH_QUIET_S, end - time.monotonic()))
        if item is None:
            break
        batch.append(item)
    return batch


def cmd_collect(args: argparse.Namespace) -> int:
    """Append every playlog message to ``--out``, one JSON line each, with the device's ward.

    A persistent session (``--client-id``) makes the broker keep what is published between
    runs; a message is acknowledged only once its line is fsynced, so a crash or Ctrl-C loses
    nothing (it is delivered again; the report counts each entry id once).
    """
    topics = Topics(args.prefix)
    out: Path = args.out
    wards = _known_wards(out)
    wards.update(_retained_wards(args, topics))
    deadline = time.monotonic() + args.duration if args.duration else None
    messages = entries = 0
    devices: set[str] = set()
    subs = [topics.dev("+", "playlog"), topics.dev("+", "state")]
    session = Session(args, subs, client_id=args.client_id, persistent=True, manual_ack=True)
    with _appending(out) as fh, session:
        try:
            while deadline is None or time.monotonic() < deadline:
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                batch = _batch(session, wait)
                lines: list[str] = []
                for topic, payload, _token in batch:
                    device, leaf = topic.split("/")[-2:]
                    doc = json_object(payload)
                    if leaf == "state":
                        ward = report.ward_of(doc) if doc is not None else None
                        if ward:
                            wards[device] = ward
                    elif doc is None or not isinstance(doc.get("entries"), list):
                        print(f"ignored a malformed playlog from {device}", file=sys.stderr)
                    else:
                        now = datetime.now(UTC)
                        lines.append(report.collected_line(device, now, wards.get(device), doc))
                        entries += len(doc["entries"])
                        devices.add(device)
                if lines:
                    fh.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
                    fh.flush()
                    os.fsync(fh.fileno())
                    messages += len(lines)
                for _topic, _payload, token in batch:
                    session.link.ack(token)
        except KeyboardInterrupt:
            pass  # what was not acknowledged yet is delivered again next time
    print(
        f"collected {messages} playlog message(s) with {entries} entries from "
        f"{len(devices)} device(s) into {out}",
        file=sys.stderr,
    )
    return 0


def _lines(paths: list[Path]) -> Iterator[str]:
    for path in paths:
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                yield from fh
        except OSError as exc:
            raise ControlError(f"cannot read {path}: {exc.strerror}") from None


def cmd_report(args: argparse.Namespace) -> int:
    """Plays per ward, device, bulletin and local day, as CSV, from files of ``collect`` (or,
    ``--db``, from the control plane's store: plays, the daily summary or outcomes)."""
    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ControlError(f"unknown time zone {args.tz!r} (e.g. Asia/Ho_Chi_Minh)") from None
    if args.db:
        if args.files:
            raise ControlError("give collected files or --db, not both")
        return _report_from_store(args, tz)
    if not args.files:
        raise ControlError("give the files written by collect, or --db URL")
    if args.kind != "plays" or args.since or args.until:
        raise ControlError("--kind, --since and --until need --db")
    reading = report.read_collected(_lines(args.files))
    rows = report.aggregate(reading.plays, tz)
    if args.out:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("w", encoding="utf-8", newline="") as fh:
                report.write_csv(rows, fh)
        except OSError as exc:
            raise ControlError(f"cannot write {args.out}: {exc.strerror}") from None
    else:
        report.write_csv(rows, sys.stdout)
    notes = [f"{reading.duplicates} duplicate entries ignored"]
    if reading.bad_lines:
        notes.append(f"{reading.bad_lines} unreadable lines skipped")
    if reading.bad_entries:
        notes.append(f"{reading.bad_entries} malformed entries skipped")
    print(f"{len(reading.plays)} plays in {len(rows)} rows ({'; '.join(notes)})", file=sys.stderr)
    return 0


def _report_from_store(args: argparse.Namespace, tz: ZoneInfo) -> int:
    from controlplane import report as sql
    from controlplane.db import DatabaseError
    from controlplane.migrations import SchemaError
    from controlplane.store import Store

    out = io.StringIO()
    try:
        with Store.open(args.db) as store:
            if args.kind == "summary":
                days = sql.summary(store, tz, args.since, args.until)
                sql.write_summary_csv(days, out)
            elif args.kind == "outcomes":
                found = sql.outcomes(store, tz, args.since, args.until)
                sql.write_outcomes_csv(found, out)
            elif args.kind == "commands":
                sent = sql.commands(store, tz, args.since, args.until)
                sql.write_commands_csv(sent, out)
            else:
                sql.write_csv(sql.plays(store, tz, args.since, args.until), out)
    except (DatabaseError, SchemaError, ValueError) as exc:
        raise ControlError(f"cannot read the store: {exc}") from None
    text = out.getvalue()
    if args.out:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ControlError(f"cannot write {args.out}: {exc.strerror}") from None
    else:
        sys.stdout.write(text)
    print(f"{text.count(chr(10)) - 1} rows ({args.kind}, from the store)", file=sys.stderr)
    return 0
