"""Acks written while the broker is down wait in the agent's SQLite outbox, across an agent
restart, and reach the broker once it returns: none lost, none sent twice."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_cli,
    command,
    wait_for,
    wait_state,
)

BATCH = 10  # injected before and again after the agent's restart: 20 acks in all


def _status(device: Device) -> dict[str, Any]:
    out = agent_cli("status", "--json", "--config", str(device.config))
    assert out.returncode == 0, out.stderr
    status: dict[str, Any] = json.loads(out.stdout)
    return status


def _inject_batch(tmp: Path, device: Device, key: SigningKey, tag: str) -> list[str]:
    """Hand BATCH signed pings to the agent through ``ttcs-agent inject``; return their ids."""
    files: list[Path] = []
    ids: list[str] = []
    for n in range(BATCH):
        _, payload, doc = command(key, "ping")
        path = tmp / f"{tag}-{n}.json"
        path.write_bytes(payload)
        files.append(path)
        ids.append(doc["id"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda f: agent_cli("inject", str(f), "--config", str(device.config)), files)
        )
    for path, doc_id, out in zip(files, ids, results, strict=True):
        assert out.returncode == 0, f"inject {path}: {out.stdout}{out.stderr}"
        ack = json.loads(out.stdout.splitlines()[-1])
        assert (ack["cmd"], ack["status"]) == (doc_id, "done")
    return ids


def test_acks_queued_while_broker_is_down_arrive_exactly_once(
    tmp_path: Path, broker: Broker, device: Device, agent: AgentProcess, signing_key: SigningKey
) -> None:
    # A persistent session: the broker keeps the subscription and queues acks for this
    # listener while it is away, also across the broker's restart (it persists sessions).
    listener = Listener(
        broker,
        [f"{PREFIX}/dev/+/ack", f"{PREFIX}/dev/+/state"],
        persistent=True,
        client_id="test-outbox-listener",
    )
    with listener:
        wait_state(listener, device.device_id, online=True, timeout=15)
        broker.stop()
        wait_for(
            lambda: not _status(device)["link"]["connected"], 15, "the agent to lose the broker"
        )

        first = _inject_batch(tmp_path, device, signing_key, "before-restart")
        assert _status(device)["outbox"] >= BATCH

        assert agent.stop() == 0  # the broker is still down: nothing could be flushed
        agent.start()
        status = _status(device)
        assert not status["link"]["connected"]
        assert status["outbox"] >= BATCH, "the outbox did not survive the restart"
        second = _inject_batch(tmp_path, device, signing_key, "after-restart")
        assert _status(device)["outbox"] >= 2 * BATCH

        assert listener.acks() == [], "an ack got out while the broker was down?"
        broker.start()  # the same port again

        expected = set(first + second)

        def all_arrived() -> bool:
            return {a["cmd"] for a in listener.acks()} >= expected

        wait_for(all_arrived, 30, "every queued ack to reach the broker")
        wait_for(lambda: _status(device)["outbox"] == 0, 15, "the outbox to drain")
        time.sleep(1.5)  # anything sent twice would arrive now

        counts = Counter(a["cmd"] for a in listener.acks() if a["cmd"] in expected)
        assert set(counts) == expected
        twice = {doc_id: n for doc_id, n in counts.items() if n != 1}
        assert not twice, f"acks delivered more than once: {twice}"
        assert all(a["status"] == "done" for a in listener.acks() if a["cmd"] in expected)
