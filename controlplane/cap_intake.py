"""``cap send FILE`` and ``cap watch URL|DIR``: CAP 1.2 alerts planned by ``controlplane.cap``,
signed, published in order on one connection and followed with the fan-out view.

An alert is recorded in the ledger as soon as its commands are published, so it is acted on
once however often a feed delivers it. ``--dry-run`` prints the plan and sends nothing (no
file is stored, nothing recorded).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests

from controlplane.cap import CapConfigError, CapSettings, Ledger, Plan, load_settings, plan_alert
from controlplane.cap.feed import FeedError, alert_links
from controlplane.db import redact
from controlplane.errors import ControlError
from controlplane.fanout import FanOut
from controlplane.keys import SigningKey, make_document
from controlplane.media import MediaFolder
from controlplane.send import publish_and_follow

FEED_MAX_BYTES = 4 * 1024 * 1024
BACKOFF_MAX_S = 600.0
REFUSED = 3  # exit status of `cap send` for a refused alert: nothing was sent


class FetchError(Exception):
    """A document that could not be fetched; the message says why."""


def _settings(path: Path) -> CapSettings:
    try:
        return load_settings(path)
    except CapConfigError as exc:
        raise ControlError(str(exc)) from None


def _ledger(settings: CapSettings, args: argparse.Namespace) -> Ledger:
    """The ledger: in the control plane's store (``--db`` / env TTCS_DB), else in the file
    ``[cap] ledger``; a dry run without either reads an empty one."""
    from controlplane.db import DatabaseError
    from controlplane.migrations import SchemaError

    where: str | Path | None = args.db or settings.ledger
    if where is None:
        if args.dry_run:
            return Ledger.open(":memory:")
        raise ControlError(
            "no ledger: give the control plane's store (--db, env TTCS_DB) or set [cap] ledger "
            "(it makes each alert act once)"
        )
    try:
        return Ledger.open(where)
    except (DatabaseError, SchemaError, ValueError, OSError) as exc:
        raise ControlError(f"cannot open the ledger {redact(str(where))}: {exc}") from None


def _log(line: str) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {line}", file=sys.stderr)
    sys.stderr.flush()


def act_on(
    args: argparse.Namespace, settings: CapSettings, document: bytes, *, watching: bool = False
) -> int:
    """Plan one alert and, unless a dry run, send its commands and follow them. Returns the
    exit status: 0 all done (or nothing to send), 1 some failed, 3 refused, 4 some did not
    answer. Watching, one log line per alert; otherwise the plan, the acks and the table."""
    now = datetime.now(UTC)
    media = None
    if settings.media_dir is not None and settings.media_url is not None:
        media = MediaFolder(settings.media_dir, settings.media_url, store=not args.dry_run)
    with _ledger(settings, args) as ledger:
        plan = plan_alert(document, settings, ledger, now, media)
        if not watching or args.dry_run:
            for line in plan.describe():
                print(line)
        if plan.refused:
            _log(f"refused {_name(plan)}: {plan.refusal}")
            return REFUSED
        if args.dry_run:
            print(f"dry run: nothing sent ({len(plan.commands)} command(s) planned)")
            return 0
        if not plan.commands:
            ledger.record(plan, now)
            _log(f"acted on {_name(plan)}: nothing to send ({'; '.join(plan.notes)})")
            return 0
        key = SigningKey.load(args.key)
        docs = [
            make_document(key, c.type, c.target, c.body, ttl_s=c.ttl_s(now), now=now, doc_id=c.id)
            for c in plan.commands
        ]
        fans: list[FanOut] = []
        status = publish_and_follow(
            args,
            docs,
            after_publish=lambda: ledger.record(plan, now),
            quiet=watching,
            fans_out=fans,
        )
    if watching:
        sent = ", ".join(f"{d['type']} {d['target']}" for d in docs)
        counts = [f.counts() for f in fans]
        tally = {k: sum(c[k] for c in counts) for k in ("done", "failed", "rejected", "waiting")}
        _log(
            f"acted on {_name(plan)}: {sent} ("
            + ", ".join(f"{v} {k}" for k, v in tally.items())
            + ")"
        )
    return status


def _name(plan: Plan) -> str:
    if plan.alert is None:
        return "a document"
    return f"{plan.alert.msg_type} {plan.alert.identifier} from {plan.alert.sender}"


def cmd_cap_send(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    try:
        with args.file.open("rb") as fh:
            document = fh.read(settings.max_document_bytes + 1)
    except OSError as exc:
        raise ControlError(f"cannot read {args.file}: {exc.strerror}") from None
    return act_on(args, settings, document)


def fetch(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """The body of an http(s) URL, at most ``max_bytes`` (one more byte: refused as too large
    by the caller's check)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"{url}: only http(s)")
    try:
        with requests.get(url, timeout=timeout_s, stream=True) as answer:
            answer.raise_for_status()
            data = b""
            for chunk in answer.iter_content(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    break
            return data[: max_bytes + 1]
    except requests.RequestException as exc:
        raise FetchError(f"{url}: {exc}") from None


def _new_documents(source: str, settings: CapSettings, done: set[str]) -> list[tuple[str, bytes]]:
    """The alerts of the feed or folder not handled yet in this run, as (name, bytes)."""
    limit = settings.max_document_bytes
    if urlsplit(source).scheme in ("http", "https"):
        feed = fetch(source, FEED_MAX_BYTES, settings.resource_timeout_s)
        if len(feed) > FEED_MAX_BYTES:
            raise FeedError(f"the feed is over {FEED_MAX_BYTES} bytes")
        found = []
        for link in alert_links(feed, source):
            if link in done:
                continue
            try:
                found.append((link, fetch(link, limit, settings.resource_timeout_s)))
            except FetchError as exc:
                _log(f"cannot fetch {exc}; trying again at the next look")
        return found
    folder = Path(source)
    if not folder.is_dir():
        raise FeedError(f"{source}: neither an http(s) URL nor a folder")
    found = []
    for path in sorted(folder.glob("*.xml")):
        stat = path.stat()
        name = f"{path}@{stat.st_mtime_ns}:{stat.st_size}"  # a file written again is new
        if name not in done:
            with path.open("rb") as fh:
                found.append((name, fh.read(limit + 1)))
    return found


def cmd_cap_watch(args: argparse.Namespace) -> int:
    """Look at the feed or folder every ``--interval`` seconds; act on each new alert once.
    A feed that cannot be read is tried again later, the pause doubling up to 10 minutes."""
    settings = _settings(args.config)
    _ledger(settings, args).close()  # a ledger that cannot be opened stops us now
    end = time.monotonic() + args.duration if args.duration else None
    done: set[str] = set()
    pause = args.interval
    _log(f"watching {args.source} every {args.interval:g} s")
    while True:
        try:
            for name, document in _new_documents(args.source, settings, done):
                done.add(name)
                act_on(args, settings, document, watching=True)
            pause = args.interval
        except (FeedError, FetchError, OSError) as exc:
            pause = min(BACKOFF_MAX_S, pause * 2)
            _log(f"cannot read {args.source}: {exc}; trying again in {pause:g} s")
        left = pause if end is None else min(pause, end - time.monotonic())
        if left <= 0:
            return 0
        time.sleep(left)
