"""controlplane.collect: a message is acknowledged only once its batch is committed; while the
database is down nothing is acknowledged; garbage is dropped (and acknowledged)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence

from controlplane.collect import Collector, Inbound, next_batch, subscriptions
from controlplane.db import DatabaseError
from controlplane.ingest import Report
from controlplane.store import Ingested, Store
from protocol.link import Token
from tests.helpers import wait_for
from tests.unit.controlplane.util import DEV1, PREFIX, entry, message, playlog


class FlakyStore(Store):
    """A real store whose database is down for the first ``outages`` ingests."""

    def __init__(self, url: str, outages: int) -> None:
        super().__init__(Store.open(url).db)
        self.outages = outages

    def ingest(self, reports: Sequence[Report]) -> Ingested:
        if self.outages > 0:
            self.outages -= 1
            raise DatabaseError("connection refused")
        return super().ingest(reports)


class RecordingLink:
    """Records PUBACKs, and what the database held at each one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acks: list[tuple[Token | None, list[str]]] = []

    def ack(self, token: Token | None) -> None:
        with Store.open(self.url) as other:  # another connection: only committed rows
            self.acks.append((token, other.playlog_ids()))


def _inbound(*items: tuple[bytes | None, int]) -> queue.Queue[Inbound]:
    q: queue.Queue[Inbound] = queue.Queue()
    for n, (payload, mid) in enumerate(items):
        doc = playlog(DEV1, entry(f"e{n}"))
        msg = message(DEV1, "playlog", doc)
        if payload is not None:
            msg = type(msg)(msg.topic, payload, msg.received_ms)
        q.put(Inbound(msg, (1, mid, 1)))
    return q


def _running(collector: Collector) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,))
    thread.start()
    return stop, thread


def test_acknowledged_only_after_the_commit(store_url: str) -> None:
    link = RecordingLink(store_url)
    inbound = _inbound((None, 7), (None, 8), (b"not json", 9))
    collector = Collector(lambda: Store.open(store_url), link, inbound, PREFIX)
    stop, thread = _running(collector)
    try:
        wait_for(lambda: len(link.acks) == 3, 10, "three PUBACKs")
    finally:
        stop.set()
        thread.join(10)
    assert [token for token, _ in link.acks] == [(1, 7, 1), (1, 8, 1), (1, 9, 1)]
    # At the first PUBACK the whole batch was already in the database.
    assert link.acks[0][1] == ["e0", "e1"]
    assert collector.total.entries == 2
    assert collector.store is not None
    collector.store.close()


def test_nothing_is_acknowledged_while_the_database_is_down(store_url: str) -> None:
    link = RecordingLink(store_url)
    inbound = _inbound((None, 1))
    flaky = FlakyStore(store_url, outages=2)
    opened: list[Store] = []

    def reopen() -> Store:
        # The collector drops a failed connection and opens a new one; this one works.
        store = Store.open(store_url)
        opened.append(store)
        return store

    collector = Collector(reopen, link, inbound, PREFIX, store=flaky)
    stop, thread = _running(collector)
    try:
        wait_for(lambda: link.acks, 10, "the PUBACK once the database is back")
    finally:
        stop.set()
        thread.join(10)
    assert flaky.outages == 1  # failed once, then replaced by a new connection
    assert len(opened) == 1
    assert link.acks == [((1, 1, 1), ["e0"])]
    opened[0].close()


def test_stopped_during_an_outage_acknowledges_nothing(store_url: str) -> None:
    link = RecordingLink(store_url)
    inbound = _inbound((None, 1))

    def never() -> Store:
        raise DatabaseError("still down")

    collector = Collector(never, link, inbound, PREFIX, store=FlakyStore(store_url, outages=1))
    stop, thread = _running(collector)
    time.sleep(1.0)  # two attempts and their pause
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert link.acks == []  # the broker delivers it again to whoever runs next


def test_batches_and_subscriptions() -> None:
    q: queue.Queue[Inbound] = queue.Queue()
    assert next_batch(q, 0.01) == []
    for n in range(3):
        q.put(Inbound(message(DEV1, "state", {"online": True}, n), None))
    assert len(next_batch(q, 0.01)) == 3
    assert subscriptions("ttcs/v1", "g") == [
        "$share/g/ttcs/v1/dev/+/state",
        "$share/g/ttcs/v1/dev/+/status",
        "$share/g/ttcs/v1/dev/+/ack",
        "$share/g/ttcs/v1/dev/+/event",
        "$share/g/ttcs/v1/dev/+/playlog",
    ]
