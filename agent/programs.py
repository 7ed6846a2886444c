"""Programs: the live ones (restored at boot, before any network), the pending ones (waiting for
their content), and their merge into what arbitration sees.

A device merges the programs of all its topics. Source precedence follows the configuration:
the device's own topic first, then its groups in the order they are listed (ward before
district before ``all``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from agent.arbiter import Entry
from agent.store import ProgramRow
from protocol import Bulletin, Envelope, Media, ProgramBody, ScreenHours, Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Program:
    """A verified program document and where it came from."""

    row: ProgramRow
    body: ProgramBody
    rank: int

    @property
    def topic(self) -> str:
        return self.row.topic

    @property
    def since(self) -> datetime:
        """When a pending program was accepted, or when a live one went live."""
        return datetime.fromtimestamp(self.row.since, UTC)


def bulletin_media(bulletin: Bulletin, channel: str | None = None) -> list[Media]:
    """The files a bulletin (or one of its channels) needs; a live stream is not a file."""
    parts = {"screen": bulletin.screen, "speaker": bulletin.speaker}
    chosen = [parts[channel]] if channel is not None else list(parts.values())
    return [p.media for p in chosen if p is not None and p.media is not None and p.kind != "stream"]


def bulletin_fingerprint(bulletin: Bulletin) -> str:
    """A short hash of a bulletin's content: a corrected bulletin under the same id differs."""
    return hashlib.sha256(bulletin.model_dump_json().encode()).hexdigest()[:16]


def media_of(body: ProgramBody) -> list[Media]:
    """Every file a program needs, each once, in program order."""
    seen: dict[str, Media] = {}
    for bulletin in body.bulletins:
        for media in bulletin_media(bulletin):
            seen.setdefault(media.sha256, media)
    return list(seen.values())


class Ranks:
    """Source precedence of program topics for one device."""

    def __init__(self, topics: Topics, device_id: str, groups: Iterable[str]) -> None:
        self._rank = {topics.dev(device_id, "program"): 0}
        for index, group in enumerate(groups, start=1):
            self._rank[topics.grp(group, "program")] = index
        self._cmd_rank = {topics.dev(device_id, "cmd"): 0}
        for index, group in enumerate(groups, start=1):
            self._cmd_rank[topics.grp(group, "cmd")] = index

    def of_program(self, topic: str) -> int:
        return self._rank.get(topic, len(self._rank))

    def of_command(self, topic: str) -> int:
        return self._cmd_rank.get(topic, len(self._cmd_rank))


def parse(row: ProgramRow, rank: int) -> Program | None:
    """Re-read a stored program (it was verified when it arrived); None if it no longer parses."""
    try:
        env = Envelope.model_validate_json(row.payload)
    except ValidationError as exc:
        log.error("stored program %s on %s is unreadable: %s", row.doc_id, row.topic, exc)
        return None
    if not isinstance(env.body, ProgramBody):
        return None
    return Program(row, env.body, rank)


@dataclass(frozen=True)
class Merged:
    """The live programs merged: arbitration entries, ticker, screen hours, media in use."""

    entries: tuple[Entry, ...]
    ticker: tuple[str, ...]
    screen_hours: ScreenHours | None
    went_live_at: datetime | None
    media: dict[str, Media]


def merge(programs: Iterable[Program]) -> Merged:
    """Merge live programs: entries by precedence; the most specific source's screen hours."""
    ordered = sorted(programs, key=lambda p: p.rank)
    entries: list[Entry] = []
    ticker: list[str] = []
    media: dict[str, Media] = {}
    hours: ScreenHours | None = None
    for program in ordered:
        for bulletin in program.body.bulletins:
            entries.append(
                Entry(bulletin, program.rank, program.topic, len(entries), program.since)
            )
        ticker.extend(program.body.ticker)
        if hours is None:
            hours = program.body.screen_hours
        for item in media_of(program.body):
            media.setdefault(item.sha256, item)
    went_live = max((p.since for p in ordered), default=None)
    return Merged(tuple(entries), tuple(ticker), hours, went_live, media)
