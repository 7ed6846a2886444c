"""agent.director driven through handle()/on_message(), with a real store and a fake link."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.director import CAPABILITIES, Director
from agent.events import Delivered, Inbound, LinkReset, LinkUp, Request, Stop
from agent.store import Store
from protocol import COMMAND_TYPES
from tests.unit.fakes import (
    ACK_TOPIC,
    CMD_TOPIC,
    DEVICE,
    NOW,
    PROGRAM_TOPIC,
    TOPICS,
    FakeClock,
    FakeMonotonic,
    FakePublisher,
    Rig,
    Signer,
    agent_config,
    bulletin,
    document,
    make_rig,
    program_body,
)

PASSWORD = "mật-khẩu-Q10"


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "agent.db"


@pytest.fixture
def rig(tmp_path: Path, db_path: Path, signer: Signer) -> Iterator[Rig]:
    config = agent_config(
        tmp_path,
        signer,
        mqtt={"url": "mqtt://127.0.0.1:1883", "password": PASSWORD},
        paths={
            "state_dir": str(tmp_path / "state"),
            "cache_dir": str(tmp_path / "cache"),
            "log_file": str(tmp_path / "agent.log"),
        },
    )
    store = Store(db_path)
    r = make_rig(store, config, signer, secrets=config.secrets())
    yield r
    store.close()


def reopen(rig: Rig, db_path: Path) -> Rig:
    """The agent after a restart: a new store connection and a new director, same files."""
    rig.store.close()
    return make_rig(
        Store(db_path),
        rig.config,
        rig.signer,
        clock=rig.clock,
        monotonic=rig.monotonic,
        secrets=rig.config.secrets(),
    )


BODIES: dict[str, dict[str, Any]] = {
    "ping": {},
    "play.now": {"bulletin": bulletin(), "repeat": 1},
    "emergency.start": {"bulletin": bulletin(level="emergency"), "repeat_every_s": 60},
    "emergency.stop": {},
    "stream.start": {"url": "https://radio.example/live", "channels": ["speaker"]},
    "stream.stop": {},
    "volume.set": {"percent": 30},
    "power.set": {"screen": "off"},
    "screenshot": {"max_width": 640},
    "logs.upload": {"lines": 10},
    "agent.restart": {},
    "agent.update": {
        "version": "0.2.0",
        "url": "https://releases.example/ttcs-agent-0.2.0.release",
        "sha256": "a" * 64,
        "size": 1000,
    },
}


# --------------------------------------------------------------------------- commands


def test_ping_acks_done(rig: Rig) -> None:
    rig.send(rig.signer.payload(document("ping", doc_id="ping-000001")))
    assert rig.acks() == [
        {
            "v": 1,
            "cmd": "ping-000001",
            "status": "done",
            "reason": None,
            "detail": "",
            "at": "2026-11-26T06:00:00Z",
        }
    ]
    assert rig.outbox()[0][0] == ACK_TOPIC
    assert rig.seen_ids() == {"ping-000001"}


def test_group_command_is_handled(rig: Rig) -> None:
    doc = document("ping", doc_id="ping-group-1", target="grp:q10")
    rig.send(rig.signer.payload(doc), topic=TOPICS.grp("q10", "cmd"))
    assert [a["status"] for a in rig.acks("ping-group-1")] == ["done"]


def test_volume_set_persists_and_acks_done(rig: Rig, db_path: Path) -> None:
    assert rig.director.conductor.volume == 70
    rig.send(rig.signer.payload(document("volume.set", {"percent": 35}, doc_id="vol-000035")))
    [ack] = rig.acks("vol-000035")
    assert (ack["status"], ack["detail"]) == ("done", "volume 35%")
    assert rig.director.conductor.volume == 35
    after = reopen(rig, db_path)
    assert after.director.conductor.volume == 35
    assert after.director.status().volume == 35
    after.store.close()


def test_same_id_twice_is_executed_once(rig: Rig) -> None:
    first = rig.signer.payload(document("volume.set", {"percent": 30}, doc_id="vol-aaaaaaaa"))
    rig.send(first)
    rig.send(rig.signer.payload(document("volume.set", {"percent": 50}, doc_id="vol-bbbbbbbb")))
    rig.send(first)  # replayed: must not set the volume back to 30
    assert rig.director.conductor.volume == 50
    statuses = [(a["status"], a["reason"]) for a in rig.acks("vol-aaaaaaaa")]
    assert statuses == [("done", None), ("duplicate", "duplicate")]


@pytest.mark.parametrize("doc_type", [t for t in COMMAND_TYPES if t not in CAPABILITIES])
def test_unsupported_commands_fail_never_done(rig: Rig, doc_type: str) -> None:
    rig.send(rig.signer.payload(document(doc_type, BODIES[doc_type], doc_id="unsupported-1")))
    [ack] = rig.acks()
    assert (ack["status"], ack["reason"]) == ("failed", "not_supported")
    assert doc_type in ack["detail"]
    assert rig.settings() == {}
    # Handled once: a redelivery is a duplicate, not a second attempt.
    rig.send(rig.signer.payload(document(doc_type, BODIES[doc_type], doc_id="unsupported-1")))
    assert [a["status"] for a in rig.acks()] == ["failed", "duplicate"]


def test_program_is_not_supported_and_changes_no_version(rig: Rig) -> None:
    rig.send(
        rig.signer.payload(document("program", program_body(3), doc_id="prog-000003")),
        topic=PROGRAM_TOPIC,
        retained=True,
    )
    [ack] = rig.acks()
    assert (ack["status"], ack["reason"]) == ("failed", "not_supported")
    assert rig.store.program_versions() == {}


def test_every_command_type_is_answered(rig: Rig) -> None:
    assert set(BODIES) == set(COMMAND_TYPES)
    for n, (doc_type, body) in enumerate(BODIES.items()):
        rig.send(rig.signer.payload(document(doc_type, body, doc_id=f"every-{n:04d}")))
        acks = rig.acks(f"every-{n:04d}")
        assert acks, doc_type
        if doc_type not in CAPABILITIES:
            assert {a["status"] for a in acks} == {"failed"}, doc_type


def test_logs_upload_publishes_redacted_lines(rig: Rig) -> None:
    log_path = rig.config.paths.log_path
    log_path.write_text(
        "\n".join(
            [
                "old line that is not asked for",
                f"2026-11-26 INFO agent: connecting with {PASSWORD}",
                "2026-11-26 INFO agent: password=hunter2 token: abc123",
                "2026-11-26 INFO agent: url mqtt://bang01:s3cr3t@broker.q10.example:8883",
                "2026-11-26 INFO agent: Phát thông báo lúc 06:00",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    rig.send(rig.signer.payload(document("logs.upload", {"lines": 4}, doc_id="logs-000001")))
    [(topic, payload)] = rig.outbox("/logs/logs-000001")
    assert topic == TOPICS.dev(DEVICE, "logs/logs-000001")
    text = payload.decode("utf-8")
    assert text.splitlines() == [
        "2026-11-26 INFO agent: connecting with ***",
        "2026-11-26 INFO agent: password=*** token: ***",
        "2026-11-26 INFO agent: url mqtt://bang01:***@broker.q10.example:8883",
        "2026-11-26 INFO agent: Phát thông báo lúc 06:00",
    ]
    for secret in (PASSWORD, "hunter2", "abc123", "s3cr3t"):
        assert secret not in text
    [ack] = rig.acks("logs-000001")
    assert (ack["status"], ack["detail"]) == ("done", "4 lines")
    topics = [t for t, _ in rig.outbox()]
    assert topics.index(topic) < topics.index(ACK_TOPIC)  # the text goes before the "done"


@pytest.mark.parametrize("tail_bytes", [0, 1, 2, 3])
def test_logs_upload_is_cut_to_whole_lines_of_utf8(rig: Rig, tail_bytes: int) -> None:
    """Over 1 MiB the reply is cut; it used to be cut anywhere, even inside a character."""
    line = "INFO agent: Phát thông báo lịch tiêm chủng ở phường 12, quận 10 — ưu tiên " * 2
    rig.config.paths.log_path.write_text(
        "".join(f"{n} {line}\n" for n in range(10000)) + "x" * tail_bytes + "\n",
        encoding="utf-8",
    )
    rig.send(rig.signer.payload(document("logs.upload", {"lines": 10000}, doc_id="logs-big-01")))
    [(_, payload)] = rig.outbox("/logs/logs-big-01")
    assert 1_000_000 < len(payload) <= 1 << 20
    text = payload.decode("utf-8")  # strict: whole characters only
    first, *_, last = text.splitlines()
    assert first.endswith(line) and first.split(" ", 1)[0].isdigit()
    assert last == "x" * tail_bytes
    assert text.endswith("\n")


def test_agent_restart_acks_done_after_the_restart(rig: Rig, db_path: Path) -> None:
    payload = rig.signer.payload(document("agent.restart", doc_id="restart-0001"))
    rig.send(payload)
    [ack] = rig.acks("restart-0001")
    assert ack["status"] == "accepted"
    assert rig.director.exit_reason == "restart"

    after = reopen(rig, db_path)
    after.clock.advance(5)
    after.director.post(Stop())
    assert after.director.run() == "stop"
    assert [a["status"] for a in after.acks("restart-0001")] == ["accepted", "done"]
    assert after.acks("restart-0001")[1]["at"] == "2026-11-26T06:00:05Z"
    assert "restart_ack" not in after.settings()

    # The broker may deliver the command again after the restart: no restart loop.
    again = make_rig(after.store, after.config, after.signer, clock=after.clock)
    again.send(payload)
    assert again.director.exit_reason is None
    assert [a["status"] for a in again.acks("restart-0001")] == ["accepted", "done", "duplicate"]
    after.store.close()


def test_boot_without_a_pending_restart_acks_nothing(rig: Rig) -> None:
    rig.director.post(Stop())
    assert rig.director.run() == "stop"
    assert rig.acks() == []


# --------------------------------------------------------------------------- rejections


def test_rejected_document_changes_no_state(rig: Rig) -> None:
    signer = rig.signer
    bad = [
        signer.payload(document("volume.set", {"percent": 5}, doc_id="rej-expired", ttl_s=-1)),
        signer.payload(
            document(
                "volume.set",
                {"percent": 5},
                doc_id="rej-future",
                issued_at=NOW + timedelta(hours=1),
            )
        ),
        signer.payload(
            document(
                "volume.set", {"percent": 5}, doc_id="rej-target", target="dev:q10-p12-bang-02"
            )
        ),
        signer.payload(document("volume.set", {"percent": 5.0}, doc_id="rej-float")),
        signer.payload(document("agent.restart", doc_id="rej-restart", ttl_s=0)),
        Signer(seed=8).payload(document("volume.set", {"percent": 5}, doc_id="rej-badsig")),
        Signer(kid="rogue", seed=8).payload(
            document("volume.set", {"percent": 5}, doc_id="rej-rogue")
        ),
    ]
    for payload in bad:
        rig.send(payload)
    assert rig.seen_ids() == set()
    assert rig.settings() == {}
    assert rig.director.conductor.volume == 70
    assert rig.director.exit_reason is None
    acks = rig.acks()
    assert [a["status"] for a in acks] == ["rejected"] * len(bad)
    assert [a["reason"] for a in acks] == [
        "expired",
        "from_future",
        "wrong_target",
        "invalid",
        "expired",
        "bad_signature",
        "unknown_key",
    ]
    codes = {e["code"] for e in rig.events()}
    assert codes == {
        "rejected.from_future",
        "rejected.wrong_target",
        "rejected.bad_signature",
        "rejected.unknown_key",
    }


def test_rejection_of_unreadable_id_names_the_topic(rig: Rig) -> None:
    rig.send(b"\x00garbage", topic=CMD_TOPIC)
    [ack] = rig.acks()
    assert ack["cmd"] is None
    assert ack["topic"] == CMD_TOPIC
    assert (ack["status"], ack["reason"]) == ("rejected", "malformed")


def test_rejection_acks_are_rate_limited(rig: Rig) -> None:
    for n in range(100):
        rig.send(f"garbage {n}".encode())
    acks = rig.acks()
    assert 1 <= len(acks) <= 10
    assert all(a["status"] == "rejected" for a in acks)
    assert rig.events() == []

    rig.monotonic.advance(5)  # the flood is over; the next rejection reports what was dropped
    rig.send(b"more garbage")
    events = rig.events()
    assert [e["code"] for e in events] == ["acks_suppressed"]
    assert events[0]["detail"].startswith(f"{100 - len(acks)} ")
    assert len(rig.acks()) == len(acks) + 1
    assert rig.seen_ids() == set()


def test_a_flood_that_simply_stops_is_still_reported(rig: Rig) -> None:
    for n in range(50):
        rig.send(f"garbage {n}".encode())
    dropped = 50 - len(rig.acks())
    rig.director.report_suppressed()  # the daemon calls this every 10 s
    events = rig.events()
    assert [e["code"] for e in events] == ["acks_suppressed"]
    assert events[0]["detail"].startswith(f"{dropped} ")
    rig.director.report_suppressed()
    assert len(rig.events()) == 1  # reported once


def test_injected_rejections_are_not_rate_limited(rig: Rig) -> None:
    for n in range(30):
        rig.send(f"garbage {n}".encode())
    acks = rig.director.on_message(CMD_TOPIC, b"still garbage", limited=False)
    assert [(a.status, a.reason) for a in acks] == [("rejected", "malformed")]


def test_a_flood_of_forged_commands_is_rate_limited_too(rig: Rig) -> None:
    forger = Signer(seed=6)
    for n in range(100):
        rig.send(forger.payload(document("agent.restart", doc_id=f"forged-{n:05d}")))
    assert len(rig.acks()) <= 10
    assert len(rig.events()) <= 10
    assert rig.director.exit_reason is None


def test_valid_commands_are_never_rate_limited(rig: Rig) -> None:
    for _ in range(30):
        rig.send(b"garbage")
    for n in range(30):
        rig.send(rig.signer.payload(document("ping", doc_id=f"ping-{n:06d}")))
    assert len([a for a in rig.acks() if a["status"] == "done"]) == 30


def test_retained_duplicate_program_gives_no_ack(rig: Rig) -> None:
    payload = rig.signer.payload(document("program", program_body(4), doc_id="prog-000004"))
    rig.send(payload, topic=PROGRAM_TOPIC, retained=True)
    assert len(rig.acks("prog-000004")) == 1
    rig.send(payload, topic=PROGRAM_TOPIC, retained=True)  # redelivered on resubscription
    assert len(rig.acks("prog-000004")) == 1
    rig.send(payload, topic=PROGRAM_TOPIC, retained=False)  # sent again on purpose
    assert [a["status"] for a in rig.acks("prog-000004")] == ["failed", "duplicate"]


# --------------------------------------------------------------------------- wiring


def test_link_events_move_the_outbox(rig: Rig) -> None:
    link = FakePublisher()
    rig.director.attach(link, lambda: 3)
    rig.director.handle(Inbound(CMD_TOPIC, rig.signer.payload(document()), (7, 1, 1), False))
    assert link.acked_tokens == [(7, 1, 1)]  # acknowledged to the broker after it was recorded
    rig.director.pump()
    [published] = link.published
    assert (published.topic, published.qos) == (ACK_TOPIC, 1)
    assert json.loads(published.payload)["status"] == "done"
    assert rig.store.outbox_size() == 1
    rig.director.handle(Delivered(published.mid, True, ""))
    assert rig.store.outbox_size() == 0


def test_a_delivered_ack_leaves_the_file_without_a_commit_of_its_own(
    rig: Rig, db_path: Path
) -> None:
    """The removal waits for the next transaction, or for the director's idle moment or end."""
    link = FakePublisher()
    rig.director.attach(link, lambda: 0)
    rig.director.handle(Inbound(CMD_TOPIC, rig.signer.payload(document()), (7, 1, 1), False))
    rig.director.pump()
    [published] = link.published
    rig.director.handle(Delivered(published.mid, True, ""))
    assert rig.store.outbox_size() == 0
    with sqlite3.connect(str(db_path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
    rig.director.post(Stop())
    assert rig.director.run() == "stop"
    with sqlite3.connect(str(db_path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_link_reset_hands_the_outbox_again(rig: Rig) -> None:
    link = FakePublisher()
    rig.director.attach(link, lambda: 0)
    rig.send(rig.signer.payload(document()))
    rig.director.pump()
    rig.director.handle(LinkReset())
    rig.director.pump()
    assert [p.topic for p in link.published] == [ACK_TOPIC, ACK_TOPIC]


def test_link_up_publishes_retained_status(rig: Rig) -> None:
    rig.send(rig.signer.payload(document("volume.set", {"percent": 15})))
    link = FakePublisher()
    rig.director.attach(link, lambda: 2)
    rig.director.handle(LinkUp(False))
    [status] = [p for p in link.published if p.topic.endswith("/status")]
    assert (status.qos, status.retain) == (0, True)
    data = json.loads(status.payload)
    assert data["volume"] == 15
    assert data["link"]["reconnects"] == 2
    assert data["at"] == "2026-11-26T06:00:00Z"


def test_status_is_not_published_while_offline(rig: Rig) -> None:
    link = FakePublisher(connected=False)
    rig.director.attach(link, lambda: 0)
    rig.director.handle(LinkUp(False))
    assert link.published == []


def test_housekeeping_forgets_ids_a_day_after_expiry(rig: Rig) -> None:
    rig.send(rig.signer.payload(document("ping", doc_id="ping-forget", ttl_s=60)))
    rig.director.housekeeping()
    assert rig.seen_ids() == {"ping-forget"}
    rig.clock.advance(60 + 86400 + 1)
    rig.director.housekeeping()
    assert rig.seen_ids() == set()


def test_inject_request_passes_the_same_checks(rig: Rig) -> None:
    good = rig.signer.payload(document("volume.set", {"percent": 45}, doc_id="usb-0000001"))
    req = Request("inject", {"document": good.decode("utf-8")})
    rig.director.handle(req)
    answer = req.reply.get_nowait()
    assert answer["ok"] and answer["acks"][0]["status"] == "done"
    assert rig.director.conductor.volume == 45

    forged = Signer(seed=5).payload(document("volume.set", {"percent": 0}, doc_id="usb-0000002"))
    req = Request("inject", {"document": forged.decode("utf-8")})
    rig.director.handle(req)
    assert req.reply.get_nowait()["acks"][0]["reason"] == "bad_signature"
    assert rig.director.conductor.volume == 45


def test_status_request_and_unknown_request(rig: Rig) -> None:
    req = Request("status", {})
    rig.director.handle(req)
    answer = req.reply.get_nowait()
    assert answer["ok"] and answer["device"] == DEVICE and answer["status"]["volume"] == 70
    req = Request("reboot", {})
    rig.director.handle(req)
    assert req.reply.get_nowait()["ok"] is False


def test_stop_event_ends_run(rig: Rig) -> None:
    rig.director.handle(Stop())
    assert rig.director.exit_reason == "stop"


def test_director_uses_only_its_clocks(tmp_path: Path, signer: Signer) -> None:
    clock, mono = FakeClock(NOW + timedelta(days=2)), FakeMonotonic(50.0)
    store = Store(tmp_path / "x.db")
    rig = make_rig(store, agent_config(tmp_path, signer), signer, clock=clock, monotonic=mono)
    mono.advance(90)
    status = rig.director.status()
    assert (status.at, status.uptime_s) == ("2026-11-28T06:00:00Z", 90)
    assert isinstance(rig.director, Director)
    store.close()


def test_a_command_that_fails_unexpectedly_is_answered_and_not_run_again(rig: Rig) -> None:
    log_path = rig.config.paths.log_path
    log_path.unlink(missing_ok=True)
    log_path.mkdir()  # reading the log now fails with IsADirectoryError
    payload = rig.signer.payload(document("logs.upload", {"lines": 5}, doc_id="logs-broken-1"))
    rig.send(payload)
    [ack] = rig.acks("logs-broken-1")
    assert (ack["status"], ack["reason"]) == ("failed", "internal_error")
    assert "IsADirectoryError" in ack["detail"]
    rig.send(payload)  # redelivered: remembered, not executed again
    assert [a["status"] for a in rig.acks("logs-broken-1")] == ["failed", "duplicate"]


def test_restart_done_ack_and_its_marker_go_together(rig: Rig) -> None:
    rig.send(rig.signer.payload(document("agent.restart", doc_id="restart-0001")))
    assert rig.settings()["restart_ack"] == "restart-0001"
    rig.director._boot()
    assert "restart_ack" not in rig.settings()
    assert [a["status"] for a in rig.acks("restart-0001")] == ["accepted", "done"]
    rig.director._boot()  # a second boot acks nothing more
    assert len(rig.acks("restart-0001")) == 2


def test_the_status_follows_a_change_once_the_ack_is_handed_over(rig: Rig) -> None:
    link = FakePublisher()
    rig.director.attach(link, lambda: 0)
    payload = rig.signer.payload(document("volume.set", {"percent": 42}, doc_id="volume-000042"))
    rig.director.post(Inbound(CMD_TOPIC, payload, (9, 1, 1), False))
    rig.director.post(Stop())
    assert rig.director.run() == "stop"
    topics = link.topics()
    status_at = max(i for i, t in enumerate(topics) if t.endswith("/status"))
    assert topics.index(ACK_TOPIC) < status_at
    assert json.loads(link.published[status_at].payload)["volume"] == 42
