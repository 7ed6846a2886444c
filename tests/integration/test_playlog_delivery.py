"""Proof of play across a broker restart and an agent restart, against a real Mosquitto and a real
agent: every play is reported once (no id twice), on both channels, from before, during and
after the outages, and the screen's entries leave no hole while the agent ran (the board never
went black)."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

from agent.store import Store
from controlplane.keys import SigningKey
from protocol import parse_time
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_errors,
    agent_status,
    command,
    program,
    wait_for,
)

DEV = "q10-p12-bang-01"
TICK_S = 10  # the daemon flushes the playlog every 10 s (PLAYLOG_FLUSH_S)
MAX_GAP_S = 2  # entries carry whole seconds; a 1 s item is reported within them


def rotation_item(n: int) -> dict[str, Any]:
    return {
        "id": f"tb-xoay-{n}",
        "title": f"Bảng tin số {n}",
        "screen": {"kind": "text", "text": f"Thông báo số {n} của phường", "duration_ms": 1000},
    }


def speaker_item(bulletin_id: str) -> dict[str, Any]:
    return {
        "id": bulletin_id,
        "title": "Thông báo phát loa",
        "speaker": {"kind": "tts", "text": "Kính mời bà con đi tiêm chủng vào sáng thứ Bảy."},
    }


def entries_of(listener: Listener) -> list[dict[str, Any]]:
    return [e for msg in listener.json_on(f"/dev/{DEV}/playlog") for e in msg["entries"]]


def at(entry: dict[str, Any], key: str) -> float:
    return parse_time(entry[key]).timestamp()


def started_ms(entry: dict[str, Any]) -> int:
    """When a play started, to the millisecond: an entry id is the device, the start in hex
    milliseconds (11 digits) and random hex."""
    return int(entry["id"][len(DEV) + 1 :][:11], 16)


def wall(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")


def test_playlogs_survive_a_broker_restart_and_an_agent_restart(
    broker: Broker, device: Device, signing_key: SigningKey
) -> None:
    listener = Listener(
        broker,
        [f"{PREFIX}/dev/+/playlog", f"{PREFIX}/dev/+/ack"],
        persistent=True,
        client_id="test-playlog-delivery",
    )
    agent = AgentProcess(device)
    with listener:
        agent.start(wait_online=True)
        try:
            bulletins = [rotation_item(n) for n in range(1, 4)] + [speaker_item("tb-loa-01")]
            topic, payload, doc = program(signing_key, 1, bulletins)
            listener.publish(topic, payload, retain=True)
            listener.wait_ack(doc["id"], "done", timeout=15)

            # Run until the first batch arrives: a flush tick just happened.
            wait_for(lambda: entries_of(listener), TICK_S + 5, "the first playlog batch")
            tick = time.time()

            # The broker goes away across the next tick: that batch waits in the outbox.
            time.sleep(max(0.0, tick + TICK_S - 3 - time.time()))
            broker_down = time.time()
            broker.stop()
            wait_for(
                lambda: agent_status(device)["outbox"] >= 1,
                TICK_S,
                "a playlog batch queued while the broker is down",
            )
            broker_up_at = time.time()
            broker.start()

            def outage_delivered() -> bool:
                during = [e for e in entries_of(listener) if at(e, "started_at") >= broker_down]
                return bool(during) and agent_status(device)["outbox"] == 0

            wait_for(outage_delivered, 15, "the batch queued during the outage")
            time.sleep(3)  # plays between the outages: flushed when the agent stops

            # The agent restarts (SIGTERM: it flushes what it has at shutdown).
            agent_down = time.time()
            assert agent.stop() == 0
            agent.start(wait_online=True)
            agent_up = time.time()
            _, payload, now_doc = command(
                signing_key, "play.now", body={"bulletin": speaker_item("tb-loa-02")}
            )
            listener.publish(f"{PREFIX}/dev/{DEV}/cmd", payload)
            listener.wait_ack(now_doc["id"], "done", timeout=10)
            time.sleep(TICK_S + 1)  # at least one tick of the new process
        finally:
            stopped = time.time()
            assert agent.stop() == 0

        # Nothing was left behind on the device: all of it reached the broker.
        store = Store(device.state_dir / "agent.db")
        try:
            assert store.open_plays() == []
            assert store.playlog_pending_count() == 0
            assert store.outbox_size() == 0
        finally:
            store.close()
        time.sleep(1.0)  # anything sent twice would arrive now
        entries = entries_of(listener)

    assert agent_errors(agent) == [], "the agent logged errors"
    ids = [e["id"] for e in entries]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    assert not twice, f"entries delivered more than once: {twice}"
    assert all(e["id"].startswith(f"{DEV}-") for e in entries)

    screen = sorted((e for e in entries if e["channel"] == "screen"), key=started_ms)
    speaker = [e for e in entries if e["channel"] == "speaker"]
    assert {e["bulletin"] for e in screen} == {"tb-xoay-1", "tb-xoay-2", "tb-xoay-3"}
    assert sorted(e["bulletin"] for e in speaker) == ["tb-loa-01", "tb-loa-02"], speaker
    assert all(e["outcome"] == "completed" for e in speaker), speaker

    def started_between(start: float, end: float) -> list[dict[str, Any]]:
        return [e for e in screen if start <= at(e, "started_at") < end]

    assert started_between(0, broker_down), "nothing from before the broker's outage"
    assert started_between(broker_down, broker_up_at), "nothing from during the outage"
    assert started_between(broker_up_at, agent_down), "nothing from between the outages"
    assert started_between(agent_up, stopped), "nothing from after the agent's restart"

    # The board never went black: each showing starts when the one before it ends, except
    # while the agent itself was restarting.
    holes = []
    for before, after in itertools.pairwise(screen):
        gap_from, gap_to = at(before, "ended_at"), at(after, "started_at")
        restarting = agent_down - 1 <= gap_from and gap_to <= agent_up + 1
        if gap_to - gap_from > MAX_GAP_S and not restarting:
            holes.append(f"{wall(gap_from)}–{wall(gap_to)}")
    assert not holes, f"the screen showed nothing during {holes}"
    interrupted = [e for e in screen if e["outcome"] != "completed"]
    assert len(interrupted) <= 2, f"only the two stops interrupt a showing: {interrupted}"
