"""``emergency start`` and ``emergency stop``: an emergency typed by the operator, sent to a
device, a group or every ward (``grp:all``), with the fan-out view of who took it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from controlplane.errors import ControlError
from controlplane.keys import SigningKey, make_document, new_id
from controlplane.send import publish_and_follow
from protocol import nfc


def emergency_bulletin(
    title: str, text: str, bulletin_id: str | None = None, voice: str | None = None
) -> dict[str, Any]:
    """An emergency bulletin that shows ``text`` under ``title`` and speaks it."""
    speaker: dict[str, Any] = {"kind": "tts", "text": nfc(text)}
    if voice:
        speaker["voice"] = voice
    return {
        "id": bulletin_id or f"khan-{new_id()}",
        "title": nfc(title),
        "level": "emergency",
        "screen": {"kind": "text", "text": nfc(text)},
        "speaker": speaker,
    }


def cmd_emergency_start(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    if args.bulletin_file:
        try:
            bulletin = json.loads(Path(args.bulletin_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ControlError(f"cannot read {args.bulletin_file}: {exc}") from None
        if not isinstance(bulletin, dict):
            raise ControlError(f"{args.bulletin_file}: a bulletin is a JSON object")
    elif args.title and args.text:
        bulletin = emergency_bulletin(args.title, args.text, args.id, args.voice)
    else:
        raise ControlError("give --bulletin-file, or --title and --text")
    body: dict[str, Any] = {"bulletin": bulletin}
    if args.repeat_every is not None:
        body["repeat_every_s"] = args.repeat_every
    doc = make_document(key, "emergency.start", args.target, body, ttl_s=args.ttl)
    return publish_and_follow(args, [doc])


def cmd_emergency_stop(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    body = {"ref": args.ref} if args.ref else {}
    doc = make_document(key, "emergency.stop", args.target, body, ttl_s=args.ttl)
    return publish_and_follow(args, [doc])
