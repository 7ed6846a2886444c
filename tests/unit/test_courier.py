"""agent.courier: the outbox goes to the link in order, a window at a time, and leaves the
store only when the broker acknowledged it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.courier import Courier
from agent.store import Store
from tests.unit.fakes import FakePublisher

T0 = 1_795_500_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "agent.db")
    yield s
    s.close()


@pytest.fixture
def link() -> FakePublisher:
    return FakePublisher()


def fill(store: Store, count: int, qos: int = 1, start: int = 0) -> None:
    for n in range(start, start + count):
        store.enqueue("playlog", f"ttcs/v1/dev/d1/playlog/{n}", f"entry {n}".encode(), qos, T0)


def test_hands_rows_in_order(store: Store, link: FakePublisher) -> None:
    fill(store, 5)
    courier = Courier(store, link)
    assert courier.pump() == 5
    assert [p.payload for p in link.published] == [f"entry {n}".encode() for n in range(5)]
    assert all(p.qos == 1 and not p.retain for p in link.published)
    assert courier.in_flight == 5
    assert store.outbox_size() == 5  # nothing leaves before the broker says so


def test_window_bounds_what_is_in_flight(store: Store, link: FakePublisher) -> None:
    fill(store, 50)
    courier = Courier(store, link, window=32)
    assert courier.pump() == 32
    assert courier.pump() == 0  # window full
    for p in link.published[:5]:
        courier.delivered(p.mid, True, "")
    assert courier.in_flight == 27
    assert courier.pump() == 5
    assert [p.payload for p in link.published] == [f"entry {n}".encode() for n in range(37)]


def test_delivered_removes_rows(store: Store, link: FakePublisher) -> None:
    fill(store, 3)
    courier = Courier(store, link)
    courier.pump()
    first, second, third = link.published
    courier.delivered(second.mid, True, "")
    assert [i.payload for i in store.pending()] == [b"entry 0", b"entry 2"]
    courier.delivered(first.mid, False, "quota exceeded")  # a refusal is final too
    courier.delivered(third.mid, True, "")
    assert store.outbox_size() == 0
    assert courier.in_flight == 0


def test_unknown_or_repeated_acknowledgement_is_ignored(store: Store, link: FakePublisher) -> None:
    fill(store, 2)
    courier = Courier(store, link)
    courier.pump()
    courier.delivered(9999, True, "")
    courier.delivered(link.published[0].mid, True, "")
    courier.delivered(link.published[0].mid, True, "")
    assert [i.payload for i in store.pending()] == [b"entry 1"]
    assert courier.in_flight == 1


def test_not_connected_hands_nothing(store: Store, link: FakePublisher) -> None:
    fill(store, 3)
    link.connected = False
    courier = Courier(store, link)
    assert courier.pump() == 0
    assert link.published == []
    link.connected = True
    assert courier.pump() == 3


def test_rows_added_later_follow(store: Store, link: FakePublisher) -> None:
    fill(store, 2)
    courier = Courier(store, link)
    courier.pump()
    fill(store, 2, start=2)
    assert courier.pump() == 2
    assert [p.payload for p in link.published] == [f"entry {n}".encode() for n in range(4)]


def test_handed_rows_are_not_handed_again_to_the_same_client(
    store: Store, link: FakePublisher
) -> None:
    fill(store, 3)
    courier = Courier(store, link)
    courier.pump()
    link.connected = False  # paho resends its own in-flight messages after a reconnect
    link.connected = True
    assert courier.pump() == 0
    assert len(link.published) == 3


def test_reset_hands_everything_again(store: Store, link: FakePublisher) -> None:
    fill(store, 4)
    courier = Courier(store, link)
    courier.pump()
    courier.delivered(link.published[0].mid, True, "")
    courier.reset()  # a new client: what the old one held is lost
    assert courier.in_flight == 0
    assert courier.pump() == 3
    assert [p.payload for p in link.published[4:]] == [b"entry 1", b"entry 2", b"entry 3"]
    for p in link.published[4:]:
        courier.delivered(p.mid, True, "")
    assert store.outbox_size() == 0


def test_stale_acknowledgement_after_reset_is_ignored(store: Store, link: FakePublisher) -> None:
    fill(store, 1)
    courier = Courier(store, link)
    courier.pump()
    old_mid = link.published[0].mid
    courier.reset()
    fill(store, 1, start=1)
    link._next_mid = 100  # the new client numbers its messages differently
    courier.pump()
    courier.delivered(old_mid, True, "")
    assert store.outbox_size() == 2


def test_a_restart_hands_everything_again(store: Store, link: FakePublisher) -> None:
    fill(store, 3)
    Courier(store, link).pump()
    again = FakePublisher()
    assert Courier(store, again).pump() == 3


def test_qos0_rows_leave_at_once(store: Store, link: FakePublisher) -> None:
    fill(store, 2, qos=0)
    fill(store, 1, qos=1, start=2)
    courier = Courier(store, link)
    assert courier.pump() == 3
    assert [p.qos for p in link.published] == [0, 0, 1]
    assert courier.in_flight == 1
    assert [i.payload for i in store.pending()] == [b"entry 2"]


def test_qos0_rows_do_not_use_the_window(store: Store, link: FakePublisher) -> None:
    fill(store, 10, qos=0)
    courier = Courier(store, link, window=4)
    assert courier.pump() == 4
    assert courier.pump() == 4
    assert courier.pump() == 2
    assert store.outbox_size() == 0


def test_reads_the_outbox_only_when_it_has_new_rows(store: Store, link: FakePublisher) -> None:
    fill(store, 2)
    courier = Courier(store, link)
    assert courier.pump() == 2
    store.close()  # a query now would fail: pumping with nothing new must not ask
    assert courier.pump() == 0
