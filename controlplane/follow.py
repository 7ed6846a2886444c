"""Following a synchronized ``play.now`` (one with ``play_at``) to each device's start.

After the acks, ``send`` waits until the call's ``play_at`` and its length have passed, or every
device has reported, and prints per device whether it started in sync (its start error) or
why not: from their status (``now.start_error_ms`` as soon as they sound) and their play-log
entries (when it ends, or is skipped).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from controlplane.session import Session, json_object
from protocol import SpeakerPart, speaking_time_s


def synchronized_speech(body: Mapping[str, Any]) -> bool:
    """Whether a ``play.now`` body is a synchronized call: a ``play_at`` and a speaker part."""
    bulletin = body.get("bulletin")
    return (
        bool(body.get("play_at")) and isinstance(bulletin, dict) and bool(bulletin.get("speaker"))
    )


def speaking_estimate_s(bulletin: Mapping[str, Any]) -> float:
    """How long an announcement takes, roughly: its text at a calm announcer's pace
    (``protocol.speaking_time_s``) and the chime; a file or a stream, up to a minute."""
    raw = bulletin.get("speaker")
    part = SpeakerPart.model_validate(raw) if raw else None
    chime = 3.0 if part is None or part.chime else 0.0
    if part is not None and part.kind == "tts":
        return chime + speaking_time_s(part)
    return chime + 60.0


def await_sync(
    session: Session,
    doc: dict[str, Any],
    target: str,
    acked: dict[str, str],
    others: list[tuple[str, bytes]],
    wait_s: float | None,
) -> int:
    """After a synchronized ``play.now``: wait until its ``play_at`` and its length have passed
    (or every device has reported) and print, per device, whether it started in sync (its start
    error) or why not."""
    play_at = datetime.fromisoformat(str(doc["body"]["play_at"]).replace("Z", "+00:00"))
    length = speaking_estimate_s(doc["body"]["bulletin"])
    after = wait_s if wait_s is not None else length + 20.0
    deadline = time.monotonic() + max(0.0, (play_at - datetime.now(UTC)).total_seconds()) + after
    follow = SyncFollow(str(doc["id"]), target, acked)
    for topic, payload in others:
        follow.take(topic, payload)
    print(
        f"waiting for the synchronized start at {doc['body']['play_at']} "
        f"(about {length:.0f} s of speech)",
        file=sys.stderr,
    )
    while time.monotonic() < deadline and not follow.complete():
        item = session.next(min(1.0, deadline - time.monotonic()))
        if item is not None:
            follow.take(*item)
    lines, in_sync = follow.table()
    for line in lines:
        print(line)
    return 0 if in_sync else 1


class SyncFollow:
    """What the devices of a synchronized ``play.now`` said of it: their start errors (in their
    status, as soon as they sound) and their play-log entries (when it ends, or is skipped)."""

    def __init__(self, doc_id: str, target: str, acked: Mapping[str, str]) -> None:
        self.doc_id = doc_id
        self.group = target.split(":", 1)[1] if target.startswith("grp:") else None
        self.acked = dict(acked)
        self.members = set(acked) if self.group is not None else {target.split(":", 1)[1]}
        self.entries: dict[str, dict[str, Any]] = {}
        self.starts: dict[str, int] = {}

    def take(self, topic: str, payload: bytes) -> None:
        device, leaf = topic.split("/")[-2:]
        data = json_object(payload)
        if data is None:
            return
        if leaf == "state":
            groups = data.get("groups")
            if self.group is not None and isinstance(groups, list) and self.group in groups:
                self.members.add(device)
        elif leaf == "status":
            now = data.get("now") or {}
            error = now.get("start_error_ms") if isinstance(now, dict) else None
            if now.get("speaker_ref") == self.doc_id and isinstance(error, int):
                self.starts.setdefault(device, error)
        elif leaf == "playlog":
            for entry in data.get("entries") or []:
                if (
                    isinstance(entry, dict)
                    and entry.get("ref") == self.doc_id
                    and entry.get("channel") == "speaker"
                    and "attempt" not in entry  # a replay is not the synchronized start
                ):
                    self.entries.setdefault(device, entry)

    def complete(self) -> bool:
        return bool(self.members) and self.members <= set(self.entries)

    def table(self) -> tuple[list[str], bool]:
        """The lines to print and whether every device started in sync."""
        in_sync = True
        lines = [f"{'DEVICE':<24} {'START':<16} DETAIL"]
        for device in sorted(self.members | set(self.entries) | set(self.starts)):
            entry = self.entries.get(device)
            error = entry.get("start_error_ms") if entry is not None else None
            if entry is not None and (entry.get("outcome") == "skipped" or error is None):
                start = "not played"
                detail = str(entry.get("reason") or entry.get("outcome"))
                if isinstance(error, int):
                    detail += f" ({error:+d} ms)"
                in_sync = False
            elif entry is not None and isinstance(error, int):
                start, detail = f"in sync {error:+d} ms", str(entry.get("outcome"))
                if entry.get("outcome") == "interrupted" and entry.get("replayed"):
                    detail += " (replayed)"
            elif device in self.starts:
                start, detail = f"in sync {self.starts[device]:+d} ms", "still playing"
            else:
                start, detail = "no report", self.acked.get(device, "no ack")
                in_sync = False
            lines.append(f"{device:<24} {start:<16} {detail}".rstrip())
        return lines, in_sync
