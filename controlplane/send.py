"""Signing and sending: ``send`` (a command) and ``program push``, then following the acks with
the fan-out view (``controlplane.fanout``): a live progress line, then who did not answer."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controlplane.errors import ControlError
from controlplane.fanout import FanOut, Member, Progress, progress_line, store_members
from controlplane.follow import await_sync, synchronized_speech
from controlplane.keys import SigningKey, make_document
from controlplane.session import Session
from protocol import Topics

FINAL = {"done", "failed", "rejected", "duplicate"}
SETTLE_S = 1.0  # retained state messages arrive within this: no "all answered" before it


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
    if args.to and args.target and args.to != args.target:
        raise ControlError(f"two targets: {args.target} and --to {args.to}")
    args.target = args.to or args.target
    if not args.target:
        raise ControlError("no target: give dev:DEVICE or grp:GROUP, or --to")
    key = SigningKey.load(args.key)
    try:
        body = _body(args)
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read the body: {exc}") from None
    doc = make_document(key, args.type, args.target, body, ttl_s=args.ttl)
    return publish_and_follow(args, [doc])


def known_members(args: argparse.Namespace, target: str) -> dict[str, Member]:
    """The members of ``target`` in the store (``--db``), else none yet (retained states)."""
    db = getattr(args, "db", None)
    return store_members(db, target) if db else {}


def record_sent(url: str, sent: list[tuple[dict[str, Any], str]]) -> None:
    """Keep each (document, topic) in the store before it is published; raises ControlError
    (nothing is published then) when the store cannot take them."""
    from controlplane.db import DatabaseError
    from controlplane.migrations import SchemaError
    from controlplane.store import Store

    try:
        with Store.open(url) as store:
            for doc, topic in sent:
                store.record_command(doc, topic)
    except (DatabaseError, SchemaError, ValueError) as exc:
        raise ControlError(f"cannot record the command in the store, nothing sent: {exc}") from None


def publish_and_follow(
    args: argparse.Namespace,
    docs: list[dict[str, Any]],
    *,
    leaf: str = "cmd",
    after_publish: Callable[[], None] | None = None,
    quiet: bool = False,
    fans_out: list[FanOut] | None = None,
) -> int:
    """Publish signed documents in order on one connection, then follow their acks (and, for
    a synchronized ``play.now``, each device's start). ``leaf`` ``program`` retains them.
    ``after_publish`` runs once all are published; ``quiet`` prints nothing but errors;
    ``fans_out`` receives the answers."""
    topics = Topics(args.prefix)
    synchronized = len(docs) == 1 and docs[0]["type"] == "play.now"
    synchronized = synchronized and synchronized_speech(docs[0]["body"])
    subs = [topics.dev("+", kind) for kind in ("ack", "state", "status")]
    if synchronized:
        subs.append(topics.dev("+", "playlog"))
    fans = [FanOut(d["id"], d["target"], known_members(args, d["target"])) for d in docs]
    db = getattr(args, "db", None)
    if db:
        record_sent(db, [(doc, topics.for_target(doc["target"], leaf)) for doc in docs])
    with Session(args, subs) as session:
        for doc in docs:
            payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
            topic = topics.for_target(doc["target"], leaf)
            session.link.publish(topic, payload, 1, retain=leaf == "program")
            what = f"program v{doc['body'].get('version')}" if leaf == "program" else doc["type"]
            verb = "pushed" if leaf == "program" else "sent"
            if not quiet:
                print(f"{verb} {what} {doc['id']} to {doc['target']}", file=sys.stderr)
        if after_publish is not None:
            after_publish()
        if fans_out is not None:
            fans_out.extend(fans)
        if leaf == "program" and not args.wait:
            return 0
        others: list[tuple[str, bytes]] = []
        expect: int | None = getattr(args, "expect", None)
        as_json = getattr(args, "json", False)
        status = await_acks(session, fans, args.wait, expect, others, as_json, quiet)
        if not synchronized:
            return status
        doc = docs[0]
        sync = await_sync(session, doc, doc["target"], fans[0].finals, others, args.sync_wait)
        return status if status != 0 else sync


def await_acks(
    session: Session,
    fans: list[FanOut],
    wait_s: float,
    expect: int | None = None,
    others: list[tuple[str, bytes]] | None = None,
    as_json: bool = False,
    quiet: bool = False,
) -> int:
    """Follow the acks of each command until its devices answered finally (``expect``: until
    that many did, per command) or ``wait_s`` passed; print each ack (or, ``as_json``, one JSON
    document at the end), a live progress line on stderr and the devices that did not answer.
    Other messages go to ``others``."""
    start = time.monotonic()
    deadline = start + wait_s
    progress = Progress()

    def finished() -> bool:
        if expect is not None:
            return all(len(f.finals) >= (expect or 10**9) for f in fans)
        settle = SETTLE_S if any(f.kind == "grp" for f in fans) else 0.0
        settled = time.monotonic() - start >= min(settle, wait_s)
        return settled and all(f.complete() for f in fans)

    while time.monotonic() < deadline and not finished():
        item = session.next(min(0.5, deadline - time.monotonic()))
        if item is not None:
            topic, payload = item
            if not topic.endswith("/ack") and others is not None:
                others.append((topic, payload))
            for fan in fans:
                ack = fan.take(topic, payload)
                if ack is not None and not (as_json or quiet):
                    device = topic.split("/")[-2]
                    print(
                        f"{device:<24} {ack.get('status'):<10} {ack.get('reason') or '':<16} "
                        f"{ack.get('detail', '')}"
                    )
                    sys.stdout.flush()
        if not quiet:
            elapsed = time.monotonic() - start
            progress.show(progress_line(fans, elapsed), elapsed)
    if not quiet:
        elapsed = time.monotonic() - start
        progress.show(progress_line(fans, elapsed), elapsed, final=True)
    return _outcome(fans, expect, as_json, quiet)


def _outcome(fans: list[FanOut], expect: int | None, as_json: bool, quiet: bool = False) -> int:
    """Print who did not answer (unless ``quiet``) and say how it went: 0 all done, 1 some not
    done, 4 some did not answer (or none did)."""
    finals = [s for f in fans for s in f.finals.values()]
    waiting = sorted({d for f in fans for d in f.waiting()})
    short = bool(expect) and any(len(f.finals) < (expect or 0) for f in fans)
    if as_json and not quiet:
        doc: Any = [f.as_json() for f in fans]
        print(json.dumps(doc[0] if len(fans) == 1 else doc, ensure_ascii=False, indent=2))
    elif waiting and not quiet:
        print(f"{len(waiting)} device(s) did not answer:", file=sys.stderr)
        tables = [f.unanswered_table() for f in fans if f.waiting()]
        for line in tables[0][:1] + [row for table in tables for row in table[1:]]:
            print(line)
    if not finals or short:
        if not quiet:
            print(
                "no final ack before the timeout"
                if not finals
                else f"only {len(finals)} of {(expect or 0) * len(fans)} devices answered",
                file=sys.stderr,
            )
        return 4
    if expect is None and waiting:
        return 4
    return 0 if all(s == "done" for s in finals) else 1


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
    return publish_and_follow(args, [doc], leaf="program")
