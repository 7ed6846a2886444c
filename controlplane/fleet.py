"""The fleet at a glance (``fleet``, from the retained state and status topics, or with ``--db``
from the store, devices now offline included) and a live
``watch`` of acks, events and play logs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from controlplane.errors import ControlError
from controlplane.session import Session
from protocol import Topics, format_time


def collect_fleet(args: argparse.Namespace, settle_s: float = 1.5) -> dict[str, dict[str, Any]]:
    """Read the retained state and status of every device."""
    topics = Topics(args.prefix)
    fleet: dict[str, dict[str, Any]] = {}
    with Session(args, [topics.dev("+", "state"), topics.dev("+", "status")]) as session:
        deadline = time.monotonic() + settle_s
        while (item := session.next(deadline - time.monotonic())) is not None:
            topic, payload = item
            parts = topic.split("/")
            try:
                fleet.setdefault(parts[-2], {})[parts[-1]] = json.loads(payload)
            except ValueError:
                continue
    return fleet


def store_fleet(url: str) -> dict[str, dict[str, Any]]:
    """Every device the store knows, online or not: its last state and status, and ``known``
    (the groups and version of the last state that named them, the last-seen time)."""
    from controlplane.db import DatabaseError
    from controlplane.migrations import SchemaError
    from controlplane.store import Store

    try:
        with Store.open(url) as store:
            fleet = store.fleet()
            with store.db.transaction() as tx:
                rows = tx.rows("SELECT device, groups, agent_version, last_seen_ms FROM devices")
    except (DatabaseError, SchemaError, ValueError) as exc:
        raise ControlError(f"cannot read the store: {exc}") from None
    for device, groups, version, last_seen_ms in rows:
        fleet.setdefault(device, {})["known"] = {
            "groups": json.loads(groups) if groups else [],
            "agent_version": version,
            "last_seen": format_time(int(last_seen_ms) / 1000),
        }
    return fleet


def cmd_fleet(args: argparse.Namespace) -> int:
    fleet = store_fleet(args.db) if args.db else collect_fleet(args)
    if args.json:
        print(json.dumps(fleet, ensure_ascii=False, indent=2))
        return 0
    header: tuple[str, ...] = ("DEVICE", "ONLINE", "LAST SEEN", "VERSION", "GROUPS", "PROGRAMS")
    header += ("SCREEN", "SPEAKER", "VOL", "OUTBOX")
    rows: list[tuple[str, ...]] = [header]
    for device in sorted(fleet):
        state, status = fleet[device].get("state", {}), fleet[device].get("status", {})
        known = fleet[device].get("known", {})
        groups = state.get("groups") or known.get("groups") or []
        programs = status.get("programs") or {}
        now = status.get("now") or {}
        rows.append(
            (
                device,
                "yes" if state.get("online") else "NO",
                str(known.get("last_seen") or status.get("at") or state.get("since") or "—"),
                str(state.get("agent_version") or known.get("agent_version") or "—"),
                ",".join(str(g) for g in groups) or "—",
                ",".join(f"v{v}" for v in programs.values()) or "—",
                str(now.get("screen") or "—"),
                str(now.get("speaker") or "—"),
                str(status.get("volume", "—")),
                str(status.get("outbox", "—")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print("(no device has reported yet)", file=sys.stderr)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    topics = Topics(args.prefix)
    subs = [topics.dev("+", leaf) for leaf in ("ack", "event", "playlog")]
    deadline = time.monotonic() + args.duration if args.duration else None
    with Session(args, subs) as session:
        while deadline is None or time.monotonic() < deadline:
            item = session.next(1.0 if deadline is None else min(1.0, deadline - time.monotonic()))
            if item is None:
                continue
            topic, payload = item
            parts = topic.split("/")
            text = payload.decode("utf-8", errors="replace")
            print(f"{datetime.now(UTC):%H:%M:%S} {parts[-2]:<24} {parts[-1]:<8} {text}")
            sys.stdout.flush()
    return 0
