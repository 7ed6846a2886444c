"""The simulator's shared wake-up thread keeps the daemon's contract: the latest request of a
device replaces its earlier one, ``None`` cancels, and a wake-up is ``post("tick", None)``."""

from __future__ import annotations

import queue
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetsim.wakeups import SharedWakeups


def test_latest_request_wins_and_none_cancels() -> None:
    shared = SharedWakeups()
    posted: queue.Queue[tuple[str, str, Any]] = queue.Queue()
    a = shared.for_device(lambda kind, payload: posted.put(("a", kind, payload)))
    b = shared.for_device(lambda kind, payload: posted.put(("b", kind, payload)))
    shared.start()
    try:
        now = datetime.now(UTC)
        a(now + timedelta(days=1))
        a(now)  # replaces the request for tomorrow
        b(now + timedelta(days=1))
        b(None)  # cancelled
        assert posted.get(timeout=5) == ("a", "tick", None)
        b(now)
        assert posted.get(timeout=5) == ("b", "tick", None)
        assert shared._wanted == {}  # nothing left to fire: tomorrow's requests were replaced
    finally:
        shared.stop()
    assert posted.empty()
