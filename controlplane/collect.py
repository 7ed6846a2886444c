"""The collector: what the devices report, from the broker into the store.

    python -m controlplane.collect --db postgresql://ttcs@db.q10/ttcs \\
        --broker mqtts://broker.q10.example.vn:8883 --client-id ttcs-collector-1

It subscribes to every device's ``state``, ``status``, ``ack``, ``event`` and ``playlog``
through an MQTT 5 shared subscription (``$share/GROUP/ttcs/v1/dev/+/…``): run several
collectors with the same ``--group`` and the broker hands each message to one of them, so
ingestion scales out. Each collector needs its own stable ``--client-id``: its session is
persistent, so the broker keeps its share of the messages while it is down (killed, restarted,
upgraded) and delivers them when it comes back under the same id. Mosquitto 2.0 goes on
handing a stopped collector its share until the session expires, and then drops what it held:
run collectors under a supervisor that restarts them (docs/fleet.md).

Nothing is lost and nothing is stored twice: messages are written in batches, one committed
transaction each, and acknowledged to the broker (PUBACK) only after the commit. A collector
killed between the two gets those messages again and the store ignores what it already has
(playlog entries by id, acks and events by payload). While the database is unreachable the
batch waits, unacknowledged, and is written when it answers again.

A shared subscription gets no retained messages, so at start a short clean session reads the
retained ``state`` and ``status`` of every device first (the fleet view is right at once).
Where the broker makes the user name the client id (``use_username_as_clientid``), that clean
session would replace the collector's own: ``--no-retained-read`` skips it.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from controlplane.db import DatabaseError, redact
from controlplane.errors import ControlError
from controlplane.ingest import Message, Rejected, Report, device_topics, parse
from controlplane.migrations import SchemaError
from controlplane.session import broker_link
from controlplane.store import Ingested, Store, now_ms
from protocol import DEFAULT_PREFIX
from protocol.link import LinkHandler, LinkSettings, MqttLink, Token

log = logging.getLogger(__name__)

DEFAULT_GROUP = "ttcs-collectors"
BATCH_MAX = 500  # messages written in one transaction...
BATCH_QUIET_S = 0.05  # ...a batch ends when nothing more arrives for this long...
BATCH_WINDOW_S = 0.2  # ...or after this long
_RETAINED_QUIET_S = 0.5  # retained messages follow the SUBACK at once: a pause ends them
_RETAINED_MAX_S = 10.0
_DB_RETRY_MAX_S = 30.0


class CollectError(Exception):
    """The collector cannot start; the message says why."""


@dataclass(frozen=True)
class Inbound:
    """A message from the broker, with the token to acknowledge it by."""

    message: Message
    token: Token | None


class _Queue(LinkHandler):
    """Hands messages from the link's network thread to the collector's loop."""

    def __init__(self) -> None:
        self.items: queue.Queue[Inbound] = queue.Queue()

    def message(self, topic: str, payload: bytes, token: Token | None, retained: bool) -> None:
        self.items.put(Inbound(Message(topic, payload, now_ms()), token))


def subscriptions(prefix: str, group: str) -> list[str]:
    """The shared subscriptions of a collector in ``group``."""
    return [f"$share/{group}/{topic}" for topic in device_topics(prefix).values()]


def next_batch(items: queue.Queue[Inbound], wait_s: float) -> list[Inbound]:
    """The next messages: the first within ``wait_s``, then whatever follows at once."""
    try:
        batch = [items.get(timeout=max(0.0, wait_s))]
    except queue.Empty:
        return []
    end = time.monotonic() + BATCH_WINDOW_S
    while len(batch) < BATCH_MAX and (left := end - time.monotonic()) > 0:
        try:
            batch.append(items.get(timeout=min(BATCH_QUIET_S, left)))
        except queue.Empty:
            break
    return batch


def read(batch: list[Inbound], prefix: str) -> list[Report]:
    """The storable reports of a batch; what cannot be stored is logged (and dropped)."""
    reports: list[Report] = []
    rejected: list[Rejected] = []
    for item in batch:
        parsed = parse(item.message, prefix)
        if isinstance(parsed, Rejected):
            rejected.append(parsed)
        elif parsed is not None:
            reports.append(parsed)
    if rejected:
        # One line per batch, not per message: a flood of garbage is not a flood of logs.
        first = rejected[0]
        log.warning(
            "dropped %d message(s) that cannot be stored, e.g. on %s: %s",
            len(rejected),
            first.topic,
            first.why,
        )
    return reports


class Acknowledger(Protocol):
    """What the collector needs of the link: ``MqttLink.ack``."""

    def ack(self, token: Token | None) -> None:
        """Send the PUBACK of an inbound message."""


class Collector:
    """Batches from ``inbound`` into the store, each acknowledged once committed."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        link: Acknowledger,
        inbound: queue.Queue[Inbound],
        prefix: str,
        store: Store | None = None,
    ) -> None:
        self._open_store = open_store
        self.link = link
        self.inbound = inbound
        self.prefix = prefix
        self.store = store  # opened (again) on first use, and after a database error
        self.total = Ingested()

    def write(self, reports: list[Report], stop: threading.Event) -> bool:
        """Store ``reports``, waiting out a database outage; False when stopped first."""
        delay = 0.5
        while True:
            try:
                if self.store is None:
                    self.store = self._open_store()
                self.total.add(self.store.ingest(reports))
                return True
            except DatabaseError as exc:
                log.warning("database: %s; trying again in %.1f s", exc, delay)
                if self.store is not None:
                    try:
                        self.store.close()
                    except Exception:
                        log.debug("closing the failed connection", exc_info=True)
                    self.store = None
            if stop.wait(delay):
                return False
            delay = min(_DB_RETRY_MAX_S, delay * 2)

    def run(self, stop: threading.Event, duration_s: float | None = None) -> Ingested:
        """Collect until ``stop`` is set (or for ``duration_s``); return what was stored."""
        deadline = None if not duration_s else time.monotonic() + duration_s
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            batch = next_batch(self.inbound, wait)
            if not batch:
                continue
            if not self.write(read(batch, self.prefix), stop):
                break  # not acknowledged: the broker delivers them again
            # Only now, with the batch committed: PUBACK.
            for item in batch:
                self.link.ack(item.token)
            log.info("stored and acknowledged a batch of %d message(s)", len(batch))
        return self.total


def read_retained(settings: LinkSettings, prefix: str) -> list[Message]:
    """The retained ``state`` and ``status`` of every device, through a clean session."""
    inbound = _Queue()
    topics = device_topics(prefix)
    clean = replace(
        settings,
        client_id=f"{settings.client_id}-retained-{uuid.uuid4().hex[:6]}",
        persistent=False,
        manual_ack=False,
        subscriptions=[topics["state"], topics["status"]],
    )
    link = MqttLink(clean, inbound)
    link.start()
    try:
        if not link.wait_connected(10.0):
            raise CollectError(f"cannot reach the broker at {settings.host}:{settings.port}")
        messages: list[Message] = []
        end = time.monotonic() + _RETAINED_MAX_S
        while (left := end - time.monotonic()) > 0:
            try:
                messages.append(inbound.items.get(timeout=min(_RETAINED_QUIET_S, left)).message)
            except queue.Empty:
                break
        return messages
    finally:
        link.stop()


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m controlplane.collect",
        description="Collect what the devices report into the control plane's database.",
    )
    parser.add_argument(
        "--db",
        default=env("TTCS_DB"),
        help="sqlite:PATH, a file path, or postgresql://… (env TTCS_DB)",
    )
    parser.add_argument("--broker", default=env("TTCS_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--ca-file", type=Path, default=env("TTCS_CA_FILE"))
    parser.add_argument("--cert-file", type=Path, default=env("TTCS_CERT_FILE"))
    parser.add_argument("--key-file", type=Path, default=env("TTCS_KEY_FILE"))
    parser.add_argument(
        "--username", default=env("TTCS_USERNAME"), help="password from env TTCS_PASSWORD"
    )
    parser.add_argument("--prefix", default=env("TTCS_PREFIX", DEFAULT_PREFIX))
    parser.add_argument(
        "--group", default=DEFAULT_GROUP, help="shared-subscription group of the collectors"
    )
    parser.add_argument(
        "--client-id",
        default=f"ttcs-collector-{socket.gethostname()}",
        help="this collector's own, stable MQTT client id (its persistent session)",
    )
    parser.add_argument(
        "--session-expiry",
        type=int,
        default=7 * 86400,
        help="seconds the broker keeps this collector's session (and its share) while it is "
        "away (default 7 days; see docs/fleet.md for clustered brokers)",
    )
    parser.add_argument(
        "--no-retained-read",
        dest="retained_read",
        action="store_false",
        help="skip the clean session that reads the retained state and status at start (for "
        "brokers with use_username_as_clientid, where it would replace this collector's session)",
    )
    parser.add_argument("--duration", type=float, default=0.0, help="stop after N seconds")
    parser.add_argument("--verbose", action="store_true", help="log every batch")
    return parser


def link_settings(args: argparse.Namespace) -> LinkSettings:
    """The collector's persistent, manually acknowledged session."""
    try:
        return broker_link(
            args,
            args.client_id,
            persistent=True,
            session_expiry_s=args.session_expiry,
            subscriptions=subscriptions(args.prefix, args.group),
            reconnect_min_s=0.5,
            reconnect_max_s=5.0,
            manual_ack=True,
        )
    except ControlError as exc:
        raise CollectError(str(exc)) from None


def collect(args: argparse.Namespace, stop: threading.Event) -> Ingested:
    """Run one collector as ``args`` say, until ``stop`` (or ``--duration``)."""
    if not args.db:
        raise CollectError("no database: --db URL or env TTCS_DB")
    settings = link_settings(args)
    try:
        store = Store.open(args.db)
    except (DatabaseError, SchemaError, ValueError) as exc:
        raise CollectError(str(exc)) from None
    inbound = _Queue()
    link = MqttLink(settings, inbound)
    collector = Collector(lambda: Store.open(args.db), link, inbound.items, args.prefix, store)
    try:
        found = read_retained(settings, args.prefix) if args.retained_read else []
        retained = read([Inbound(m, None) for m in found], args.prefix)
        if retained:
            collector.write(retained, stop)
        link.start()
        if not link.wait_connected(10.0):
            raise CollectError(f"cannot reach the broker at {settings.host}:{settings.port}")
        print(
            f"collector {settings.client_id}: subscribed in group {args.group}, "
            f"writing to {redact(args.db)}",
            file=sys.stderr,
            flush=True,
        )
        return collector.run(stop, args.duration or None)
    finally:
        link.stop()
        if collector.store is not None:
            collector.store.close()


def main(argv: list[str] | None = None) -> int:
    """The collector's entry point (``python -m controlplane.collect``)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()

    def stop_on_signal(signum: int, _frame: Any) -> None:
        stop.set()  # SIGTERM takes the path of Ctrl-C: finish the batch, then leave

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    try:
        done = collect(args, stop)
    except CollectError as exc:
        print(f"collect: {exc}", file=sys.stderr)
        return 2
    print(
        f"collected {done.messages} message(s): {done.entries} new playlog entries "
        f"({done.duplicates} already stored), {done.acks} acks, {done.events} events, "
        f"{done.states + done.statuses} states and statuses, from {len(done.devices)} device(s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
