"""Signing and sending: ``send`` (a command) and ``program push``, then following the acks."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from controlplane.errors import ControlError
from controlplane.follow import await_sync, synchronized_speech
from controlplane.keys import SigningKey, make_document
from controlplane.session import Session
from protocol import Topics

FINAL = {"done", "failed", "rejected", "duplicate"}


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.body_file:
        body = json.loads(Path(args.body_file).read_text(encoding="utf-8"))
    elif args.body:
        body = json.loads(args.body)
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def cmd_send(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    try:
        body = _body(args)
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read the body: {exc}") from None
    doc = make_document(key, args.type, args.target, body, ttl_s=args.ttl)
    topics = Topics(args.prefix)
    payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    expect = (
        args.expect if args.expect is not None else (1 if args.target.startswith("dev:") else 0)
    )
    synchronized = args.type == "play.now" and synchronized_speech(doc["body"])
    subs = [topics.dev("+", "ack")]
    if synchronized:
        subs += [topics.dev("+", leaf) for leaf in ("playlog", "state", "status")]
    with Session(args, subs) as session:
        session.link.publish(topics.for_target(args.target, "cmd"), payload, qos=1)
        print(f"sent {args.type} {doc['id']} to {args.target}", file=sys.stderr)
        others: list[tuple[str, bytes]] = []
        finals: dict[str, str] = {}
        status = await_acks(session, doc["id"], args.wait, expect, others, finals)
        if not synchronized:
            return status
        sync = await_sync(session, doc, args.target, finals, others, args.sync_wait)
        return status if status != 0 else sync


def await_acks(
    session: Session,
    doc_id: str,
    wait_s: float,
    expect: int,
    others: list[tuple[str, bytes]] | None = None,
    finals: dict[str, str] | None = None,
) -> int:
    """Print acks of ``doc_id`` until ``expect`` devices answered finally (0: until ``wait_s``).
    Other messages go to ``others``; the first final status of each device to ``finals``."""
    deadline = time.monotonic() + wait_s
    finals = {} if finals is None else finals
    while time.monotonic() < deadline and (expect == 0 or len(finals) < expect):
        item = session.next(deadline - time.monotonic())
        if item is None:
            break
        topic, payload = item
        if not topic.endswith("/ack"):
            if others is not None:
                others.append((topic, payload))
            continue
        try:
            ack = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(ack, dict) or ack.get("cmd") != doc_id:
            continue
        device = topic.split("/")[-2]
        print(
            f"{device:<24} {ack.get('status'):<10} {ack.get('reason') or '':<16} "
            f"{ack.get('detail', '')}"
        )
        sys.stdout.flush()
        if ack.get("status") in FINAL:
            # The first final ack counts: a later "duplicate" (a redelivery) does not undo "done".
            finals.setdefault(device, str(ack["status"]))
    if not finals:
        print("no final ack before the timeout", file=sys.stderr)
        return 4
    if expect and len(finals) < expect:
        print(f"only {len(finals)} of {expect} devices answered", file=sys.stderr)
        return 4
    return 0 if all(s == "done" for s in finals.values()) else 1


def cmd_program_push(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    try:
        body = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read {args.file}: {exc}") from None
    if not isinstance(body, dict):
        raise ControlError(f"{args.file}: a program body is a JSON object")
    if args.version is not None:
        body["version"] = args.version
    doc = make_document(key, "program", args.target, body, ttl_s=args.ttl)
    topics = Topics(args.prefix)
    payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    with Session(args, [topics.dev("+", "ack")]) as session:
        session.link.publish(topics.for_target(args.target, "program"), payload, 1, retain=True)
        print(
            f"pushed program v{body.get('version')} {doc['id']} to {args.target}", file=sys.stderr
        )
        expect = 1 if args.target.startswith("dev:") else 0
        return await_acks(session, doc["id"], args.wait, expect) if args.wait else 0
