"""Helpers for the store tests: messages as the devices publish them."""

from __future__ import annotations

import json
from typing import Any

from controlplane.ingest import Message, Rejected, Report, parse
from controlplane.store import Ingested, Store

PREFIX = "ttcs/v1"
DEV1 = "q10-p12-bang-01"
DEV2 = "q10-p13-loa-01"


def message(device: str, leaf: str, doc: Any, received_ms: int = 1_000) -> Message:
    return Message(f"{PREFIX}/dev/{device}/{leaf}", json.dumps(doc).encode(), received_ms)


def report(device: str, leaf: str, doc: Any, received_ms: int = 1_000) -> Report:
    parsed = parse(message(device, leaf, doc, received_ms), PREFIX)
    assert parsed is not None and not isinstance(parsed, Rejected), parsed
    return parsed


def entry(
    entry_id: str,
    start: str = "2026-11-26T01:00:00Z",
    end: str = "2026-11-26T01:00:15Z",
    outcome: str = "completed",
    bulletin: str = "tb-01",
    channel: str = "screen",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": entry_id,
        "bulletin": bulletin,
        "channel": channel,
        "started_at": start,
        "ended_at": end,
        "outcome": outcome,
        **extra,
    }


def playlog(device: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"v": 1, "device": device, "entries": list(entries)}


def state(device: str, groups: list[str] | None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1, "online": groups is not None, "device": device, **extra}
    if groups is not None:
        doc["groups"] = groups
    return doc


def ingest_playlog(
    store: Store, device: str, *entries: dict[str, Any], received_ms: int = 1_000
) -> Ingested:
    return store.ingest([report(device, "playlog", playlog(device, *entries), received_ms)])


def ingest_state(
    store: Store, device: str, groups: list[str] | None, received_ms: int = 1_000
) -> Ingested:
    return store.ingest([report(device, "state", state(device, groups), received_ms)])
