"""PROTOCOL.md's rules for documents, written again as plain checks on parsed JSON.

The fuzzers use these as their oracle: whatever the agent accepts must break none of them.
They are written from the protocol text, not from ``protocol.documents``, so that a rule the
models forgot shows up as a disagreement. Each function returns the problems it found.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

IDENT = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
DOC_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
BULLETIN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
HTTP_URL = re.compile(r"^https?://\S+$")
STREAM_URL = re.compile(r"^(https?|rtsp|rtmp)://\S+$")
COMMANDS = {
    "ping",
    "play.now",
    "emergency.start",
    "emergency.stop",
    "play.stop",
    "stream.start",
    "stream.stop",
    "volume.set",
    "power.set",
    "screenshot",
    "logs.upload",
    "agent.restart",
}
LEVELS = {"normal", "priority", "emergency"}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_in(value: Any, low: int, high: int | None = None) -> bool:
    return is_int(value) and value >= low and (high is None or value <= high)


def moment(value: Any) -> datetime | None:
    """An RFC 3339 UTC time with ``Z``, or None when ``value`` is not one."""
    if not isinstance(value, str) or not TIME.match(value):
        return None
    try:
        return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _optional_time(where: str, value: Any) -> list[str]:
    return [] if value is None or moment(value) else [f"{where}: not a time"]


def media_problems(where: str, media: Any) -> list[str]:
    if not isinstance(media, dict):
        return [f"{where}: not an object"]
    out = []
    url = media.get("url")
    if not (isinstance(url, str) and len(url) <= 2048 and HTTP_URL.match(url)):
        out.append(f"{where}.url")
    if not (isinstance(media.get("sha256"), str) and SHA256.match(media["sha256"])):
        out.append(f"{where}.sha256")
    if not int_in(media.get("size"), 0):
        out.append(f"{where}.size")
    if not isinstance(media.get("mime"), str):
        out.append(f"{where}.mime")
    return out


def bulletin_problems(where: str, b: Any) -> list[str]:
    """Why ``b`` is not a Bulletin of PROTOCOL.md."""
    if not isinstance(b, dict):
        return [f"{where}: not an object"]
    out = []
    if not (isinstance(b.get("id"), str) and BULLETIN_ID.match(b["id"])):
        out.append(f"{where}.id")
    if not isinstance(b.get("title"), str):
        out.append(f"{where}.title")
    if b.get("level", "normal") not in LEVELS:
        out.append(f"{where}.level")
    screen, speaker = b.get("screen"), b.get("speaker")
    if screen is None and speaker is None:
        out.append(f"{where}: neither screen nor speaker")
    if screen is not None:
        if not isinstance(screen, dict) or screen.get("kind") not in ("text", "image", "video"):
            out.append(f"{where}.screen.kind")
        elif screen["kind"] == "text" and not (
            isinstance(screen.get("text"), str) and screen["text"]
        ):
            out.append(f"{where}.screen.text")
        elif screen["kind"] != "text":
            out += media_problems(f"{where}.screen.media", screen.get("media"))
        if isinstance(screen, dict) and not int_in(screen.get("duration_ms", 15000), 1000):
            out.append(f"{where}.screen.duration_ms")
    if speaker is not None:
        kind = speaker.get("kind") if isinstance(speaker, dict) else None
        if kind not in ("tts", "audio", "stream"):
            out.append(f"{where}.speaker.kind")
        elif kind == "tts" and not (isinstance(speaker.get("text"), str) and speaker["text"]):
            out.append(f"{where}.speaker.text")
        elif kind == "audio":
            out += media_problems(f"{where}.speaker.media", speaker.get("media"))
        elif kind == "stream" and speaker.get("media") is None:
            url = speaker.get("url")
            if not (isinstance(url, str) and STREAM_URL.match(url)):
                out.append(f"{where}.speaker.url")
        voice = speaker.get("voice") if isinstance(speaker, dict) else None
        if voice is not None and not (isinstance(voice, str) and IDENT.match(voice)):
            out.append(f"{where}.speaker.voice")
    out += _optional_time(f"{where}.valid_from", b.get("valid_from"))
    out += _optional_time(f"{where}.valid_until", b.get("valid_until"))
    start, end = moment(b.get("valid_from")), moment(b.get("valid_until"))
    if start and end and end <= start:
        out.append(f"{where}.valid_until: not after valid_from")
    schedule = b.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, dict):
            out.append(f"{where}.schedule")
        else:
            days = schedule.get("weekdays", [1])
            if not (isinstance(days, list) and all(int_in(d, 1, 7) for d in days)):
                out.append(f"{where}.schedule.weekdays")
            times = schedule.get("times")
            if not (
                isinstance(times, list)
                and times
                and all(isinstance(t, str) and CLOCK.match(t) for t in times)
            ):
                out.append(f"{where}.schedule.times")
    return out


def program_problems(body: Any) -> list[str]:
    """Why ``body`` is not a program body."""
    if not isinstance(body, dict):
        return ["body: not an object"]
    out = [] if int_in(body.get("version"), 0) else ["body.version"]
    bulletins = body.get("bulletins", [])
    if not isinstance(bulletins, list):
        return [*out, "body.bulletins"]
    for index, item in enumerate(bulletins):
        out += bulletin_problems(f"body.bulletins[{index}]", item)
    ids = [b.get("id") for b in bulletins if isinstance(b, dict)]
    if len(ids) != len(set(map(str, ids))):
        out.append("body.bulletins: ids not unique")
    ticker = body.get("ticker", [])
    if not (isinstance(ticker, list) and all(isinstance(t, str) for t in ticker)):
        out.append("body.ticker")
    hours = body.get("screen_hours")
    if hours is not None and not (
        isinstance(hours, dict)
        and all(isinstance(hours.get(k), str) and CLOCK.match(hours[k]) for k in ("on", "off"))
    ):
        out.append("body.screen_hours")
    return out


def body_problems(kind: str, body: Any) -> list[str]:
    """Why ``body`` is not the body of a document of type ``kind``."""
    if kind == "program":
        return program_problems(body)
    if not isinstance(body, dict):
        return ["body: not an object"]
    if kind in ("play.now", "emergency.start"):
        out = bulletin_problems("body.bulletin", body.get("bulletin"))
        if kind == "play.now":
            out += _optional_time("body.play_at", body.get("play_at"))
            if body.get("repeat") is not None and not int_in(body["repeat"], 1, 100):
                out.append("body.repeat")
        elif body.get("repeat_every_s") is not None and not int_in(body["repeat_every_s"], 10):
            out.append("body.repeat_every_s")
        return out
    if kind == "volume.set":
        return [] if int_in(body.get("percent"), 0, 100) else ["body.percent"]
    if kind == "logs.upload":
        lines = body.get("lines")
        return [] if lines is None or int_in(lines, 1, 10000) else ["body.lines"]
    if kind == "screenshot":
        width = body.get("max_width")
        return [] if width is None or int_in(width, 16, 7680) else ["body.max_width"]
    if kind == "power.set":
        return [
            f"body.{k}"
            for k in ("screen", "amplifier")
            if body.get(k) not in (None, "on", "off", "auto")
        ]
    if kind == "emergency.stop":
        ref = body.get("ref")
        return [] if ref is None or (isinstance(ref, str) and DOC_ID.match(ref)) else ["body.ref"]
    if kind == "play.stop":
        ref = body.get("ref")
        return [] if isinstance(ref, str) and DOC_ID.match(ref) else ["body.ref"]
    if kind == "stream.start":
        url, channels = body.get("url"), body.get("channels")
        out = [] if isinstance(url, str) and STREAM_URL.match(url) else ["body.url"]
        if not (
            isinstance(channels, list)
            and 1 <= len(channels) <= 2
            and all(c in ("speaker", "screen") for c in channels)
        ):
            out.append("body.channels")
        return out
    return []


def _floats_or_surrogates(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, str) and re.search("[\ud800-\udfff]", item):
            return True
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return False


def envelope_problems(
    doc: Any, topic: str, now: datetime, device: str, groups: tuple[str, ...], prefix: str
) -> list[str]:
    """Why ``doc``, arrived on ``topic`` at ``now``, must not be executed (signature aside)."""
    if not isinstance(doc, dict):
        return ["not an object"]
    out = []
    if not (is_int(doc.get("v")) and doc["v"] == 1):
        out.append("v")
    if not (isinstance(doc.get("id"), str) and DOC_ID.match(doc["id"])):
        out.append("id")
    kind = doc.get("type")
    if kind != "program" and kind not in COMMANDS:
        return [*out, "type"]
    target = doc.get("target")
    mine = {f"dev:{device}", *(f"grp:{g}" for g in groups)}
    if target not in mine:
        out.append("target")
    else:
        kind_name, _, name = str(target).partition(":")
        leaf = "program" if kind == "program" else "cmd"
        if topic != f"{prefix}/{kind_name}/{name}/{leaf}":
            out.append("topic")
    issued = moment(doc.get("issued_at"))
    if issued is None or issued > now + timedelta(seconds=300):
        out.append("issued_at")
    expires = doc.get("expires_at")
    if expires is None and kind != "program":
        out.append("expires_at: required")
    if expires is not None and not ((when := moment(expires)) and when > now):
        out.append("expires_at")
    if _floats_or_surrogates(doc):
        out.append("a float or a lone surrogate")
    return out + body_problems(str(kind), doc.get("body"))
