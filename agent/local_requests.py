"""The control socket's requests (``ttcs-agent status``, ``say``, ``volume``…), answered on the
director's thread by the same code paths as the MQTT commands."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, TypeVar

from agent import __version__
from agent.events import JsonValue, Request
from agent.logs import tail

if TYPE_CHECKING:
    from agent.director import Director

Answer = dict[str, JsonValue]
Number = TypeVar("Number", int, float)
NO_SCREEN = "this agent has no screen ([screen] enabled?)"


class BadRequest(ValueError):
    """A request whose arguments are missing or of the wrong type."""


def answer(director: Director, req: Request) -> Answer:
    """The reply to one request (``{"ok": False, "error": …}`` when it cannot be done)."""
    conductor = director.conductor
    args = req.args
    match req.action:
        case "status":
            return {
                "ok": True,
                "status": director.status().model_dump(mode="json"),
                "device": director.config.device_id,
                "agent_version": __version__,
            }
        case "cache.gc":
            evicted: list[JsonValue] = list(conductor.collect_garbage())
            usage = conductor.cache_usage()
            return {"ok": True, "evicted": evicted, "bytes": usage.bytes, "items": usage.items}
        case "screenshot":
            width = _number(args, "max_width", 0)
            png = conductor.screenshot(width or None)
            if png is None:
                return {"ok": False, "error": NO_SCREEN}
            return {"ok": True, "png": base64.b64encode(png).decode("ascii")}
        case "test-screen" | "screen":
            card = _number(args, "seconds", 10.0) if req.action == "test-screen" else None
            info = conductor.screen_info(card)
            if info is None:
                return {"ok": False, "error": NO_SCREEN}
            return {"ok": True, "screen": json.loads(json.dumps(info, default=str))}
        case "say":
            voice = args.get("voice")
            text, chime = _str(args, "text", ""), bool(args.get("chime"))
            why = conductor.say(text, None if voice is None else str(voice), chime)
            if why is not None:
                return {"ok": False, "error": f"{why}; try later"}
            volume = conductor.volume
            return {"ok": True, "detail": f"playing on the loudspeakers at volume {volume}%"}
        case "volume":
            percent = _number(args, "percent", -1)
            if not 0 <= percent <= 100:
                return {"ok": False, "error": "volume: 0 to 100"}
            conductor.set_volume(percent)
            return {"ok": True}
        case "logs":
            count = _number(args, "lines", 100)
            lines: list[JsonValue] = [
                *tail(director.config.paths.log_path, count, director.redactor)
            ]
            return {"ok": True, "lines": lines}
        case "inject":
            # A signed document brought by a technician (e.g. on a USB stick when the link is
            # down): it passes exactly the same checks, as if it came on its target's topic.
            doc = _str(args, "document", "")
            topic = _topic_for(director, doc)
            acks = director.on_message(topic, doc.encode("utf-8"), limited=False)
            return {"ok": True, "acks": [a.model_dump(mode="json") for a in acks]}
    return {"ok": False, "error": f"unknown action {req.action!r}"}


def _number(args: dict[str, JsonValue], key: str, default: Number) -> Number:
    """``args[key]`` read as the type of ``default`` (int or float; a numeric string too)."""
    value = args.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"{key}: a number")
    try:
        return type(default)(value)
    except ValueError:
        raise BadRequest(f"{key}: a number") from None


def _str(args: dict[str, JsonValue], key: str, default: str) -> str:
    value = args.get(key, default)
    return default if value is None else str(value)


def _topic_for(director: Director, doc: str) -> str:
    topics, device = director.topics, director.config.device_id
    try:
        data = json.loads(doc)
        leaf = "program" if data.get("type") == "program" else "cmd"
        return topics.for_target(str(data["target"]), leaf)
    except (ValueError, KeyError, TypeError, AttributeError):
        return topics.dev(device, "cmd")
