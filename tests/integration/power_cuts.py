"""Power cuts at random moments, many times over: the harness behind ``test_power_cuts``.

Each round does one thing to a running agent (a program switch with downloads, an emergency
started and stopped, a volume and power change, a playlog flush, an upgrade of an older store)
and SIGKILLs it at a random moment of it. Then, before the agent runs again: its SQLite passes
``PRAGMA integrity_check`` and no half-written file is visible in the cache; what its outbox
and play log hold is noted by id. It boots with the broker down (the time until its status
names a bulletin on the screen is measured), the broker returns, and every command of the
round gets its final ack. At the end every noted ack and playlog entry has arrived, none with
two different contents (executed twice); an identical copy is a redelivery, which the id makes
harmless (PROTOCOL.md), and is counted.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.control_socket import AgentNotRunning, request
from agent.store import Store
from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    MediaServer,
    agent_status,
    command,
    media_doc,
    misplaced_files,
    program,
    wait_for,
)
from tests.integration.power_cut_report import REPORTS, SCENARIOS, Outcome, duplicates, table

FINAL = {"done", "failed", "rejected", "duplicate"}
# Tables an older store did not have: an upgrade creates them (CREATE TABLE IF NOT EXISTS).
NEWER_TABLES = ("playlog_open", "playlog_pending")
FLUSH_S = 10  # agent.daemon.PLAYLOG_FLUSH_S: the playlog tick, counted from the agent's start
# Every wait's limit: generous, as the machine may be busy with much else (no timed assertion).
SLOW = 90.0
# A file that a long run rewrites after every round with the table so far (make chaos).
PROGRESS = os.environ.get("TTCS_CHAOS_PROGRESS", "")


@dataclass
class Run:
    """The state of a chaos run: the agent, the broker, what was sent and what was noted."""

    broker: Broker
    device: Device
    key: SigningKey
    media: MediaServer
    listener: Listener
    rng: random.Random
    agent: AgentProcess
    version: int = 0
    bulletins: set[str] = field(default_factory=set)  # every bulletin id any program had
    sent: list[str] = field(default_factory=list)  # command and program ids, in order
    noted_acks: set[tuple[str, str]] = field(default_factory=set)  # (cmd, status) on the device
    noted_entries: set[str] = field(default_factory=set)  # playlog entry ids on the device
    outcomes: dict[str, Outcome] = field(default_factory=lambda: defaultdict(Outcome))
    volume: int | None = None

    @property
    def db(self) -> Path:
        return self.device.state_dir / "agent.db"

    def send(self, doc_type: str, body: dict[str, Any]) -> str:
        _, payload, doc = command(self.key, doc_type, body=body)
        self.listener.publish(f"{PREFIX}/dev/{self.device.device_id}/cmd", payload)
        self.sent.append(doc["id"])
        return str(doc["id"])

    def push_program(self, files: int) -> str:
        """A new program version: a text bulletin of 1 s and ``files`` images to download."""
        self.version += 1
        number = self.version
        items: list[dict[str, Any]] = [
            {
                "id": f"tb-v{number}-chu",
                "title": f"Thông báo số {number}",
                "screen": {
                    "kind": "text",
                    "text": f"Lịch tiếp dân số {number}",
                    "duration_ms": 1000,
                },
            }
        ]
        for n in range(files):
            data = self.rng.randbytes(self.rng.randint(50_000, 400_000))
            url = self.media.add(f"v{number}/anh-{n}.png", data)
            items.append(
                {
                    "id": f"tb-v{number}-anh-{n}",
                    "title": "Ảnh thông báo",
                    "screen": {
                        "kind": "image",
                        "media": media_doc(url, data, "image/png"),
                        "duration_ms": 1000,
                    },
                }
            )
        topic, payload, doc = program(self.key, number, items)
        self.listener.publish(topic, payload, retain=True)
        self.bulletins.update(b["id"] for b in items)
        self.sent.append(doc["id"])
        return str(doc["id"])


# --------------------------------------------------------------------------- scenarios


def act_program(run: Run) -> None:
    run.push_program(files=run.rng.randint(1, 3))
    time.sleep(run.rng.uniform(0, 1.5))


def act_emergency(run: Run) -> None:
    bulletin = {
        "id": f"kc-{run.rng.randrange(10**6)}",
        "title": "Cảnh báo lũ quét",
        "level": "emergency",
        "screen": {"kind": "text", "text": "Di chuyển lên tầng cao ngay"},
    }
    started = run.send("emergency.start", {"bulletin": bulletin})
    time.sleep(run.rng.uniform(0, 0.6))
    run.send("emergency.stop", {"ref": started})
    time.sleep(run.rng.uniform(0, 0.6))


def act_settings(run: Run) -> None:
    run.volume = run.rng.randint(0, 100)
    run.send("volume.set", {"percent": run.volume})
    time.sleep(run.rng.uniform(0, 0.3))
    # Never the screen "off": a board ordered dark rightly shows nothing after its boot.
    power = {"screen": run.rng.choice(["on", "auto"]), "amplifier": run.rng.choice(["on", "off"])}
    run.send("power.set", power)
    time.sleep(run.rng.uniform(0, 0.5))


def inject_volume(run: Run) -> None:
    """A signed volume.set through the control socket; its ack is due once the broker is back."""
    run.volume = run.rng.randint(0, 100)
    _, payload, doc = command(run.key, "volume.set", body={"percent": run.volume})
    answer = request(run.device.socket, "inject", document=payload.decode("utf-8"))
    assert answer.get("ok") and answer["acks"][0]["status"] == "done", answer
    run.sent.append(doc["id"])


def act_playlog(run: Run) -> None:
    # Around the next flush tick: the agent moves pending entries into one outbox message.
    uptime = float(agent_status(run.device)["uptime_s"])
    time.sleep(max(0.0, FLUSH_S - uptime % FLUSH_S - 0.5 + run.rng.uniform(0, 1.0)))


def act_migration(run: Run) -> None:
    # A clean stop flushes the play log; then the store is made as an older release left it.
    run.agent.stop()
    with sqlite3.connect(run.db) as db:
        for table in NEWER_TABLES:
            (rows,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
            assert rows == 0, f"{table} holds {rows} rows after a clean stop"
            db.execute(f"DROP TABLE {table}")
        db.execute("PRAGMA user_version = 0")  # releases before schema versions had none
    run.agent.start(wait_socket=False)
    time.sleep(run.rng.uniform(0, 1.5))  # the kill lands before, during or after the upgrade


ACTS: dict[str, Callable[[Run], None]] = {
    "program": act_program,
    "emergency": act_emergency,
    "settings": act_settings,
    "playlog": act_playlog,
    "migration": act_migration,
}


# --------------------------------------------------------------------------- after a kill


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of the store as the kill left it (its WAL included)."""
    if not db.exists():
        return "ok"
    with sqlite3.connect(db) as conn:
        return ";".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check"))


def note_held(run: Run) -> None:
    """Note, by id, every ack and playlog entry the killed agent holds: all must arrive."""
    if not run.db.exists():
        return
    with sqlite3.connect(run.db) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for topic, payload in db.execute("SELECT topic, payload FROM outbox"):
            doc = json.loads(payload)
            if topic.endswith("/ack") and doc.get("cmd"):
                run.noted_acks.add((doc["cmd"], doc["status"]))
            elif topic.endswith("/playlog"):
                run.noted_entries.update(e["id"] for e in doc["entries"])
        if "playlog_pending" in tables:
            run.noted_entries.update(r[0] for r in db.execute("SELECT id FROM playlog_pending"))
        if "playlog_open" in tables:  # recorded as interrupted at the next start
            run.noted_entries.update(r[0] for r in db.execute("SELECT id FROM playlog_open"))


def start_online(run: Run) -> None:
    """Start the agent and wait until it is connected and subscribed."""
    run.agent.start(wait_socket=False)

    def online() -> bool:
        try:
            return bool(agent_status(run.device)["link"]["connected"])
        except (AgentNotRunning, OSError, ValueError):
            return False

    wait_for(online, SLOW, "the agent to be connected and subscribed")


def boot_offline(run: Run, where: str) -> float:
    """Start the agent with the broker down; seconds until its screen names a bulletin."""
    run.broker.stop()
    started = time.monotonic()
    run.agent.start(wait_socket=False)

    def on_screen() -> float:
        try:
            status = agent_status(run.device)
        except (AgentNotRunning, OSError, ValueError):  # not listening yet
            return 0.0
        shown = status["now"]["screen"]
        assert status["link"]["connected"] is False
        return time.monotonic() - started if shown is not None else 0.0

    seconds: float = wait_for(on_screen, SLOW, f"a bulletin from the cache on the screen ({where})")
    shown = agent_status(run.device)["now"]["screen"]
    assert shown in run.bulletins or shown.startswith("kc-"), shown
    return seconds


def final_acks(run: Run) -> dict[str, set[str]]:
    statuses: dict[str, set[str]] = defaultdict(set)
    for ack in run.listener.acks():
        if ack.get("cmd"):
            statuses[ack["cmd"]].add(ack["status"])
    return statuses


def round_(run: Run, index: int, scenario: str) -> None:
    where = f"round {index} ({scenario})"
    outcome = run.outcomes[scenario]
    outcome.rounds += 1
    ACTS[scenario](run)
    if run.rng.random() < 0.5:
        # The link goes first, half the time, and a technician brings a volume change on a
        # USB stick (``inject``): its ack waits in the outbox when the kill comes. Not in a
        # "settings" round (its own volume.set may still wait in the broker and come after),
        # nor in a "migration" one (the agent may not be listening yet).
        run.broker.stop()
        outcome.link_cut += 1
        if scenario not in ("settings", "migration"):
            inject_volume(run)
        time.sleep(run.rng.uniform(0, 1.0))
    run.agent.kill()
    check = integrity(run.db)
    if check != "ok":
        outcome.integrity_failures += 1
    assert check == "ok", f"{where}: integrity_check says {check}"
    bad = misplaced_files(run.device.cache_dir)
    outcome.misplaced += len(bad)
    assert bad == [], f"{where}: half-written files visible: {bad}"
    note_held(run)
    outcome.boot_s.append(boot_offline(run, where))
    run.broker.start()

    def settled() -> bool:
        acks = final_acks(run)
        return all(acks.get(doc_id, set()) & FINAL for doc_id in run.sent)

    wait_for(settled, SLOW, f"every command's final ack ({where})")
    if run.volume is not None:
        wait_for(lambda: agent_status(run.device)["volume"] == run.volume, SLOW, "the volume")


def run_power_cuts(
    broker: Broker, device: Device, key: SigningKey, rounds: int, seed: int
) -> dict[str, Any]:
    """``rounds`` rounds, each a random scenario (every scenario at least once when rounds
    allow); returns the figures and adds their table to ``REPORTS``."""
    rng = random.Random(seed)
    order = [SCENARIOS[i % len(SCENARIOS)] for i in range(rounds)]
    rng.shuffle(order)
    listener = Listener(
        broker,
        [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/playlog"],
        persistent=True,
        client_id=f"test-power-cuts-{seed}",
    )
    with MediaServer() as media, listener:
        run = Run(broker, device, key, media, listener, rng, AgentProcess(device))
        try:
            start_online(run)
            first = run.push_program(files=1)
            listener.wait_ack(first, "done", timeout=SLOW)
            for index, scenario in enumerate(order):
                try:
                    round_(run, index, scenario)
                except AssertionError as exc:
                    raise AssertionError(f"seed {seed}: {exc}") from exc
                if PROGRESS:  # a long run shows how far it got, round by round
                    rows = table(progress(run, index + 1, seed))
                    Path(PROGRESS).write_text("\n".join(rows) + "\n", encoding="utf-8")
            run.agent.stop()  # a clean stop flushes the play log into the outbox
            note_held(run)
            start_online(run)
            wait_for(lambda: agent_status(device)["outbox"] == 0, SLOW, "an empty outbox")
            run.agent.stop()
        finally:
            run.agent.kill()  # after a failure (a clean stop came first otherwise)
        time.sleep(1.0)  # anything sent twice arrives now
        received_acks = {(a["cmd"], a["status"]) for a in listener.acks() if a.get("cmd")}
        received_entries = {e["id"] for m in listener.json_on("/playlog") for e in m["entries"]}
        store = Store(run.db)
        try:
            left = (store.outbox_size(), store.playlog_pending_count(), len(store.open_plays()))
        finally:
            store.close()
        twice, ack_again, entries_twice, entry_again = duplicates(listener)
    figures = {
        "rounds": rounds,
        "seed": seed,
        "acks_noted": len(run.noted_acks),
        "entries_noted": len(run.noted_entries),
        "acks_lost": sorted(run.noted_acks - received_acks),
        "entries_lost": sorted(run.noted_entries - received_entries),
        "acks_executed_twice": twice,
        "acks_redelivered": ack_again,
        "entries_twice": entries_twice,
        "entries_redelivered": entry_again,
        "entries": len(received_entries),
        "left_on_device": left,
        "outcomes": dict(run.outcomes),
    }
    REPORTS.append(table(figures))
    return figures


def progress(run: Run, rounds: int, seed: int) -> dict[str, Any]:
    """The figures after ``rounds`` rounds, before the final delivery checks."""
    return {
        "rounds": rounds,
        "seed": seed,
        "acks_noted": len(run.noted_acks),
        "entries_noted": len(run.noted_entries),
        "acks_lost": "(at the end)",
        "entries_lost": "(at the end)",
        "acks_executed_twice": "(at the end)",
        "acks_redelivered": "(at the end)",
        "entries_twice": "(at the end)",
        "entries_redelivered": "(at the end)",
        "entries": "(at the end)",
        "left_on_device": "(at the end)",
        "outcomes": dict(run.outcomes),
    }
