#!/usr/bin/env python3
"""Benchmarks of the edge agent against the physical floor of the same path, side by side.

    python scripts/bench.py [--out bench-out/bench.json] [--pings 1000] [--profile]
    python scripts/bench.py --only screen [--screen-settle 5] [--screen-window 15]
    python scripts/bench.py --only tts

One run starts its own Mosquitto on a free loopback port, a real ``ttcs-agent run``, a bare
paho echo client (``scripts/echo_floor.py``: subscribe, republish each message at QoS 1, the
least any MQTT device can do on this path) and the durable floor (``echo_floor.py --durable``:
the same echo that first commits the command's id to SQLite in WAL mode with
``synchronous=FULL`` on the same disk, one fsync: the least any exactly-once device can do),
then measures the three in interleaved blocks so that drift hits them alike:

- command → ack round trip, one signed ping at a time (publish, wait for its ack, next), p50/p99,
  the agent against the bare echo and against the durable floor (goal: ≤ 1.3× the durable
  floor);
- commands per second with 100 in flight (the broker lets 100 go to each client
  unacknowledged), the three sides' blocks of 1,000 alternating, the median of three blocks;
- resident memory of the agent and of the echo client, settled and peak;
- the two costs inside the agent that the round trip is made of (measured in-process with the
  agent's own classes, on the same disk): verifying a signed document, and the durable writes;
- a program update that changes one item of twenty: a program of 20 bulletins, each with its own
  media file (100–300 KB of random bytes) on a local HTTP server that counts every byte it sends,
  goes live (ack ``done``); then version 2, in which one bulletin's file changed. The figure is
  the bytes the server sent for version 2, headers included, divided by the changed file's size
  (goal ≤ 1.01: only the changed file travels);
- boot to the first play decision from the cache with the broker unreachable: the same agent,
  stopped, is started again (a few times) with its broker URL pointing at a port where nobody
  listens; the time from starting the process to the screen player's log line ``screen: <id>`` of
  the live program (goal ≤ 1.5 s, p50), against the floor of the same interpreter importing
  ``agent.daemon`` and printing the time;
- the screen (``scripts/screen_bench.py``, where the method and its caveats are written down):
  CPU (% of one core) and memory (PSS) of a ``ttcs-agent run`` showing a text bulletin with a
  clock, without and with a scrolling ticker, at 1920×1080, against headless Chromium showing
  the same as an HTML page (the kiosk-browser way of other signage players). In these rows the
  "floor" is Chromium, and the ratio is chromium/agent (goals: ≥ 5× for memory, ≥ 3× for
  CPU). Chromium comes from ``scripts/setup --bench`` (``make bench`` runs it); where it is
  missing the rows say so. ``--only screen`` runs these rows alone (about 90 s).
- text to speech (``scripts/tts_bench.py``, method and caveats there): Piper speaking a
  30-second Vietnamese ward announcement, warmed — time to first audio streamed sentence by
  sentence against the whole text synthesized before playing (goal ≤ 0.4 s, p50), the
  real-time factor, a cache hit against a synthesis, espeak-ng's first audio (the fallback),
  the voice's cold load, and RSS/PSS of a fresh interpreter with the agent's imports against
  the same with one voice loaded. ``--only tts`` runs these rows alone (about 40 s).

Where the time goes. The agent makes every command durable before it answers: per ping it
commits once to SQLite in WAL mode with ``synchronous=FULL`` — the seen id together with the
ack row in the outbox (``Store.record``, before the ack leaves); the removal of that row once
the broker has acknowledged the ack (``Store.delivered``) rides on the next transaction (or a
commit without fsync after 50 ms idle). ``--stages`` runs the agent under
``scripts/stage_times.py`` and prints the microseconds of each stage (inbox hand-off, verify,
the commit, the hand-off to paho, the link thread writing it); docs/reliability.md has the
latest figures. Older figures, with two commits per ping, measured on the build VM (2 vCPU,
ext4 on a virtual disk, 2026-11): one small write+fdatasync ≈ 0.2 ms, the two commits ≈ 0.6–1.2 ms
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
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

# The checkout's own packages first, also when the virtualenv's editable install is another's.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from harness import (
    ROOT,
    SCRIPTS,
    Agent,
    Broker,
    HarnessError,
    MediaServer,
    free_port,
    proc_status_kib,
    raise_on_termination,
    spawn,
    stop_process,
    tail_text,
    wait_for,
)
from screen_bench import SCREEN_ROWS, ScreenBench, ScreenRow, ScreenRowFunction
from screen_bench import SETTLE_S as SCREEN_SETTLE_S
from screen_bench import WINDOW_S as SCREEN_WINDOW_S
from tts_bench import TTS_ROWS, TtsBench, TtsRowFunction

from agent.store import Store
from agent.verify import Accepted, Verifier
from controlplane.keys import SigningKey, device_config, make_document
from controlplane.send import FINAL
from protocol import Topics
from protocol.signing import b64url_decode, signing_input

PREFIX = "ttcs/v1"
DEVICE = "q10-p12-bang-01"
GROUPS = ["q10-p12", "q10"]
ECHO = "bench-echo-0001"  # same length as DEVICE, so the topics are the same size
DURABLE = "bench-dura-0001"  # the durable floor's topics, of the same size again
WARMUP = 50
BLOCK = 100  # pings per block; agent and floor blocks alternate
SETTLE_S = 2.0
IN_FLIGHT = 100  # commands in flight in the throughput row
FLOOD = 1000  # commands per throughput block; the three sides' blocks alternate
FLOOD_BLOCKS = 3  # blocks per side
FLOOD_TIMEOUT_S = 120.0
PING_TIMEOUT_S = 10.0
PROGRAM_ITEMS = 20  # bulletins in the program, one media file each
PROGRAM_TIMEOUT_S = 120.0
BOOTS = 5  # measured boots from the cache (after one that is not measured)
BOOT_TIMEOUT_S = 30.0
# The screen player's log line for the first thing shown ("screen: idle" is no play decision):
# the pygame screen's, or the null screen's where there is no screen.
SCREEN_LINE_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO player\.(?:screen|null): "
    r"screen: (?!idle$)(\S+)",
    re.M,
)
BOOTED_RE = re.compile(r"booted from cache: (\d+) live programs")


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
        self._watch: tuple[str, Callable[[bytes], bool]] | None = None
        self._caught: bytes | None = None
        self._subscribed = False
        self._flood: tuple[str, set[str]] | None = None
        self._flood_done = 0
        # The throughput row keeps IN_FLIGHT commands outstanding: paho must not queue them.
        self.client.max_inflight_messages_set(10 * IN_FLIGHT)
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
        watch = self._watch
        if watch is not None and msg.topic == watch[0] and watch[1](bytes(msg.payload)):
            self._caught = bytes(msg.payload)
        flood = self._flood
        if flood is not None and msg.topic == flood[0]:
            doc_id = _reply_id(bytes(msg.payload))
            if doc_id in flood[1]:
                flood[1].discard(doc_id)
                self._flood_done += 1

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

    def flood(
        self, topic: str, payloads: list[tuple[bytes, bytes]], reply: str, in_flight: int
    ) -> float:
        """Seconds to get a reply to every one of ``payloads``, ``in_flight`` outstanding."""
        waiting: set[str] = set()
        self._flood, self._flood_done = (reply, waiting), 0
        todo = list(payloads)
        sent = 0
        start = time.perf_counter()
        try:
            while self._flood_done < len(payloads):
                while todo and sent - self._flood_done < in_flight:
                    payload, token = todo.pop()
                    waiting.add(token.decode())
                    self.client.publish(topic, payload, qos=1)
                    sent += 1
                before = self._flood_done
                self._loop_until(
                    functools.partial(lambda b: self._flood_done > b, before),
                    FLOOD_TIMEOUT_S,
                    "a reply in the flood",
                )
        finally:
            self._flood = None
        return time.perf_counter() - start

    def exchange(
        self,
        topic: str,
        payload: bytes,
        reply: str,
        accept: Callable[[bytes], bool],
        timeout: float,
        what: str,
        retain: bool = False,
    ) -> bytes:
        """Publish ``payload``; return the first message on ``reply`` that ``accept`` takes."""
        self._watch, self._caught = (reply, accept), None
        try:
            self.client.publish(topic, payload, qos=1, retain=retain)
            self._loop_until(lambda: self._caught is not None, timeout, what)
        finally:
            self._watch = None
        assert self._caught is not None
        return self._caught

    def close(self) -> None:
        self.client.disconnect()
        with contextlib.suppress(Exception):
            self.client.loop(timeout=0.2)


def _reply_id(payload: bytes) -> str | None:
    """The command a reply answers: an ack's ``cmd``, or the echoed document's ``id``."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    found = doc["cmd"] if "cmd" in doc else doc.get("id")
    return found if isinstance(found, str) else None


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
    goal_max: float | None = None  # the goal for the agent's value, if it sets one
    digits: int | None = None  # decimals shown in the table (default: by magnitude)

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.agent / self.floor

    @property
    def goal(self) -> str:
        if self.goal_max is None:
            return ""
        unit = "" if self.unit == "×" else f" {self.unit}"
        return f"≤ {self.goal_max:g}{unit} ({'met' if self.goal_met else 'MISSED'})"

    @property
    def goal_met(self) -> bool | None:
        return None if self.goal_max is None else self.agent <= self.goal_max

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["agent"] = round(self.agent, 4)
        out["floor"] = None if self.floor is None else round(self.floor, 4)
        out["ratio"] = None if self.ratio is None else round(self.ratio, 2)
        out["goal"] = self.goal or None
        out["goal_met"] = self.goal_met
        del out["digits"]
        return out


@dataclass
class Bench:
    """A live run: broker, agent, echo and pinger, plus measurements shared by several rows."""

    pings: int
    workdir: Path
    broker: Broker
    agent: Agent
    echo: subprocess.Popen[bytes]
    durable: subprocess.Popen[bytes]
    pinger: Pinger
    key: SigningKey
    media: MediaServer
    config: Path
    idle_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    stages: Path | None = None  # the agent runs under scripts/stage_times.py, writing here
    screen_settle_s: float = SCREEN_SETTLE_S
    screen_window_s: float = SCREEN_WINDOW_S

    @functools.cached_property
    def screen(self) -> ScreenBench:
        """The screen rows' measurements: their own agents on this broker, and Chromium."""
        screen = ScreenBench(
            self.workdir / "screen", self.broker.url, self.screen_settle_s, self.screen_window_s
        )
        self.details["screen"] = screen.details  # filled in as the rows measure
        return screen

    @functools.cached_property
    def tts(self) -> TtsBench:
        """The TTS rows' measurements, in this process and a fresh interpreter."""
        tts = TtsBench(self.workdir / "tts")
        self.details["tts"] = tts.details  # filled in as the rows measure
        return tts

    def signed_pings(self, count: int) -> list[tuple[bytes, bytes]]:
        """``count`` fresh signed pings for the agent: (payload, id)."""
        out = []
        target = f"dev:{DEVICE}"
        for _ in range(count):
            doc = make_document(self.key, "ping", target, {}, ttl_s=3600)
            out.append((json.dumps(doc, ensure_ascii=False).encode("utf-8"), doc["id"].encode()))
        return out

    @functools.cached_property
    def paths(self) -> dict[str, tuple[str, str]]:
        """(command topic, reply topic) of each side: the agent, the bare and durable floors."""
        topics = Topics(PREFIX)
        return {
            side: (topics.dev(name, "cmd"), topics.dev(name, "ack"))
            for side, name in (("agent", DEVICE), ("floor", ECHO), ("durable", DURABLE))
        }

    @functools.cached_property
    def round_trips(self) -> dict[str, list[float]]:
        """Round-trip seconds per side, measured in alternating blocks after a warm-up."""
        paths = self.paths
        # Every path carries byte-for-byte the same kind of payload; signing happens up front,
        # since it is the control plane's cost, not the device's.
        payloads = self.signed_pings(len(paths) * (self.pings + WARMUP) + 30)
        samples: dict[str, list[float]] = {side: [] for side in paths}
        lost: dict[str, int] = {side: 0 for side in paths}

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
            for path in paths:
                one(path, False)
        while len(samples["agent"]) < self.pings:
            for path in paths:
                for _ in range(min(BLOCK, self.pings - len(samples[path]))):
                    one(path, True)
        self.details["round_trip_ms"] = {
            **{side: summary(values, 1000) for side, values in samples.items()},
            "lost_pings": lost,
        }
        self.stage_snapshot("round trips, one command at a time")
        return samples

    def stage_snapshot(self, phase: str) -> None:
        """With ``--stages``: print and keep the agent's per-stage times since the last one."""
        if self.stages is None:
            return
        self.stages.unlink(missing_ok=True)
        os.kill(self.agent.pid, signal.SIGUSR2)
        wait_for(self.stages.exists, 10, "the agent's stage times")
        self.details.setdefault("stages_us", {})[phase] = print_stages(self.stages, phase)

    @functools.cached_property
    def throughput(self) -> dict[str, float]:
        """Commands per second per side with IN_FLIGHT outstanding: the median of its blocks,
        the sides' blocks alternating."""
        rates: dict[str, list[float]] = {side: [] for side in self.paths}
        for _ in range(FLOOD_BLOCKS):
            for side, (topic, reply) in self.paths.items():
                payloads = self.signed_pings(FLOOD)
                seconds = self.pinger.flood(topic, payloads, reply, IN_FLIGHT)
                rates[side].append(FLOOD / seconds)
        self.stage_snapshot(f"throughput, {IN_FLIGHT} in flight")
        self.details["throughput_per_s"] = {
            "in_flight": IN_FLIGHT,
            "commands_per_block": FLOOD,
            "blocks": {side: [round(r) for r in values] for side, values in rates.items()},
        }
        return {side: statistics.median(values) for side, values in rates.items()}

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

    # ------------------------------------------------------------------ programs

    def _push(self, version: int, files: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
        """Publish a program of one bulletin per file (retained, as the control plane does) and
        wait for its final ack; return (seconds to it, the ack)."""
        bulletins: list[dict[str, Any]] = []
        for index, media in enumerate(files):
            bulletin: dict[str, Any] = {
                "id": f"ban-tin-{index:02d}",
                "title": f"Bản tin số {index}",
            }
            if media["mime"].startswith("audio/"):
                bulletin["screen"] = {"kind": "text", "text": "Thông báo của phường"}
                bulletin["speaker"] = {"kind": "audio", "media": media, "chime": False}
            else:
                bulletin["screen"] = {"kind": "image", "media": media, "duration_ms": 5000}
            bulletins.append(bulletin)
        body = {"version": version, "bulletins": bulletins, "ticker": ["Phường 12, Quận 10"]}
        doc = make_document(self.key, "program", f"dev:{DEVICE}", body, ttl_s=None)
        topics = Topics(PREFIX)

        def final(payload: bytes) -> bool:
            try:
                ack = json.loads(payload)
            except ValueError:
                return False
            return (
                isinstance(ack, dict) and ack.get("cmd") == doc["id"] and ack.get("status") in FINAL
            )

        start = time.perf_counter()
        raw = self.pinger.exchange(
            topics.dev(DEVICE, "program"),
            json.dumps(doc, ensure_ascii=False).encode("utf-8"),
            topics.dev(DEVICE, "ack"),
            final,
            PROGRAM_TIMEOUT_S,
            f"the final ack of program v{version}",
            retain=True,
        )
        seconds = time.perf_counter() - start
        ack: dict[str, Any] = json.loads(raw)
        if ack.get("status") != "done":
            raise HarnessError(f"program v{version} was not applied: {ack}")
        wait_for(lambda: self.media.idle, 10, "the media server to finish its responses")
        return seconds, ack

    @functools.cached_property
    def program_update(self) -> dict[str, Any]:
        """Program v1 (20 files) goes live, then v2 with one file changed: what v2 cost."""
        rng = random.Random(20261126)  # the same files in every run

        def one_file(path: str, mime: str) -> dict[str, Any]:
            return self.media.media(path, rng.randbytes(rng.randint(100_000, 300_000)), mime)

        files = [
            one_file(f"v1/{i:02d}.wav", "audio/wav")
            if i % 4 == 3
            else one_file(f"v1/{i:02d}.png", "image/png")
            for i in range(PROGRAM_ITEMS)
        ]
        changed = 6
        v2_files = list(files)
        v2_files[changed] = one_file(f"v2/{changed:02d}.png", "image/png")

        mark = self.media.mark()
        v1_s, v1_ack = self._push(1, files)
        v1_sent = self.media.sent(mark)
        mark = self.media.mark()
        v2_s, v2_ack = self._push(2, v2_files)
        v2 = self.media.since(mark)
        v2_sent = sum(s.bytes_sent for s in v2)
        size = int(v2_files[changed]["size"])
        out = {
            "files": PROGRAM_ITEMS,
            "v1_content_bytes": sum(int(f["size"]) for f in files),
            "v1_sent_bytes": v1_sent,
            "v1_to_done_s": round(v1_s, 3),
            "v1_ack": v1_ack.get("detail"),
            "changed_file_bytes": size,
            "v2_sent_bytes": v2_sent,
            "v2_requests": [f"{s.status} {s.path} {s.bytes_sent} B" for s in v2],
            "v2_to_done_s": round(v2_s, 3),
            "v2_ack": v2_ack.get("detail"),
            "ratio": v2_sent / size,
        }
        self.details["program_update"] = out
        return out

    # ------------------------------------------------------------------ boot

    @functools.cached_property
    def boots(self) -> tuple[list[float], list[float]]:
        """Seconds from process start to the first play decision, offline (agent, floor).

        Stops the bench's agent: this is the last measurement that needs it."""
        self.program_update  # noqa: B018 - a live program, all its files in the cache
        code = self.agent.stop()
        if code != 0:
            raise HarnessError(f"the agent exited with status {code} on SIGTERM")
        dead = f"mqtt://127.0.0.1:{free_port()}"  # nobody listens: connection refused
        offline = self.config.with_name("agent-offline.toml")
        offline.write_text(
            self.config.read_text(encoding="utf-8").replace(self.broker.url, dead),
            encoding="utf-8",
        )
        agent: list[float] = []
        floor: list[float] = []
        logging_up: list[float] = []
        for index in range(BOOTS + 1):  # the first of each warms the page cache, unmeasured
            boot_s, first_log_s = self._boot_once(offline, index)
            floor_s = self._import_once()
            if index:
                agent.append(boot_s)
                floor.append(floor_s)
                logging_up.append(first_log_s)
        self.details["boot_s"] = {
            "broker": f"{dead} (unreachable)",
            "live_program": f"v2, {PROGRAM_ITEMS} bulletins, their files in the cache",
            "to_first_play": summary(agent),
            "to_first_log_line": summary(logging_up),
            "import_agent_daemon": summary(floor),
        }
        return agent, floor

    def _boot_once(self, config: Path, index: int) -> tuple[float, float]:
        """One offline boot: (seconds to the first ``screen:`` line, to the first log line)."""
        output = self.workdir / "boots" / f"boot-{index}.out"
        env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
        argv = [sys.executable, "-m", "agent", "run", "--config", str(config)]
        started = time.time()
        proc = spawn(argv, output, env)
        try:

            def decided() -> re.Match[str] | None:
                text = tail_text(output, 200_000)
                if proc.poll() is not None:
                    raise HarnessError(f"the agent exited with {proc.returncode}:\n{text[-3000:]}")
                return SCREEN_LINE_RE.search(text)

            match = wait_for(decided, BOOT_TIMEOUT_S, "the first play decision of an offline boot")
        finally:
            code = stop_process(proc, 15)
        text = tail_text(output, 200_000)
        if code != 0:
            raise HarnessError(f"an offline agent exited with {code} on SIGTERM:\n{text[-3000:]}")
        booted = BOOTED_RE.search(text)
        if booted is None or int(booted[1]) < 1:
            raise HarnessError(f"the offline agent did not boot a live program:\n{text[-3000:]}")
        first_log = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", text, re.M)
        assert first_log is not None
        return _log_time(match[1]) - started, _log_time(first_log[1]) - started

    def _import_once(self) -> float:
        """Seconds from starting the interpreter to ``agent.daemon`` imported."""
        started = time.time()
        done = subprocess.run(
            [sys.executable, "-c", "import time, agent.daemon; print(repr(time.time()))"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(f"importing agent.daemon failed:\n{done.stderr[-2000:]}")
        return float(done.stdout) - started


def _log_time(text: str) -> float:
    """POSIX seconds of a log line's local ``asctime`` (``2026-11-26 14:29:45,123``)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


RowFunction = Callable[[Bench], "Row | ScreenRow"]


BARE_IS = "bare paho echo, same broker"
DURABLE_IS = "paho echo + 1 SQLite commit (WAL, FULL)"


def _rtt(b: Bench, floor: str, q: float) -> Row:
    samples = b.round_trips
    durable = floor == "durable"
    return Row(
        f"command→ack round trip p{q * 100:.0f}",
        "ms",
        percentile(samples["agent"], q) * 1000,
        percentile(samples[floor], q) * 1000,
        DURABLE_IS if durable else BARE_IS,
        goal_max=None,
        note="goal: agent ≤ 1.3× the durable floor" if durable else "",
    )


def row_rtt_p50(b: Bench) -> Row:
    return _rtt(b, "floor", 0.5)


def row_rtt_p99(b: Bench) -> Row:
    return _rtt(b, "floor", 0.99)


def row_rtt_durable_p50(b: Bench) -> Row:
    return _rtt(b, "durable", 0.5)


def row_rtt_durable_p99(b: Bench) -> Row:
    return _rtt(b, "durable", 0.99)


def _throughput(b: Bench, floor: str) -> Row:
    rates = b.throughput
    return Row(
        f"commands per second, {IN_FLIGHT} in flight",
        "1/s",
        rates["agent"],
        rates[floor],
        DURABLE_IS if floor == "durable" else BARE_IS,
        f"median of {FLOOD_BLOCKS} blocks of {FLOOD}; higher is better",
        digits=0,
    )


def row_throughput(b: Bench) -> Row:
    return _throughput(b, "floor")


def row_throughput_durable(b: Bench) -> Row:
    return _throughput(b, "durable")


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
        "1 SQLite commit, one fsync (the delete rides on the next)",
    )


def row_program_update(b: Bench) -> Row:
    u = b.program_update
    return Row(
        "program update, 1 of 20 files changed: bytes sent",
        "×",
        u["ratio"],
        1.0,
        "the changed file's bytes",
        f"{u['v2_sent_bytes']} B sent for a {u['changed_file_bytes']} B file, headers included",
        goal_max=1.01,
        digits=4,
    )


def row_boot(b: Bench) -> Row:
    agent, floor = b.boots
    return Row(
        "boot to first play from cache, no broker p50",
        "s",
        percentile(agent, 0.5),
        percentile(floor, 0.5),
        "python -c 'import agent.daemon'",
        f"p50 of {len(agent)} boots, broker port closed",
        goal_max=1.5,
        digits=3,
    )


def _on_screen(row: ScreenRowFunction) -> RowFunction:
    """A row of scripts/screen_bench.py as a row of this table."""

    def run(b: Bench) -> Row | ScreenRow:
        return row(b.screen)

    run.__name__ = row.__name__
    return run


def _on_tts(row: TtsRowFunction) -> RowFunction:
    """A row of scripts/tts_bench.py as a row of this table."""

    def run(b: Bench) -> Row:
        return Row(**asdict(row(b.tts)))

    run.__name__ = row.__name__
    return run


# The program rows come after the round trips (their downloads would disturb them), and the
# boot row after them: it stops the agent. The screen rows measure CPU and the TTS rows time
# synthesis in this process, so they come last, when the bench's agent is stopped; the TTS rows
# after the screen rows, since onnxruntime keeps files open in this process and the screen rows
# hand Chromium its DevTools pipes through /bin/sh, which takes single-digit fds only.
COMMAND_ROWS: list[RowFunction] = [
    row_rtt_p50,
    row_rtt_p99,
    row_rtt_durable_p50,
    row_rtt_durable_p99,
    row_throughput,
    row_throughput_durable,
]
ROWS: list[RowFunction] = [
    *COMMAND_ROWS,
    row_idle_rss,
    row_peak_rss,
    row_verify,
    row_durable,
    row_program_update,
    row_boot,
    *(_on_screen(row) for row in SCREEN_ROWS),
    *(_on_tts(row) for row in TTS_ROWS),
]


# --------------------------------------------------------------------------- output


def format_value(value: float | None, digits: int | None = None) -> str:
    if value is None:
        return "—"
    if digits is not None:
        return f"{value:.{digits}f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(rows: Sequence[Row | ScreenRow]) -> None:
    header = ("figure", "unit", "agent", "floor", "ratio", "goal", "floor is")
    lines = [header] + [
        (
            r.figure,
            r.unit,
            format_value(r.agent, r.digits),
            format_value(r.floor, r.digits),
            "—" if r.ratio is None else f"{r.ratio:.1f}×",
            r.goal or "—",
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
        if (func == "get" and file.endswith("queue.py"))
        or func == "<method 'get' of '_queue.SimpleQueue' objects>"
    )
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    busy = total - waiting
    print(f"\n== cProfile of the agent (top {limit} by own time) — full text in {text_out} ==")
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    print(
        f"director: {total:.2f} s profiled, {waiting:.2f} s waiting for events, {busy:.2f} s busy "
        f"(start-up included) ≈ {busy / max(1, pings + WARMUP) * 1000:.2f} ms per ping at most"
    )


def print_stages(path: Path, phase: str) -> dict[str, Any]:
    """Print the agent's per-stage times (``scripts/stage_times.py``); return them."""
    stages: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    print(f"\n== the agent's command path, µs per stage ({phase}) ==")
    print(f"{'stage':<16}{'n':>8}{'p50':>10}{'p99':>10}{'mean':>10}")
    for stage, v in stages.items():
        print(f"{stage:<16}{v['n']:>8}{v['p50_us']:>10}{v['p99_us']:>10}{v['mean_us']:>10}")
    print()
    return stages


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
    parser.add_argument(
        "--out",
        type=Path,
        help="the JSON report (default bench-out/bench.json; bench-out/bench-<only>.json "
        "with --only)",
    )
    parser.add_argument("--pings", type=int, default=1000, help="measured pings per path")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the agent under cProfile and print where its main thread spends time "
        "(slows the agent down: latencies of a profiled run are not comparable)",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="run the agent under scripts/stage_times.py and print the microseconds each stage "
        "of its command path took (p50, p99)",
    )
    parser.add_argument(
        "--only",
        choices=["commands", "screen", "tts"],
        help="run only these rows (commands: the command→ack round trips and throughput "
        "against the bare and the durable echo; screen: the agent's screen against headless "
        "Chromium; "
        "tts: Piper and espeak-ng speaking an announcement)",
    )
    parser.add_argument(
        "--screen-settle",
        type=float,
        default=SCREEN_SETTLE_S,
        help="screen rows: seconds from the scene shown to the measurement (default %(default)s)",
    )
    parser.add_argument(
        "--screen-window",
        type=float,
        default=SCREEN_WINDOW_S,
        help="screen rows: seconds measured, per scene and side (default %(default)s)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    if args.only == "screen":
        return run_screen(args)
    if args.only == "tts":
        return run_tts(args)
    default = "bench-commands.json" if args.only == "commands" else "bench.json"
    out: Path = (args.out or ROOT / "bench-out" / default).resolve()
    workdir = out.parent / ("run-commands" if args.only == "commands" else "run")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    key = SigningKey.generate("bench")
    topics = Topics(PREFIX)
    profile = workdir / "agent.prof"
    started = time.monotonic()

    with contextlib.ExitStack() as stack:
        # No persistence: its saves every second would be part of the latencies measured.
        # 100 commands in flight need the broker to let 100 go to a client unacknowledged.
        broker = stack.enter_context(
            Broker(
                workdir / "broker",
                extra=f"max_inflight_messages {IN_FLIGHT}",
                persistence=False,
            )
        )
        media = stack.enter_context(MediaServer())
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
        stages = workdir / "stages.json"
        python_args: tuple[str, ...] = ()
        if args.profile:
            python_args = ("-m", "cProfile", "-o", str(profile))
        elif args.stages:
            python_args = (str(SCRIPTS / "stage_times.py"), str(stages))
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
        # The durable floor's database on the same disk as the agent's state.
        durable_out = workdir / "durable-echo.out"
        durable = spawn(
            [
                sys.executable,
                str(SCRIPTS / "echo_floor.py"),
                str(broker.port),
                topics.dev(DURABLE, "cmd"),
                topics.dev(DURABLE, "ack"),
                "--durable",
                str(workdir / "durable-floor.db"),
            ],
            durable_out,
        )
        stack.callback(stop_process, durable, 5)
        wait_for(lambda: "ready" in tail_text(echo_out), 10, "the echo client")
        wait_for(lambda: "ready" in tail_text(durable_out), 10, "the durable echo client")
        replies = [topics.dev(name, "ack") for name in (DEVICE, ECHO, DURABLE)]
        pinger = Pinger(broker.port, replies)
        stack.callback(pinger.close)

        bench = Bench(args.pings, workdir, broker, agent, echo, durable, pinger, key, media, config)
        bench.screen_settle_s, bench.screen_window_s = args.screen_settle, args.screen_window
        bench.stages = stages if args.stages else None
        time.sleep(SETTLE_S)
        bench.idle_kib = {"agent": proc_status_kib(agent.pid), "floor": proc_status_kib(echo.pid)}
        print(
            f"measuring {args.pings} pings per path, one at a time, alternating blocks of {BLOCK}"
            f" (after {WARMUP} warm-up pings each)…",
            file=sys.stderr,
        )
        try:
            rows = [row(bench) for row in (COMMAND_ROWS if args.only == "commands" else ROWS)]
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
    extra: dict[str, Any] = {"pings": args.pings, "profiled": bool(args.profile)}
    if args.only:
        extra["only"] = args.only
    return write_report(out, workdir, started, rows, bench.details, extra)


def write_report(
    out: Path,
    workdir: Path,
    started: float,
    rows: Sequence[Row | ScreenRow],
    details: dict[str, Any],
    extra: dict[str, Any],
) -> int:
    """Print the table and write the JSON report; the exit status."""
    print_table(rows)
    report = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
        "host": host_facts(workdir),
        "rows": [r.as_json() for r in rows],
        "details": details,
        "wall_s": round(time.monotonic() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


def run_screen(args: argparse.Namespace) -> int:
    """``--only screen``: a broker, and the screen rows."""
    out: Path = (args.out or ROOT / "bench-out" / "bench-screen.json").resolve()
    workdir = out.parent / "run-screen"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    with Broker(workdir / "broker", persistence=False) as broker:
        screen = ScreenBench(workdir / "screen", broker.url, args.screen_settle, args.screen_window)
        rows = [row(screen) for row in SCREEN_ROWS]
    return write_report(out, workdir, started, rows, {"screen": screen.details}, {"only": "screen"})


def run_tts(args: argparse.Namespace) -> int:
    """``--only tts``: the TTS rows (no broker, no agent process)."""
    out: Path = (args.out or ROOT / "bench-out" / "bench-tts.json").resolve()
    workdir = out.parent / "run-tts"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    tts = TtsBench(workdir)
    rows = [Row(**asdict(row(tts))) for row in TTS_ROWS]
    return write_report(out, workdir, started, rows, {"tts": tts.details}, {"only": "tts"})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.pings < 10:
        print("bench: --pings must be at least 10", file=sys.stderr)
        return 2
    if args.screen_settle < 0 or args.screen_window < 1:
        print("bench: --screen-settle must be ≥ 0 and --screen-window ≥ 1", file=sys.stderr)
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
