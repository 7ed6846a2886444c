"""One wake-up thread for all the devices of a process, in place of one scheduler each.

The daemon's ``Wakeup`` runs an APScheduler ``BackgroundScheduler`` per agent: a thread, and a
pool thread each time it fires. Hundreds of devices in one process would each carry those for
a timer that fires every few seconds at most. This keeps the same contract (a device asks to be
woken at one instant; a new request replaces the old one; ``None`` cancels) with one heap and
one thread, and wakes a device exactly as the daemon does: a ``Tick`` into its inbox.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from agent.events import Event, Tick

Post = Callable[[Event], None]


class SharedWakeups:
    """A heap of (instant, device) on one thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []  # (POSIX time, generation, device)
        self._wanted: dict[int, int] = {}  # device -> generation of its current request
        self._posts: dict[int, Post] = {}
        self._gen = itertools.count()
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="wakeups", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(5)

    def for_device(self, post: Post) -> DeviceWake:
        """The wake-up function of one device (``WakeFactory`` of ``fleetsim.device``)."""
        device = next(self._ids)
        self._posts[device] = post
        return DeviceWake(self, device)

    def request(self, device: int, when: datetime | None) -> None:
        with self._cond:
            if when is None:
                self._wanted.pop(device, None)
                return
            gen = next(self._gen)
            self._wanted[device] = gen
            heapq.heappush(self._heap, (when.astimezone(UTC).timestamp(), gen, device))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._heap and self._heap[0][0] <= time.time():
                        break
                    timeout = self._heap[0][0] - time.time() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, gen, device = heapq.heappop(self._heap)
                due = self._wanted.get(device) == gen
                if due:
                    del self._wanted[device]
            if due:  # outside the lock: post takes the director's queue
                self._posts[device](Tick())


class DeviceWake:
    """One device's handle on the shared thread; starting and stopping it are the thread's."""

    def __init__(self, shared: SharedWakeups, device: int) -> None:
        self.shared = shared
        self.device = device

    def __call__(self, when: datetime | None) -> None:
        self.shared.request(self.device, when)

    def start(self) -> None:
        """The shared thread is started once, by the process."""

    def stop(self) -> None:
        self.shared.request(self.device, None)
