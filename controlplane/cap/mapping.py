"""CAP → our model: levels, the info to use, stable ids, texts, and the bulletin.

The rules are the table of ``docs/cap.md``; each function here is one row of it, pure (no I/O),
so that tests can read them one by one.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from controlplane.cap.parse import Alert, Info, Severity, Status, Urgency
from controlplane.cap.settings import CapSettings
from protocol import Bulletin, Level, Media, ScreenPart, SpeakerPart

_SERIOUS = (Severity.EXTREME, Severity.SEVERE)
_SOON = (Urgency.IMMEDIATE, Urgency.EXPECTED)
_DRILL_TITLE = {Status.EXERCISE: "DIỄN TẬP", Status.TEST: "THỬ NGHIỆM"}
_DRILL_SPOKEN = {Status.EXERCISE: "Đây là tin diễn tập.", Status.TEST: "Đây là tin thử nghiệm."}
_SENTENCE_END = ".!?…:;"


# --------------------------------------------------------------------------- level


def level_of(info: Info) -> Level | None:
    """The bulletin level of an info, after TT 39/2020's three levels; None: not broadcast.

    Extreme/Severe with Immediate/Expected urgency is an emergency; Extreme/Severe with
    Future/Past/Unknown urgency, and Moderate, are priority; Minor and Unknown severity are
    not broadcast automatically (an operator reads them and decides).
    """
    if info.severity in _SERIOUS:
        return Level.EMERGENCY if info.urgency in _SOON else Level.PRIORITY
    if info.severity == Severity.MODERATE:
        return Level.PRIORITY
    return None


# --------------------------------------------------------------------------- language


def _is_vietnamese(language: str) -> bool:
    tag = language.strip().lower()
    return tag == "vi" or tag.startswith("vi-")


def chosen_infos(alert: Alert) -> list[int]:
    """The indexes of the infos to broadcast: every Vietnamese one (``vi``, ``vi-VN``, …), or,
    when there is none, every info in the language of the first."""
    if not alert.infos:
        return []
    vietnamese = [i for i, info in enumerate(alert.infos) if _is_vietnamese(info.language)]
    if vietnamese:
        return vietnamese
    first = alert.infos[0].language.strip().lower()
    return [i for i, info in enumerate(alert.infos) if info.language.strip().lower() == first]


# --------------------------------------------------------------------------- ids


def alert_key(sender: str, identifier: str) -> str:
    """A stable hex key of a CAP alert (``sender`` and ``identifier`` identify it)."""
    return hashlib.sha256(f"{sender}\x1f{identifier}".encode()).hexdigest()


def bulletin_id(sender: str, identifier: str, info: int) -> str:
    """The bulletin id of one info of an alert: ``cap-<24 hex>-<info>``, stable."""
    return f"cap-{alert_key(sender, identifier)[:24]}-{info}"


def command_id(*parts: str) -> str:
    """A stable document id from what the command is: ``cap-<40 hex>``.

    The same alert planned twice (a crash before it was recorded) gives the same ids, so the
    devices' own duplicate check (10) keeps a siren from starting again.
    """
    return "cap-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


# --------------------------------------------------------------------------- texts


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _one_line(text: str) -> str:
    return " ".join(_nfc(text).split())


def _paragraphs(text: str) -> str:
    # Keeps the feed's paragraphs (blank lines) and line breaks, collapses runs of spaces.
    lines = [" ".join(line.split()) for line in _nfc(text).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters at a word boundary, ending in ``…``."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space > limit // 2:
        head = head[:space]
    return head.rstrip(" \n,;:") + "…"


def _sentence(text: str) -> str:
    return text if text[-1] in _SENTENCE_END else text + "."


def title_of(info: Info, status: Status, limit: int) -> str:
    """``headline`` (else ``event``), one line; drills say so first."""
    title = _one_line(info.headline or "") or _one_line(info.event)
    if status in _DRILL_TITLE:
        title = f"{_DRILL_TITLE[status]} – {title}"
    return cut(title, limit)


def screen_text_of(info: Info, limit: int) -> str:
    """``description`` then ``instruction``, as paragraphs (the headline when both are absent)."""
    parts = [_paragraphs(p) for p in (info.description, info.instruction) if p]
    text = "\n\n".join(p for p in parts if p)
    return cut(text or _one_line(info.headline or info.event), limit)


def spoken_text_of(info: Info, status: Status, limit: int) -> str:
    """The headline (else ``event``) and the ``instruction`` (else the ``description``), as
    sentences; a drill starts by saying it is one. The device reads numbers, dates and
    abbreviations out as it does for every announcement."""
    parts = [_one_line(info.headline or "") or _one_line(info.event)]
    rest = _one_line(info.instruction or "") or _one_line(info.description or "")
    if rest:
        parts.append(rest)
    text = " ".join(_sentence(p) for p in parts if p)
    if status in _DRILL_SPOKEN:
        text = f"{_DRILL_SPOKEN[status]} {text}"
    return cut(text, limit)


# --------------------------------------------------------------------------- bulletin


def bulletin_of(
    alert: Alert,
    index: int,
    level: Level,
    settings: CapSettings,
    image: Media | None = None,
    audio: Media | None = None,
) -> Bulletin:
    """The bulletin of ``alert.infos[index]`` at ``level``: text (or the image) on the screen,
    speech (or the audio file) on the loudspeakers."""
    info = alert.infos[index]
    screen_text = screen_text_of(info, settings.max_screen_chars)
    spoken = spoken_text_of(info, alert.status, settings.max_spoken_chars)
    screen = ScreenPart(
        kind="image" if image is not None else "text",
        text=screen_text,
        media=image,
        duration_ms=settings.screen_duration_ms,
    )
    speaker = SpeakerPart(
        kind="audio" if audio is not None else "tts",
        text=spoken,
        media=audio,
        voice=settings.voice,
        chime=True,
    )
    return Bulletin(
        id=bulletin_id(alert.sender, alert.identifier, index),
        title=title_of(info, alert.status, settings.max_title_chars),
        level=level,
        screen=screen,
        speaker=speaker,
    )
