"""Overrides (``play.now``, ``emergency.start``) accepted but still fetching their files.

Saved as one setting with each ack that changes them, so that after a restart their files are
fetched again and they come in force as if nothing had happened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from agent.programs import bulletin_media
from agent.store import Settings
from protocol import Envelope, Media, format_time, parse_time

log = logging.getLogger(__name__)
WAITING_SETTING = "overrides.waiting"


@dataclass(frozen=True)
class Waiting:
    env: Envelope
    rank: int
    received: datetime

    @property
    def media(self) -> tuple[Media, ...]:
        return tuple(bulletin_media(self.env.body.bulletin))


class WaitingOverrides:
    """The overrides waiting for their files, by command id."""

    def __init__(self) -> None:
        self._items: dict[str, Waiting] = {}

    def __iter__(self) -> Iterator[Waiting]:
        return iter(list(self._items.values()))

    def add(self, env: Envelope, rank: int, received: datetime) -> Waiting:
        item = self._items[env.id] = Waiting(env, rank, received)
        return item

    def pop(self, doc_id: str) -> Waiting | None:
        return self._items.pop(doc_id, None)

    def setting(self) -> Settings:
        """The setting that saves them (None when there are none)."""
        saved = [
            {"doc": w.env.model_dump_json(), "rank": w.rank, "received_at": format_time(w.received)}
            for w in self._items.values()
        ]
        return {WAITING_SETTING: json.dumps(saved) if saved else None}

    def restore(self, raw: str | None) -> list[Waiting]:
        """Take back the saved ones (an unreadable record is logged and left out)."""
        try:
            saved = json.loads(raw or "[]")
        except ValueError as exc:
            log.error("the saved overrides waiting for files are unreadable: %s", exc)
            return []
        restored = []
        for record in saved:
            try:
                env = Envelope.model_validate_json(record["doc"])
                rank, received = int(record["rank"]), parse_time(record["received_at"])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("a saved override waiting for files is unreadable: %s", exc)
                continue
            restored.append(self.add(env, rank, received))
        return restored

    def media(self) -> set[str]:
        """The hashes of their files (kept in the cache)."""
        return {m.sha256 for w in self._items.values() for m in w.media}
