#!/usr/bin/env python3
"""The agent with a stopwatch on each stage of its command path, for ``bench.py --stages``.

    python scripts/stage_times.py OUT.json -m agent run --config FILE

Runs ``ttcs-agent run`` in this process after wrapping the functions a command passes through
with ``time.perf_counter`` stamps (about a microsecond each), and writes, at exit, the
microseconds each stage took per command (p50, p99) to OUT.json:

- ``wake``: from paho's ``on_message`` on the network thread to the director's
  ``on_inbound`` (the inbox hand-off and the director thread's wake-up);
- ``verify``, ``record`` (the one durable transaction), ``pump`` (the courier handing the
  ack to paho), ``puback`` (``MqttLink.ack``), ``on_inbound`` (all of the director's work);
- ``to_wire``: from the courier handing the ack to paho to the link thread having written it;
- ``delivered`` (the broker's PUBACK of the ack: the row's removal), ``report_changes``.
SIGUSR2 writes the samples so far to OUT.json (atomically) and starts afresh, so that a
benchmark can take one snapshot per phase. Nothing of the agent's behaviour changes; only the
clock is read more often.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho

from agent import cli, courier, director, store, verify
from protocol import link

Stamps = dict[str, list[float]]
_samples: Stamps = {}
_arrived: dict[int, float] = {}
_inside = threading.local()
_handed: list[float] = []  # when the courier handed an ack to paho (the link thread writes it)


def _add(stage: str, seconds: float) -> None:
    _samples.setdefault(stage, []).append(seconds)


def _timed(stage: str, only_inbound: bool = False) -> Callable[[Any], Any]:
    """Wrap a function so that each call's duration is a sample of ``stage``."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if only_inbound and not getattr(_inside, "inbound", False):
                return func(*args, **kwargs)
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                _add(stage, time.perf_counter() - start)

        return timed

    return wrap


def install() -> None:
    """Put the stopwatches on the command path."""
    on_message = link.MqttLink._on_message

    def stamped_on_message(self: link.MqttLink, client: Any, userdata: Any, msg: Any) -> None:
        _arrived[int(msg.mid)] = time.perf_counter()
        on_message(self, client, userdata, msg)

    link.MqttLink._on_message = stamped_on_message  # type: ignore[method-assign]
    on_inbound = director.Director.on_inbound

    def stamped_on_inbound(self: director.Director, msg: Any) -> None:
        start = time.perf_counter()
        if msg.token is not None and msg.token[1] in _arrived:
            _add("wake", start - _arrived.pop(msg.token[1]))
        _inside.inbound = True
        try:
            on_inbound(self, msg)
        finally:
            _inside.inbound = False
            _add("on_inbound", time.perf_counter() - start)

    director.Director.on_inbound = stamped_on_inbound  # type: ignore[method-assign]
    verify.Verifier.verify = _timed("verify", True)(verify.Verifier.verify)  # type: ignore[method-assign]
    store.Store.record = _timed("record", True)(store.Store.record)  # type: ignore[method-assign]
    courier.Courier.pump = _timed("pump", True)(courier.Courier.pump)  # type: ignore[method-assign]
    link.MqttLink.ack = _timed("puback", True)(link.MqttLink.ack)  # type: ignore[method-assign]
    courier.Courier.delivered = _timed("delivered")(courier.Courier.delivered)  # type: ignore[method-assign]
    pump = courier.Courier.pump

    def stamped_pump(self: courier.Courier) -> int:
        handed = pump(self)
        if handed and getattr(_inside, "inbound", False):
            _handed.append(time.perf_counter())
        return handed

    courier.Courier.pump = stamped_pump  # type: ignore[method-assign]
    write_packets = paho.Client._packet_write

    def stamped_write(self: paho.Client) -> Any:
        result = write_packets(self)
        if _handed:
            _add("to_wire", time.perf_counter() - _handed.pop())
        return result

    paho.Client._packet_write = stamped_write  # type: ignore[method-assign]
    director.Director.report_changes = _timed("report_changes")(  # type: ignore[method-assign]
        director.Director.report_changes
    )


def write(out: Path) -> None:
    def q(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e6

    report = {
        stage: {
            "n": len(v),
            "p50_us": round(q(v, 0.5), 1),
            "p99_us": round(q(v, 0.99), 1),
            "mean_us": round(statistics.fmean(v) * 1e6, 1),
        }
        for stage, v in _samples.items()
        if v
    }
    _samples.clear()
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2:4] != ["-m", "agent"]:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    install()
    atexit.register(write, out)
    signal.signal(signal.SIGUSR2, lambda _signum, _frame: write(out))
    return int(cli.main(sys.argv[4:]))


if __name__ == "__main__":
    sys.exit(main())
