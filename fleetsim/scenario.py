"""One run of the fleet at one size, on one broker: the floor, then the devices' fan-out,
their refusals, a program push and a broker restart. Returns the figures as a dict."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetsim import provision as p
from fleetsim.broker import Mosquitto
from fleetsim.observe import FLOOR, ONLINE, Observer, ack

ACK_WINDOW_S = 10.0  # an emergency not acked within this counts as not acked
EMERGENCY_TEXT = (
    "Bão số 9 đổ bộ trong 6 giờ tới. Người dân khu vực ven sông di chuyển đến nơi tránh trú "
    "an toàn theo hướng dẫn của tổ dân phố."
)


# paho's network loop uses select(), which cannot watch a file descriptor numbered 1024 or
# more; a device holds about seven (its MQTT socket and paho's wake-up pair, SQLite's database,
# WAL and shared-memory files, a kept-alive HTTP connection). So at most this many per process.
MAX_PER_PROCESS = 100


@dataclass(frozen=True)
class Options:
    """What a run varies: the size, the least number of processes, the jitter."""

    count: int
    workdir: Path
    min_processes: int = 2
    fetch_jitter_s: int = 20
    program_files: int = 20
    outage_s: float = 5.0
    wakeups: str = "shared"

    @property
    def processes(self) -> int:
        """One per core at least, and enough to keep each under ``MAX_PER_PROCESS``."""
        return max(self.min_processes, -(-self.count // MAX_PER_PROCESS))


def spread(found: dict[str, float], t0: float, count: int) -> dict[str, Any]:
    """First, p50, p99 and last arrival after ``t0`` in seconds, and how many never came."""
    times = sorted(t - t0 for t in found.values())
    if not times:
        return {"acked": 0, "missing": count}
    q = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else times * 99
    return {
        "acked": len(times),
        "missing": count - len(times),
        "first_s": round(times[0], 3),
        "p50_s": round(q[49], 3),
        "p99_s": round(q[98], 3),
        "last_s": round(times[-1], 3),
    }


class Hosts:
    """The child processes of a run (device hosts or floor clients), talked to by lines."""

    def __init__(self, argvs: list[list[str]], logdir: Path) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        for index, argv in enumerate(argvs):
            err = (logdir / f"host-{index}.err").open("w")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", *argv],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
            )

    @staticmethod
    def _read(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a host process ended (exit {proc.wait()}); see its .err file")
        data: dict[str, Any] = json.loads(line)
        return data

    def ask(self, line: str | None) -> list[dict[str, Any]]:
        """Send ``line`` to every process (None: just read), then read one answer from each."""
        for proc in self.procs:
            if line is not None:
                stdin: IO[str] | None = proc.stdin
                assert stdin is not None
                stdin.write(line + "\n")
                stdin.flush()
        return [self._read(proc) for proc in self.procs]

    def close(self) -> list[dict[str, Any]]:
        answers = self.ask("stop")
        for proc in self.procs:
            proc.wait(60)
        return answers

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _slices(count: int, parts: int) -> list[tuple[int, int]]:
    base, extra = divmod(count, parts)
    out, first = [], 0
    for index in range(parts):
        size = base + (index < extra)
        if size:
            out.append((first, size))
        first += size
    return out


@contextmanager
def _hosts(argvs: list[list[str]], logdir: Path) -> Iterator[Hosts]:
    hosts = Hosts(argvs, logdir)
    try:
        yield hosts
    finally:
        hosts.kill()


def run(opts: Options) -> dict[str, Any]:
    """Every figure of one size; raises when the fleet cannot even start."""
    n = opts.count
    opts.workdir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    broker = Mosquitto(opts.workdir / "broker")
    result: dict[str, Any] = {"devices": n, "processes": opts.processes}
    with ExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        observer = Observer(broker.port)
        observer.start()
        stack.callback(observer.stop)
        sample = p.payload(p.signed(key, "emergency.start", "grp:all", _emergency()))
        result["floor"] = _floor(opts, broker, observer, sample)

        layout = p.FleetLayout(opts.workdir / "devices", broker.port, n, opts.fetch_jitter_s)
        p.write_configs(layout, key)
        slices = _slices(n, opts.processes)
        argvs = [
            [
                *("fleetsim.host", str(layout.root), str(first), str(size)),
                *("--wakeups", opts.wakeups, "--log", str(opts.workdir / f"devices-{index}.log")),
            ]
            for index, (first, size) in enumerate(slices)
        ]
        t0 = time.monotonic()
        hosts = stack.enter_context(_hosts(argvs, opts.workdir))
        built = hosts.ask(None)
        up = observer.wait(ONLINE, n, 60 + n * 0.1, since=t0)
        result["start"] = {
            "online": len(up),
            "all_online_s": round(max(up.values()) - t0, 2) if up else None,
            "build_s": max(b["build_s"] for b in built),
        }
        if len(up) < n:
            raise RuntimeError(f"only {len(up)} of {n} devices came online")
        doc, result["emergency"] = _emergency_fanout(n, key, observer)
        result["refusals"] = _refusals(n, key, observer, doc)
        idle = hosts.ask("stats")
        result["resources"] = {
            "threads_per_process": max(s["threads"] for s in idle),
            "rss_mib_per_process": round(max(s["rss_kib"] for s in idle) / 1024, 1),
            "rss_kib_per_device": round(sum(s["rss_kib"] for s in idle) / n, 1),
        }
        result["program"] = _program_push(opts, key, observer)
        result["restart"] = _broker_restart(opts, key, broker, observer)
        stopped = hosts.close()
        result["stop_s"] = max(s["stop_s"] for s in stopped)
    return result


def _emergency() -> dict[str, Any]:
    return p.emergency_body(EMERGENCY_TEXT)


def _floor(opts: Options, broker: Mosquitto, observer: Observer, sample: bytes) -> dict[str, Any]:
    """N bare echo clients on the same broker: the fastest any fleet of N could answer."""
    argvs = [
        ["fleetsim.echo", str(broker.port), str(first), str(size)]
        for first, size in _slices(opts.count, opts.processes)
    ]
    with _hosts(argvs, opts.workdir) as hosts:
        hosts.ask(None)
        time.sleep(0.5)
        t0 = observer.publish_floor(sample)
        found = observer.wait(FLOOR, opts.count, ACK_WINDOW_S, since=t0)
        hosts.close()
    return spread(found, t0, opts.count)


def _emergency_fanout(
    n: int, key: Ed25519PrivateKey, observer: Observer
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``emergency.start`` to the group of all: the document, and when each ``done`` came."""
    doc = p.signed(key, "emergency.start", "grp:all", _emergency())
    t0 = observer.publish(f"{p.PREFIX}/grp/all/cmd", p.payload(doc))
    found = observer.wait(ack(doc["id"], "done"), n, ACK_WINDOW_S, since=t0)
    return doc, spread(found, t0, n)


def _refusals(
    n: int, key: Ed25519PrivateKey, observer: Observer, doc: dict[str, Any]
) -> dict[str, Any]:
    """The same emergency again (a replay), then one under a forged signature: every device
    must refuse both; then the real one is stopped."""
    topic = f"{p.PREFIX}/grp/all/cmd"
    t0 = observer.publish(topic, p.payload(doc))
    replayed = observer.wait(ack(doc["id"], "duplicate", "duplicate"), n, 30, since=t0)
    fake = p.forged(doc)
    t1 = observer.publish(topic, p.payload(fake))
    refused = observer.wait(ack(fake["id"], "rejected", "bad_signature"), n, 30, since=t1)
    executed = observer.select(ack(fake["id"], "done"), since=t1)
    stop = p.signed(key, "emergency.stop", "grp:all", {"ref": doc["id"]})
    t2 = observer.publish(topic, p.payload(stop))
    stopped = observer.wait(ack(stop["id"], "done"), n, 30, since=t2)
    return {
        "replay_refused": len(replayed),
        "forged_refused": len(refused),
        "forged_executed": len(executed),
        "stopped": len(stopped),
    }


def _program_push(opts: Options, key: Ed25519PrivateKey, observer: Observer) -> dict[str, Any]:
    """A retained program of ``program_files`` files to the group of all, from one server."""
    n = opts.count
    argv = ["fleetsim.media", str(opts.program_files), "20"]  # the same files at every N
    with _hosts([argv], opts.workdir) as server:
        (served,) = server.ask(None)
        files = served["media"]
        program_bytes = sum(f["size"] for f in files)
        doc = p.signed(key, "program", "grp:all", p.program_body(1, files), ttl_s=None)
        t0 = observer.publish(f"{p.PREFIX}/grp/all/program", p.payload(doc), retain=True)
        timeout = opts.fetch_jitter_s + 120 + n * 0.4
        live = observer.wait(ack(doc["id"], "done"), n, timeout, since=t0)
        failed = observer.select(ack(doc["id"], "failed"), since=t0)
        (counted,) = server.ask("stats")
        server.close()
    times = spread(live, t0, n)
    return {
        "files": len(files),
        "program_bytes": program_bytes,
        "live": len(live),
        "failed": len(failed),
        "first_live_s": times.get("first_s"),
        "all_live_s": times.get("last_s"),
        "p50_live_s": times.get("p50_s"),
        "served_ratio": round(counted["bytes_sent"] / (n * program_bytes), 3),
        "requests": counted["requests"],
        "peak_concurrent": counted["peak"],
        "jitter_s": opts.fetch_jitter_s,
    }


def _broker_restart(
    opts: Options, key: Ed25519PrivateKey, broker: Mosquitto, observer: Observer
) -> dict[str, Any]:
    """Stop the broker with every device connected, hand a command to the control plane's
    client during the outage, start the broker, send another at once: all must get both."""
    n = opts.count
    topic = f"{p.PREFIX}/grp/all/cmd"
    broker.stop()
    t_down = time.monotonic()
    during = p.signed(key, "ping", "grp:all", {})
    observer.publish(topic, p.payload(during))  # queued by the client until it reconnects
    time.sleep(opts.outage_s)
    t_up = broker.start()
    observer.link.wait_connected(10)
    after = p.signed(key, "volume.set", "grp:all", {"percent": 55})
    t_sent = observer.publish(topic, p.payload(after))
    online_at_send = len(observer.select(ONLINE, since=t_up))
    back = observer.wait(ONLINE, n, 60 + n * 0.05, since=t_up)
    got_during = observer.wait(ack(during["id"], "done"), n, 60, since=t_down)
    got_after = observer.wait(ack(after["id"], "done"), n, 60, since=t_sent)
    buckets: dict[int, int] = {}
    for at in back.values():
        buckets[int(at - t_up)] = buckets.get(int(at - t_up), 0) + 1
    times = spread(back, t_up, n)
    return {
        "outage_s": round(t_up - t_down, 2),
        "back_online": len(back),
        "p50_back_s": times.get("p50_s"),
        "all_back_s": times.get("last_s"),
        "peak_reconnects_per_s": max(buckets.values(), default=0),
        "online_when_sent": online_at_send,
        "cmd_during_outage_done": len(got_during),
        "cmd_after_restart_done": len(got_after),
        "lost": (n - len(got_during)) + (n - len(got_after)),
    }
