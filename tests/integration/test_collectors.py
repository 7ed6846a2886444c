"""Collectors as real processes on a real Mosquitto and a real database (PostgreSQL, and SQLite
too): two of them share the playlogs through an MQTT 5 shared subscription; one is killed
(SIGKILL) mid-stream and started again; every playlog entry is stored exactly once, none lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from controlplane.store import Store
from tests.helpers import PREFIX, ROOT, Broker, Listener, wait_for

DEVICES = [f"q10-p{12 + n % 4}-loa-{n:02d}" for n in range(10)]
BATCHES = 500  # playlog messages, published with QoS 1
PER_BATCH = 2  # entries in each
GROUP = "ttcs-collectors-test"


class CollectorProcess:
    """``python -m controlplane.collect`` as a child process."""

    def __init__(self, tmp: Path, broker: Broker, db_url: str, client_id: str) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "controlplane.collect",
            "--db",
            db_url,
            "--broker",
            broker.url,
            "--client-id",
            client_id,
            "--group",
            GROUP,
        ]
        self.output = tmp / f"{client_id}.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> CollectorProcess:
        self.runs += 1
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for(lambda: self._subscribed() >= self.runs, 30, f"{self.output.name} subscribed")
        return self

    def _subscribed(self) -> int:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"collector exited: {self.output.read_text()[-3000:]}")
        return self.output.read_text().count("subscribed in group") if self.output.exists() else 0

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.proc = None
        return code

    def text(self) -> str:
        return self.output.read_text()


def _batch(n: int) -> tuple[str, bytes, list[str]]:
    device = DEVICES[n % len(DEVICES)]
    entries = []
    for k in range(PER_BATCH):
        start = f"2026-11-26T{n // 60 % 24:02d}:{n % 60:02d}:{k * 20:02d}Z"
        end = f"2026-11-26T{n // 60 % 24:02d}:{n % 60:02d}:{k * 20 + 15:02d}Z"
        entries.append(
            {
                "id": f"{device}-{n:04d}-{k}",
                "bulletin": f"tb-{n % 7:02d}",
                "channel": "speaker",
                "started_at": start,
                "ended_at": end,
                "outcome": "completed",
            }
        )
    doc = {"v": 1, "device": device, "entries": entries}
    return f"{PREFIX}/dev/{device}/playlog", json.dumps(doc).encode(), [e["id"] for e in entries]


def _count(store: Store) -> int:
    with store.db.transaction() as tx:
        row = tx.one("SELECT COUNT(*) FROM playlog")
    return int(row[0]) if row else 0


def test_two_collectors_one_killed_every_entry_stored_once(
    tmp_path: Path, broker: Broker, store_url: str
) -> None:
    first = CollectorProcess(tmp_path, broker, store_url, "ttcs-collector-1").start()
    second = CollectorProcess(tmp_path, broker, store_url, "ttcs-collector-2").start()
    expected: list[str] = []
    with Listener(broker, []) as devices, Store.open(store_url) as store:
        for device in DEVICES:
            state = {"v": 1, "online": True, "device": device, "groups": [device[:7], "q10"]}
            devices.publish(f"{PREFIX}/dev/{device}/state", json.dumps(state).encode(), True)

        def publish_all() -> None:
            for n in range(BATCHES):
                topic, payload, ids = _batch(n)
                expected.extend(ids)
                devices.publish(topic, payload)
                time.sleep(0.004)  # a steady stream of about 2 s, so the kill lands in it

        publisher = threading.Thread(target=publish_all)
        publisher.start()
        try:
            at_kill = wait_for(
                lambda: (c := _count(store)) >= BATCHES * PER_BATCH // 5 and c, 30, "a fifth"
            )
            first.stop(signal.SIGKILL)  # mid-stream, mid-batch as likely as not
            assert publisher.is_alive(), "the stream ended before the kill: nothing proven"
        finally:
            publisher.join(60)
        # The survivor goes on with its share; the killed one's share waits in its session.
        wait_for(lambda: _count(store) > at_kill + 100, 30, "the second collector to go on")
        first.start()  # as systemd's Restart= would: the same client id, the same session
        wait_for(lambda: _count(store) == len(expected), 60, "every entry stored")
        time.sleep(0.5)  # anything delivered twice has had its chance to be stored twice
        assert store.playlog_ids() == sorted(expected)
        assert len(set(expected)) == BATCHES * PER_BATCH
        with store.db.transaction() as tx:
            wards: dict[str, int] = dict(
                tx.rows("SELECT ward, COUNT(*) FROM playlog GROUP BY ward")
            )
        assert set(wards) == {d[:7] for d in DEVICES}  # the retained states were read first
    assert first.stop() == 0
    assert second.stop() == 0
    # Each stored a part; the sums of what they stored add up exactly.
    stored = [
        int(line.split(": ", 1)[1].split(" new playlog")[0])
        for line in (first.text() + second.text()).splitlines()
        if line.startswith("collected ")
    ]
    assert len(stored) == 2 and all(n > 0 for n in stored)
    assert second.text().count("collected ") == 1
