"""``play.stop``: the ``play.now`` commands withdrawn, and what a withdrawal took away.

A stopped id is remembered (one store setting, saved with the ``play.stop``'s ack) until the
stop's ``expires_at``, and at least a day: a ``play.now`` that arrives after its stop (the
order is not guaranteed across reconnections and redeliveries) is then not played.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.store import Settings
from protocol import format_time, parse_time

log = logging.getLogger(__name__)
STOPPED_SETTING = "play.stopped"
KEEP_AT_LEAST = timedelta(days=1)


@dataclass(frozen=True)
class Stopped:
    """A ``play.now`` id named by a ``play.stop`` (``by``), remembered until ``until``."""

    by: str
    until: datetime


class StoppedPlays:
    """The ``play.now`` ids that ``play.stop`` commands named, by id."""

    def __init__(self, raw: str | None = None) -> None:
        self._items: dict[str, Stopped] = {}
        try:
            saved = json.loads(raw or "{}")
            for ref, record in saved.items():
                self._items[str(ref)] = Stopped(str(record["by"]), parse_time(record["until"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("the record of withdrawn play.now commands is unreadable: %s", exc)

    def __contains__(self, ref: object) -> bool:
        return ref in self._items

    def get(self, ref: str) -> Stopped | None:
        return self._items.get(ref)

    def add(self, ref: str, by: str, expires_at: str | None, now: datetime) -> Stopped:
        """Remember ``ref`` until the stop's ``expires_at``, at least a day from ``now``."""
        until = now + KEEP_AT_LEAST
        if expires_at is not None:
            until = max(until, parse_time(expires_at))
        earlier = self._items.get(ref)
        if earlier is not None and earlier.until > until:
            until = earlier.until
        item = self._items[ref] = Stopped(by, until)
        return item

    def setting(self, now: datetime) -> Settings:
        """The setting that saves them, without those whose time has passed."""
        self._items = {k: v for k, v in self._items.items() if v.until > now}
        saved = {k: {"by": v.by, "until": format_time(v.until)} for k, v in self._items.items()}
        return {STOPPED_SETTING: json.dumps(saved) if saved else None}


@dataclass
class Withdrawal:
    """What one ``play.stop`` took away; ``entries`` are the ``skipped`` play-log entries of
    the parts that had not come to play yet, written with its ack."""

    bulletin: str | None = None
    files: bool = False  # it was still waiting for its files
    speaking: bool = False  # the loudspeakers were playing it: stopped now
    queued: int = 0  # announcements of it that waited for the loudspeakers
    showing: bool = False  # the screen showed it: taken off now
    screen_turn: bool = False  # its screen part waited for the screen
    entries: list[tuple[str, str]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.files or self.speaking or self.queued > 0 or self.showing or self.screen_turn

    def detail(self, ref: str) -> str:
        """The ``done`` ack's detail: what was withdrawn, or why nothing was."""
        if not self.found:
            if self.bulletin is not None:
                return f"play.now {ref} ({self.bulletin}) has played already: nothing withdrawn"
            return f"no play.now {ref} here: it will not be played if it comes"
        parts = []
        if self.files:
            parts.append("it was waiting for its files")
        if self.speaking:
            parts.append("stopped on the loudspeakers")
        if self.queued:
            parts.append(f"{self.queued} announcement(s) taken off the loudspeakers' queue")
        if self.showing:
            parts.append("taken off the screen")
        if self.screen_turn:
            parts.append("its turn on the screen cancelled")
        return f"withdrew play.now {ref} ({self.bulletin}): {', '.join(parts)}"
