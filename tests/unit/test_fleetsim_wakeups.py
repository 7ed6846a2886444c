"""The simulator's shared wake-up thread keeps the daemon's contract: the latest request of a
device replaces its earlier one, ``None`` cancels, and a wake-up is a ``Tick`` posted."""

from __future__ import annotations

import queue
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agent.events import Event, Tick
from fleetsim.wakeups import SharedWakeups


def test_latest_request_wins_and_none_cancels() -> None:
    shared = SharedWakeups()
    posted: queue.Queue[tuple[str, Event]] = queue.Queue()

    def to(name: str) -> Callable[[Event], None]:
        return lambda event: posted.put((name, event))

    a = shared.for_device(to("a"))
    b = shared.for_device(to("b"))
    shared.start()
    try:
        now = datetime.now(UTC)
        a(now + timedelta(days=1))
        a(now)  # replaces the request for tomorrow
        b(now + timedelta(days=1))
        b(None)  # cancelled
        assert posted.get(timeout=5) == ("a", Tick())
        b(now)
        assert posted.get(timeout=5) == ("b", Tick())
        assert shared._wanted == {}  # nothing left to fire: tomorrow's requests were replaced
    finally:
        shared.stop()
    assert posted.empty()
