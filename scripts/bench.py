#!/usr/bin/env python3
"""Benchmarks of the edge agent against the physical floor of the same path, side by side.

    python scripts/bench.py [--out bench-out/bench.json] [--pings 1000] [--profile]

One run starts its own Mosquitto on a free loopback port, a real ``ttcs-agent run`` and a bare
paho echo client (``scripts/echo_floor.py``: subscribe, republish each message at QoS 1, the
least any MQTT device can do on this path), then measures both in interleaved blocks so that
drift hits them alike:

- command → ack round trip, one signed ping at a time (publish, wait for its ack, next), p50/p99;
- resident memory of the agent and of the echo client, settled and peak;
- the two costs inside the agent that the round trip is made of (measured in-process with the
  agent's own classes, on the same disk): verifying a signed document, and the durable writes.

Where the time goes. The agent makes every command durable before it answers: per ping it
commits twice to SQLite in WAL mode with ``synchronous=FULL`` — the seen id together with the
ack row in the outbox (``Store.record``, before the ack leaves), then the removal of that row once
the broker has acknowledged the ack (``Store.delivered``, after) — and each commit is one
fdatasync of the WAL (strace shows two per ping). Measured on the build VM (2 vCPU, ext4 on a
virtual disk, 2026-11): one small write+fdatasync ≈ 0.2 ms, the two commits ≈ 0.6–1.2 ms
together (p50), verifying a signed ping ≈ 0.3–0.4 ms (raw Ed25519 ≈ 0.13–0.18 ms of it).
So fsync and verification cost about 1–1.5 ms per ack. The round trip measured ~44 ms instead,
and that is TCP, not work: the agent sends the PUBACK of the command before the ack itself, paho
does not set TCP_NODELAY, and Nagle's algorithm holds the ack until the broker's delayed ACK of
that PUBACK (~40 ms). With TCP_NODELAY on every client socket (a what-if run, not the product)
the agent answered in 2.0 ms p50 / 3.2 ms p99 against a floor of 0.4 / 0.8 ms. The broker that
this script starts has ``set_tcp_nodelay true`` (Mosquitto's default is false, which adds up to
~40 ms per hop to both paths alike). ``--profile`` runs the agent's main thread (the director)
under cProfile and prints how long it was busy and on what.

The numbers are printed as a table and written as JSON (default ``bench-out/bench.json``).
Each figure is a row function in ``ROWS``: add a measurement by adding a function.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from harness import (
    ROOT,
    SCRIPTS,
    Agent,
    Broker,
    HarnessError,
    proc_status_kib,
    raise_on_termination,
    spawn,
    stop_process,
    tail_text,
    wait_for,
)

from agent.controlplane import SigningKey, device_config, make_document
from agent.protocol import Topics
from agent.signing import b64url_decode, signing_input
from agent.store import Store
from agent.verify import Accepted, Verifier

PREFIX = "ttcs/v1"
DEVICE = "q10-p12-bang-01"
GROUPS = ["q10-p12", "q10"]
ECHO = "bench-echo-0001"  # same length as DEVICE, so the topics are the same size
WARMUP = 50
BLOCK = 100  # pings per block; agent and floor blocks alternate
SETTLE_S = 2.0
PING_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float], scale: float = 1.0) -> dict[str, float]:
    """min/mean/p50/p90/p99/max of ``values`` multiplied by ``scale``, rounded for reading."""
    return {
        "n": len(values),
        "min": round(min(values) * scale, 4),
        "mean": round(statistics.fmean(values) * scale, 4),
        "p50": round(percentile(values, 0.50) * scale, 4),
        "p90": round(percentile(values, 0.90) * scale, 4),
        "p99": round(percentile(values, 0.99) * scale, 4),
        "max": round(max(values) * scale, 4),
    }


# --------------------------------------------------------------------------- bare paho


class Pinger:
    """A bare paho client driven from this thread: publish, then run the loop until the reply.

    No network thread and no queue hand-off, so the client adds as little as possible and adds
    exactly the same to both paths.
    """

    def __init__(self, port: int, replies: list[str]) -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-pinger-{os.getpid()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._want: tuple[str, bytes] = ("", b"")
        self._arrived = 0.0
        self._subscribed = False
        self.client.connect("127.0.0.1", port, keepalive=60)
        # The instrument must not add Nagle delays of its own (paho does not disable Nagle).
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.subscribe([(t, SubscribeOptions(qos=1)) for t in replies])
        self._loop_until(lambda: self._subscribed, 10.0, "the pinger's subscription")

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed = True

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        topic, token = self._want
        if msg.topic == topic and token in msg.payload:
            self._arrived = time.perf_counter()

    def _loop_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")
            rc = self.client.loop(timeout=min(remaining, 0.5))
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise HarnessError(f"pinger lost the broker: {paho.error_string(rc)}")

    def round_trip(
        self, topic: str, payload: bytes, reply: str, token: bytes, timeout: float
    ) -> float | None:
        """Seconds from handing ``payload`` to the socket to the reply carrying ``token``."""
        self._want = (reply, token)
        self._arrived = 0.0
        start = time.perf_counter()
        self.client.publish(topic, payload, qos=1)
        try:
            self._loop_until(lambda: self._arrived > 0, timeout, "a reply")
        except HarnessError:
            if self.client.is_connected():
                return None
            raise
        return self._arrived - start

    def close(self) -> None:
        self.client.disconnect()
        with contextlib.suppress(Exception):
            self.client.loop(timeout=0.2)


# --------------------------------------------------------------------------- the run


@dataclass
class Row:
    """One line of the table: a figure, the agent's value, the floor's value."""

    figure: str
    unit: str
    agent: float
    floor: float | None
    floor_is: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.agent / self.floor

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["agent"] = round(self.agent, 4)
        out["floor"] = None if self.floor is None else round(self.floor, 4)
        out["ratio"] = None if self.ratio is None else round(self.ratio, 2)
        return out


@dataclass
class Bench:
    """A live run: broker, agent, echo and pinger, plus measurements shared by several rows."""

    pings: int
    workdir: Path
    broker: Broker
    agent: Agent
    echo: subprocess.Popen[bytes]
    pinger: Pinger
    key: SigningKey
    idle_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def signed_pings(self, count: int) -> list[tuple[bytes, bytes]]:
        """``count`` fresh signed pings for the agent: (payload, id)."""
        out = []
        target = f"dev:{DEVICE}"
        for _ in range(count):
            doc = make_document(self.key, "ping", target, {}, ttl_s=3600)
            out.append((json.dumps(doc, ensure_ascii=False).encode("utf-8"), doc["id"].encode()))
        return out

    @functools.cached_property
    def round_trips(self) -> tuple[list[float], list[float]]:
        """Round-trip seconds (agent, floor), measured in alternating blocks after a warm-up."""
        topics = Topics(PREFIX)
        paths = {
            "agent": (topics.dev(DEVICE, "cmd"), topics.dev(DEVICE, "ack")),
            "floor": (topics.dev(ECHO, "cmd"), topics.dev(ECHO, "ack")),
        }
        # Both paths carry byte-for-byte the same kind of payload; signing happens up front,
        # since it is the control plane's cost, not the device's.
        payloads = self.signed_pings(2 * (self.pings + WARMUP) + 20)
        samples: dict[str, list[float]] = {"agent": [], "floor": []}
        lost: dict[str, int] = {"agent": 0, "floor": 0}

        def one(path: str, record: bool) -> None:
            topic, reply = paths[path]
            for _attempt in range(3):
                payload, token = payloads.pop()
                seconds = self.pinger.round_trip(topic, payload, reply, token, PING_TIMEOUT_S)
                if seconds is not None:
                    if record:
                        samples[path].append(seconds)
                    return
                lost[path] += 1
            raise HarnessError(f"{path}: three pings in a row got no reply")

        for _ in range(WARMUP):
            one("agent", False)
            one("floor", False)
        while len(samples["agent"]) < self.pings:
            for path in ("agent", "floor"):
                for _ in range(min(BLOCK, self.pings - len(samples[path]))):
                    one(path, True)
        self.details["round_trip_ms"] = {
            "agent": summary(samples["agent"], 1000),
            "floor": summary(samples["floor"], 1000),
            "lost_pings": lost,
        }
        return samples["agent"], samples["floor"]

    @functools.cached_property
    def breakdown(self) -> dict[str, list[float]]:
        """Seconds per call of the agent's own verify and durable-write code, in this process."""
        probe = self.workdir / "probe"
        probe.mkdir(parents=True, exist_ok=True)
        count = min(max(self.pings, 50), 500)
        store = Store(probe / "agent.db")
        topics = Topics(PREFIX)
        public = self.key.key.public_key()
        verifier = Verifier(
            DEVICE,
            GROUPS,
            {self.key.kid: public},
            topics,
            store,
            clock=lambda: datetime.now(UTC),
        )
        cmd, ack_topic = topics.dev(DEVICE, "cmd"), topics.dev(DEVICE, "ack")
        out: dict[str, list[float]] = {
            "verify": [],
            "ed25519": [],
            "record": [],
            "delivered": [],
            "durable": [],
            "fsync": [],
        }
        try:
            for payload, _token in self.signed_pings(count):
                doc = json.loads(payload)
                sig, message = b64url_decode(doc["sig"]), signing_input(doc)
                t0 = time.perf_counter()
                public.verify(sig, message)
                t1 = time.perf_counter()
                result = verifier.verify(cmd, payload)
                t2 = time.perf_counter()
                if not isinstance(result, Accepted):
                    raise HarnessError(f"the verifier refused a bench ping: {result}")
                out["ed25519"].append(t1 - t0)
                out["verify"].append(t2 - t1)
                now = time.time()
                t0 = time.perf_counter()
                store.record(
                    seen=(doc["id"], now + 3600),
                    messages=[("ack", ack_topic, payload[:120], 1)],
                    now=now,
                )
                t1 = time.perf_counter()
                seq = store.pending(limit=1)[0].seq
                t2 = time.perf_counter()
                store.delivered(seq)
                t3 = time.perf_counter()
                out["record"].append(t1 - t0)
                out["delivered"].append(t3 - t2)
                out["durable"].append((t1 - t0) + (t3 - t2))
            # The floor of one durable write on this disk: append 200 bytes, fdatasync.
            fd = os.open(probe / "fsync.probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                for _ in range(count):
                    t0 = time.perf_counter()
                    os.write(fd, b"x" * 200)
                    os.fdatasync(fd)
                    out["fsync"].append(time.perf_counter() - t0)
            finally:
                os.close(fd)
        finally:
            store.close()
        self.details["breakdown_ms"] = {k: summary(v, 1000) for k, v in out.items()}
        return out


RowFunction = Callable[[Bench], Row]


def row_rtt_p50(b: Bench) -> Row:
    agent, floor = b.round_trips
    return Row(
        "command→ack round trip p50",
        "ms",
        percentile(agent, 0.5) * 1000,
        percentile(floor, 0.5) * 1000,
        "bare paho echo, same broker",
    )


def row_rtt_p99(b: Bench) -> Row:
    agent, floor = b.round_trips
    return Row(
        "command→ack round trip p99",
        "ms",
        percentile(agent, 0.99) * 1000,
        percentile(floor, 0.99) * 1000,
        "bare paho echo, same broker",
    )


def row_idle_rss(b: Bench) -> Row:
    return Row(
        f"idle RSS (VmRSS after {SETTLE_S:.0f} s)",
        "MiB",
        b.idle_kib["agent"]["VmRSS"] / 1024,
        b.idle_kib["floor"]["VmRSS"] / 1024,
        "bare paho echo process",
    )


def row_peak_rss(b: Bench) -> Row:
    b.round_trips  # noqa: B018 - the peak is read after the load
    agent, floor = proc_status_kib(b.agent.pid), proc_status_kib(b.echo.pid)
    b.details["after_load_kib"] = {"agent": agent, "floor": floor}
    return Row(
        "peak RSS (VmHWM after the pings)",
        "MiB",
        agent["VmHWM"] / 1024,
        floor["VmHWM"] / 1024,
        "bare paho echo process",
    )


def row_verify(b: Bench) -> Row:
    d = b.breakdown
    return Row(
        "verify one signed ping p50",
        "µs",
        percentile(d["verify"], 0.5) * 1e6,
        percentile(d["ed25519"], 0.5) * 1e6,
        "raw Ed25519 verify",
        "all 11 checks, in-process",
    )


def row_durable(b: Bench) -> Row:
    d = b.breakdown
    return Row(
        "durable state per ack p50",
        "ms",
        percentile(d["durable"], 0.5) * 1000,
        percentile(d["fsync"], 0.5) * 1000,
        "one write+fdatasync",
        "2 SQLite commits, synchronous=FULL",
    )


ROWS: list[RowFunction] = [
    row_rtt_p50,
    row_rtt_p99,
    row_idle_rss,
    row_peak_rss,
    row_verify,
    row_durable,
]


# --------------------------------------------------------------------------- output


def format_value(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(rows: list[Row]) -> None:
    header = ("figure", "unit", "agent", "floor", "ratio", "floor is")
    lines = [header] + [
        (
            r.figure,
            r.unit,
            format_value(r.agent),
            format_value(r.floor),
            "—" if r.ratio is None else f"{r.ratio:.1f}×",
            r.floor_is,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4}
    for index, line in enumerate(lines):
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


def print_profile(path: Path, text_out: Path, pings: int, limit: int = 25) -> None:
    with text_out.open("w", encoding="utf-8") as fh:
        for order in ("tottime", "cumulative"):
            fh.write(f"== agent main thread (director), by {order} ==\n")
            pstats.Stats(str(path), stream=fh).strip_dirs().sort_stats(order).print_stats(limit)
    stats = pstats.Stats(str(path), stream=sys.stdout)
    # The director blocks in queue.get between events: everything else is work.
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    waiting = sum(
        v[3]
        for (file, _line, func), v in raw.items()
        if func == "get" and file.endswith("queue.py")
    )
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    busy = total - waiting
    print(f"\n== cProfile of the agent (top {limit} by own time) — full text in {text_out} ==")
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    print(
        f"director: {total:.2f} s profiled, {waiting:.2f} s waiting for events, {busy:.2f} s busy "
        f"(start-up included) ≈ {busy / max(1, pings + WARMUP) * 1000:.2f} ms per ping at most"
    )


def host_facts(workdir: Path) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        facts["state_dir_fs"] = _filesystem(workdir)
    return facts


def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        _dev, mount, fstype, *_ = line.split()
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, fstype
    return f"{kind} ({best})"


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "bench.json")
    parser.add_argument("--pings", type=int, default=1000, help="measured pings per path")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the agent under cProfile and print where its main thread spends time "
        "(slows the agent down: latencies of a profiled run are not comparable)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    out: Path = args.out.resolve()
    workdir = out.parent / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    key = SigningKey.generate("bench")
    topics = Topics(PREFIX)
    profile = workdir / "agent.prof"
    started = time.monotonic()

    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(Broker(workdir / "broker"))
        device_dir = workdir / DEVICE
        device_dir.mkdir()
        config = device_dir / "agent.toml"
        config.write_text(
            device_config(
                DEVICE,
                GROUPS,
                broker.url,
                key,
                PREFIX,
                str(device_dir / "state"),
                str(device_dir / "cache"),
            ),
            encoding="utf-8",
        )
        python_args = ("-m", "cProfile", "-o", str(profile)) if args.profile else ()
        agent = Agent(
            config, device_dir / "state" / "control.sock", device_dir / "agent.out", python_args
        )
        stack.enter_context(agent)
        echo_out = workdir / "echo.out"
        echo = spawn(
            [
                sys.executable,
                str(SCRIPTS / "echo_floor.py"),
                str(broker.port),
                topics.dev(ECHO, "cmd"),
                topics.dev(ECHO, "ack"),
            ],
            echo_out,
        )
        stack.callback(stop_process, echo, 5)
        wait_for(lambda: "ready" in tail_text(echo_out), 10, "the echo client")
        pinger = Pinger(broker.port, [topics.dev(DEVICE, "ack"), topics.dev(ECHO, "ack")])
        stack.callback(pinger.close)

        bench = Bench(args.pings, workdir, broker, agent, echo, pinger, key)
        time.sleep(SETTLE_S)
        bench.idle_kib = {"agent": proc_status_kib(agent.pid), "floor": proc_status_kib(echo.pid)}
        print(
            f"measuring {args.pings} pings per path, one at a time, alternating blocks of {BLOCK}"
            f" (after {WARMUP} warm-up pings each)…",
            file=sys.stderr,
        )
        try:
            rows = [row(bench) for row in ROWS]
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n-- agent output --\n{tail_text(agent.output)}") from None
        code = agent.stop()
        if code != 0:
            raise HarnessError(f"the agent exited with status {code} on SIGTERM")

    if args.profile:
        print_profile(profile, out.parent / "agent-profile.txt", args.pings)
        print(
            "\nNOTE: profiled run — the agent ran slower than normal; compare ratios only "
            "from a run without --profile.\n"
        )
    print_table(rows)
    report = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pings": args.pings,
        "profiled": bool(args.profile),
        "host": host_facts(workdir),
        "rows": [r.as_json() for r in rows],
        "details": bench.details,
        "wall_s": round(time.monotonic() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.pings < 10:
        print("bench: --pings must be at least 10", file=sys.stderr)
        return 2
    raise_on_termination()
    try:
        return run(args)
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
