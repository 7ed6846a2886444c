"""What the fuzz properties share: the input budget, and a tally of inputs, speed and memory.

``TTCS_FUZZ_INPUTS`` is the number of inputs over the new fuzz targets (default 2,000, the
size ``make test`` runs; ``make fuzz`` sets 100,000). Each property takes its share of it
(``examples``: the new targets' bases add up to 2,000); the director's older properties
scale by the same factor. The tally is
printed at the end of the run (``tests/conftest.py``) as one row per target.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

DEFAULT_INPUTS = 2000
INPUTS = int(os.environ.get("TTCS_FUZZ_INPUTS", str(DEFAULT_INPUTS)))
SCALE = INPUTS / DEFAULT_INPUTS
# Every this many inputs the resident set is read again (reading /proc costs ~20 µs).
RSS_EVERY = 200
# A target whose resident set grows more than this over its run is leaking.
RSS_GROWTH_LIMIT = 256 * 1024 * 1024

F = TypeVar("F", bound=Callable[..., Any])


def examples(base: int) -> int:
    """``base`` inputs at the default budget, scaled to ``TTCS_FUZZ_INPUTS``."""
    return max(1, round(base * SCALE))


def fuzz_settings(base: int) -> settings:
    """Hypothesis settings for a property of ``base`` inputs at the default budget:
    derandomized (a failure replays on every run), no example database, no deadline."""
    return settings(
        max_examples=examples(base),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def rss_bytes() -> int:
    """This process's resident set size now (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Target:
    """The inputs one target has taken in this run."""

    name: str
    inputs: int = 0
    first: float = 0.0  # perf_counter at the first input's start
    last: float = 0.0  # … and at the last one's end
    rss_start: int = 0
    rss_peak: int = 0
    accepted: int = 0
    caught: int = 0  # exceptions a catch-all of the code under test logged

    @property
    def rate(self) -> float:
        """Inputs per second of wall time, Hypothesis's generation included."""
        seconds = self.last - self.first
        return self.inputs / seconds if seconds > 0 else 0.0

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_start


TALLY: dict[str, Target] = {}


class _Catcher(logging.Handler):
    """Keeps the records logged with a traceback: exceptions a catch-all swallowed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.caught: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.caught.append(record)


def target(name: str, catch_all: bool = False) -> Callable[[F], F]:
    """Count each call of a property's body under ``name``, its time and the resident set.

    Only errors are logged inside the body, to a catcher rather than pytest's capture (a
    hundred thousand refusals would otherwise fill it, and the memory figure). An exception
    that code under test caught with a catch-all and logged is still an uncaught one: it fails
    the input, unless ``catch_all`` says that target's catch-all is part of its contract (the
    director answers a bad control request with the error); then it is counted.
    """

    def wrap(body: F) -> F:
        @functools.wraps(body)
        def counted(*args: Any, **kwargs: Any) -> Any:
            entry = TALLY.get(name)
            if entry is None:
                rss = rss_bytes()
                entry = TALLY[name] = Target(name, first=time.perf_counter())
                entry.rss_start = entry.rss_peak = rss
            root = logging.getLogger()
            handlers, level = root.handlers[:], root.level
            catcher = _Catcher()
            root.handlers, root.level = [catcher], logging.ERROR
            try:
                result = body(*args, **kwargs)
            finally:
                root.handlers, root.level = handlers, level
                entry.last = time.perf_counter()
                entry.inputs += 1
                entry.caught += len(catcher.caught)
                if entry.inputs % RSS_EVERY == 0:
                    entry.rss_peak = max(entry.rss_peak, rss_bytes())
            if catcher.caught and not catch_all:
                record = catcher.caught[0]
                raise AssertionError(
                    f"swallowed by a catch-all: {record.getMessage()}\n"
                    + logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
                )
            return result

        return counted  # type: ignore[return-value]

    return wrap


def accepted(name: str) -> None:
    """Note that an input of ``name`` was accepted (the oracle checked it was valid)."""
    TALLY[name].accepted += 1


def check_memory(name: str) -> None:
    """Fail when the target's resident set grew past the limit over its run."""
    entry = TALLY.get(name)
    if entry is None:
        return
    entry.rss_peak = max(entry.rss_peak, rss_bytes())
    assert entry.growth <= RSS_GROWTH_LIMIT, (
        f"{name}: the resident set grew by {entry.growth / 2**20:.0f} MiB over "
        f"{entry.inputs} inputs"
    )


def table() -> list[str]:
    """The tally as a Markdown table."""
    lines = [
        f"fuzz: {sum(t.inputs for t in TALLY.values())} inputs (TTCS_FUZZ_INPUTS={INPUTS})",
        "| target | inputs | accepted | caught by a catch-all | inputs/s | RSS start MiB "
        "| RSS growth MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in sorted(TALLY.values(), key=lambda t: t.name):
        lines.append(
            f"| {t.name} | {t.inputs} | {t.accepted} | {t.caught} | {t.rate:,.0f} | "
            f"{t.rss_start / 2**20:.0f} | {t.growth / 2**20:+.1f} |"
        )
    return lines
