"""Programs, overrides and the stage, driven through the director with a fake clock.

The players are honest recording fakes (they keep what they were told and finish when the
test says so); the store, the content cache and the arbitration are the real ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pytest

from agent.cache import ContentCache
from agent.cache_fill import ContentJob, ContentResult
from agent.conductor import Conductor
from agent.playlog import PlaylogRecorder
from agent.programs import Ranks
from agent.stage import Stage
from agent.store import Store
from player.base import PlayEnded, PlayItem, PlayStarted
from protocol import format_time
from tests.unit.fakes import (
    DEVICE,
    GROUPS,
    PREFIX,
    TOPICS,
    FakePublisher,
    Rig,
    Signer,
    agent_config,
    document,
    make_rig,
)

DEV_PROGRAM = TOPICS.dev(DEVICE, "program")
WARD_PROGRAM = TOPICS.grp(GROUPS[0], "program")


@dataclass
class RecordingScreen:
    shown: list[PlayItem | None] = field(default_factory=list)
    power: list[bool] = field(default_factory=list)
    ticker: tuple[str, ...] = ()

    def show(self, item: PlayItem | None) -> None:
        self.shown.append(item)

    def set_ticker(self, lines: tuple[str, ...]) -> None:
        self.ticker = lines

    def set_power(self, on: bool) -> None:
        self.power.append(on)

    def snapshot(self, max_width: int | None = None) -> bytes | None:
        return None

    @property
    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass

    @property
    def current(self) -> str | None:
        item = self.shown[-1] if self.shown else None
        return item.bulletin.id if item is not None else None


@dataclass
class RecordingSpeaker:
    played: list[PlayItem] = field(default_factory=list)
    stopped: int = 0
    finished: list[PlayEnded] = field(default_factory=list)
    prepared: list[PlayItem] = field(default_factory=list)
    current: PlayItem | None = None
    deaf: bool = False  # a wedged player: it never answers a stop
    audible: bool = True
    alive: bool = True

    def play(self, item: PlayItem) -> None:
        self.played.append(item)
        self.current = item

    def stop(self) -> None:
        self.stopped += 1
        if self.current is not None and not self.deaf:
            self.finished.append(PlayEnded("speaker", self.current.key, "interrupted"))
            self.current = None

    def prepare(self, item: PlayItem) -> None:
        self.prepared.append(item)

    def set_volume(self, percent: int) -> None:
        self.volume = percent

    def set_amplifier(self, mode: Literal["auto", "on", "off"]) -> None:
        self.amplifier = mode

    def relay(self, url: str | None) -> None:
        self.relaying = url

    def close(self) -> None:
        pass


class JobList(list[ContentJob]):
    """The fetcher's queue, kept for the test to run: cancelled jobs leave it."""

    def submit(self, job: ContentJob) -> None:
        self.append(job)

    def cancel(self, doc_id: str) -> None:
        self[:] = [j for j in self if j.doc_id != doc_id]


@dataclass
class Show:
    rig: Rig
    conductor: Conductor
    screen: RecordingScreen
    speaker: RecordingSpeaker
    cache: ContentCache
    jobs: JobList
    wakes: list[datetime | None]

    def program(
        self,
        version: int,
        bulletins: list[dict[str, Any]],
        topic: str = DEV_PROGRAM,
        doc_id: str | None = None,
    ) -> str:
        target = f"dev:{DEVICE}" if topic == DEV_PROGRAM else f"grp:{topic.split('/')[-2]}"
        doc_id = doc_id or f"prog-{version:06d}-{topic.split('/')[-2]}"
        body = {"version": version, "bulletins": bulletins, "ticker": ["Phường 12 thông báo"]}
        self.rig.send(
            self.rig.signer.payload(document("program", body, target=target, doc_id=doc_id)),
            topic=topic,
        )
        return doc_id

    def command(self, doc_type: str, body: dict[str, Any], doc_id: str) -> None:
        self.rig.send(self.rig.signer.payload(document(doc_type, body, doc_id=doc_id)))

    def run_jobs(self, fail: str | None = None) -> None:
        """Do what the fetcher thread would: the files are already cached or missing."""
        while self.jobs:
            job = self.jobs.pop(0)
            missing = [m for m in job.media if not self.cache.has(m.sha256, m.size)]
            reason = fail or ("download_failed" if missing else None)
            self.conductor.on_content(ContentResult(job.topic, job.doc_id, reason, "test", 0))

    def speaker_done(self) -> None:
        item = self.speaker.current
        assert item is not None
        self.speaker.current = None
        self.conductor.on_player(PlayEnded("speaker", item.key, "completed"))

    def flush_interrupts(self) -> None:
        while self.speaker.finished:
            self.conductor.on_player(self.speaker.finished.pop(0))

    def at(self, seconds: float) -> None:
        self.rig.clock.advance(seconds)
        self.conductor.reconcile()

    def status(self) -> dict[str, Any]:
        return self.rig.director.status().model_dump(mode="json")


def text(bid: str, level: str = "normal", ms: int = 10000, **extra: Any) -> dict[str, Any]:
    return {
        "id": bid,
        "title": f"Bản tin {bid}",
        "level": level,
        "screen": {"kind": "text", "text": f"Nội dung {bid}", "duration_ms": ms},
        **extra,
    }


def spoken(bid: str, level: str = "normal", **extra: Any) -> dict[str, Any]:
    return {
        "id": bid,
        "title": f"Loa {bid}",
        "level": level,
        "speaker": {"kind": "tts", "text": f"Kính thưa bà con, {bid}."},
        **extra,
    }


def make_show(tmp_path: Path, store: Store, now: datetime | None = None) -> Show:
    """The conductor and stage on recording players; ``now``: the clock at boot (a restart)."""
    signer = Signer()
    config = agent_config(tmp_path, signer)
    rig = make_rig(store, config, signer)
    if now is not None:
        rig.clock.now = now
    screen, speaker = RecordingScreen(), RecordingSpeaker()
    cache = ContentCache(tmp_path / "cache", 1 << 30)
    recorder = PlaylogRecorder(store, DEVICE, TOPICS, rig.clock)
    stage = Stage(
        store,
        screen,
        speaker,
        recorder,
        cache.path,
        ZoneInfo("Asia/Ho_Chi_Minh"),
        event=rig.reports.event,
    )
    jobs = JobList()
    wakes: list[datetime | None] = []
    conductor = Conductor(
        store,
        cache,
        jobs,
        stage,
        recorder,
        Ranks(TOPICS, DEVICE, GROUPS),
        rig.reports,
        wakes.append,
        rig.clock,
        config.speaker.default_volume,
    )
    rig.director.conductor = conductor
    conductor.boot()
    return Show(rig, conductor, screen, speaker, cache, jobs, wakes)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state" / "agent.db")
    yield s
    s.close()


@pytest.fixture
def show(tmp_path: Path, store: Store) -> Show:
    return make_show(tmp_path, store)


def statuses(show: Show, doc_id: str) -> list[tuple[str, str | None]]:
    return [(a["status"], a["reason"]) for a in show.rig.acks(doc_id)]


def test_a_program_goes_live_only_when_its_content_is_here(show: Show) -> None:
    doc = show.program(1, [text("a"), text("b")])
    assert statuses(show, doc) == [("accepted", None)]
    assert show.screen.current is None  # nothing live yet: the idle screen
    show.run_jobs()
    assert statuses(show, doc) == [("accepted", None), ("done", None)]
    assert show.screen.current == "a"
    assert show.screen.ticker == ("Phường 12 thông báo",)
    status = show.status()
    assert status["programs"] == {DEV_PROGRAM: 1}
    assert status["now"]["screen"] == "a"
    assert show.wakes[-1] == show.rig.clock() + timedelta(seconds=10)
    show.at(10)
    assert show.screen.current == "b"


def test_a_failed_program_leaves_the_old_one_live(show: Show) -> None:
    show.program(1, [text("old")])
    show.run_jobs()
    doc = show.program(2, [text("new")])
    show.run_jobs(fail="hash_mismatch")
    assert statuses(show, doc) == [("accepted", None), ("failed", "hash_mismatch")]
    assert show.screen.current == "old"
    assert show.status()["programs"] == {DEV_PROGRAM: 1}
    assert [e["code"] for e in show.rig.events()] == ["program_failed"]


def test_missing_media_keeps_the_program_pending_then_failed(show: Show) -> None:
    data = b"\x89PNG fake image bytes"
    media = {
        "url": "https://media.example.vn/a.png",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "mime": "image/png",
    }
    image = {"id": "img", "title": "Ảnh", "screen": {"kind": "image", "media": media}}
    doc = show.program(1, [image])
    assert len(show.jobs) == 1 and show.jobs[0].media[0].sha256 == media["sha256"]
    show.run_jobs()
    # A download failure may be a 3G outage: the program stays pending and is tried again.
    assert statuses(show, doc) == [("accepted", None)]
    assert [e["code"] for e in show.rig.events()] == ["program_fetch_retrying"]
    show.rig.clock.advance(59)
    show.conductor.retry_due()
    assert show.jobs == []
    show.rig.clock.advance(1)
    show.conductor.retry_due()
    assert len(show.jobs) == 1
    show.run_jobs()  # still missing: the next try in 2 minutes
    show.rig.clock.advance(6 * 3600)  # it gives up after six hours
    show.conductor.retry_due()
    show.run_jobs()
    assert statuses(show, doc)[-1] == ("failed", "download_failed")
    assert show.status()["programs"] == {}


def test_a_file_that_arrives_later_makes_the_program_live(show: Show) -> None:
    data = "Áp phích tiêm chủng".encode()
    sha = hashlib.sha256(data).hexdigest()
    media = {
        "url": "https://media.example.vn/p.png",
        "sha256": sha,
        "size": len(data),
        "mime": "image/png",
    }
    doc = show.program(
        1, [{"id": "img", "title": "Ảnh", "screen": {"kind": "image", "media": media}}]
    )
    show.run_jobs()
    path = show.cache.path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)  # as if the fetcher had now succeeded
    show.rig.clock.advance(60)
    show.conductor.retry_due()
    show.run_jobs()
    assert statuses(show, doc)[-1] == ("done", None)
    assert show.screen.current == "img"
    item = show.screen.shown[-1]
    assert item is not None and item.media == {sha: path}


def test_a_newer_version_supersedes_a_pending_one_and_an_older_is_stale(show: Show) -> None:
    first = show.program(3, [text("three")])
    second = show.program(4, [text("four")])
    assert statuses(show, first) == [("accepted", None), ("failed", "superseded")]
    older = show.program(2, [text("two")], doc_id="prog-older-000002")
    assert statuses(show, older) == [("rejected", "stale")]
    show.run_jobs()
    assert statuses(show, second)[-1] == ("done", None)
    assert show.screen.current == "four"


def test_the_device_program_goes_before_the_ward_program(show: Show) -> None:
    show.program(1, [text("ward-item"), text("ward-item-2")], topic=WARD_PROGRAM)
    show.program(1, [text("device-item")])
    show.run_jobs()
    # The ward program went live first; the rotation carries on from there, and each new
    # cycle starts with the device's own item.
    seen = [show.screen.current]
    for _ in range(4):
        show.at(10)
        seen.append(show.screen.current)
    assert seen == ["ward-item", "ward-item-2", "device-item", "ward-item", "ward-item-2"]


def test_emergency_takes_over_and_the_program_resumes_where_it_was(show: Show) -> None:
    show.program(1, [text("a", ms=20000), spoken("loa")])
    show.run_jobs()
    assert show.speaker.current is not None  # the unscheduled announcement plays at go-live
    show.at(5)
    alert = {
        "id": "bao-so-9",
        "title": "Bão số 9",
        "level": "emergency",
        "screen": {"kind": "text", "text": "Sơ tán ngay"},
        "speaker": {"kind": "tts", "text": "Bão số 9 đổ bộ, sơ tán ngay."},
    }
    show.command("emergency.start", {"bulletin": alert, "repeat_every_s": 600}, "emerg-000001")
    assert statuses(show, "emerg-000001") == [("done", None)]
    assert show.screen.current == "bao-so-9"
    assert show.speaker.stopped == 1  # the announcement was cut at once
    show.flush_interrupts()
    assert show.speaker.current is not None
    assert show.speaker.current.bulletin.id == "bao-so-9"
    show.speaker_done()
    show.at(60)
    show.command("emergency.stop", {"ref": "emerg-000001"}, "emerg-stop-01")
    assert statuses(show, "emerg-stop-01") == [("done", None)]
    assert show.screen.current == "a"
    assert show.rig.director.conductor is not None
    cursor = show.conductor.stage.cursor
    assert cursor.remaining_ms == 15000  # 5 s of 20 s had been shown


def test_an_emergency_survives_a_restart(tmp_path: Path, store: Store) -> None:
    show = make_show(tmp_path, store)
    show.program(1, [text("a")])
    show.run_jobs()
    alert = {
        "id": "lu-quet",
        "title": "Lũ quét",
        "level": "emergency",
        "screen": {"kind": "text", "text": "Tránh xa bờ suối"},
    }
    show.command("emergency.start", {"bulletin": alert}, "emerg-000002")
    assert show.screen.current == "lu-quet"
    again = make_show(tmp_path, store)  # a new process on the same state
    assert again.screen.current == "lu-quet"
    again.command("emergency.stop", {}, "emerg-stop-02")
    assert again.screen.current == "a"


@dataclass
class WitnessLink(FakePublisher):
    """Notes, for each ack handed over, how many plays the store held open at that moment."""

    store: Store | None = None
    open_at_ack: list[int] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        if topic.endswith("/ack") and self.store is not None:
            self.open_at_ack.append(len(self.store.open_plays()))
        return super().publish(topic, payload, qos, retain)


def test_an_emergency_ack_leaves_once_durable_before_its_plays_are_recorded(
    show: Show, store: Store
) -> None:
    link = WitnessLink(store=store)
    show.rig.director.attach(link, lambda: 0)
    alert = {
        "id": "bao-so-10",
        "title": "Bão số 10",
        "level": "emergency",
        "screen": {"kind": "text", "text": "Sơ tán ngay"},
        "speaker": {"kind": "tts", "text": "Bão số 10, sơ tán ngay."},
    }
    show.command("emergency.start", {"bulletin": alert}, "emerg-000010")
    assert [json.loads(p.payload)["status"] for p in link.published] == ["done"]
    assert link.open_at_ack == [0]  # handed over before the screen's and speaker's plays
    assert len(store.open_plays()) == 2  # which are recorded all the same
    assert link.acked_tokens == [None]  # and the PUBACK comes after all of it


def test_stopping_an_unknown_emergency_fails(show: Show) -> None:
    show.command("emergency.stop", {"ref": "no-such-alert"}, "emerg-stop-03")
    assert statuses(show, "emerg-stop-03") == [("failed", "not_found")]


def test_play_now_preempts_the_rotation_for_its_duration(show: Show) -> None:
    show.program(1, [text("a", ms=60000)])
    show.run_jobs()
    show.command("play.now", {"bulletin": text("ngay", ms=5000), "repeat": 2}, "playnow-0001")
    assert show.screen.current == "ngay"
    show.at(10)
    assert show.screen.current == "a"


def test_every_showing_becomes_a_playlog_entry(show: Show) -> None:
    show.program(1, [text("a", ms=1000), text("b", ms=1000)])
    show.run_jobs()
    for _ in range(4):
        show.at(1)
    show.conductor.close()
    [(_, payload)] = show.rig.outbox("/playlog")
    entries = json.loads(payload)["entries"]
    assert [(e["bulletin"], e["outcome"]) for e in entries] == [
        ("a", "completed"),
        ("b", "completed"),
        ("a", "completed"),
        ("b", "completed"),
        ("a", "interrupted"),
    ]
    assert len({e["id"] for e in entries}) == 5
    assert all(e["channel"] == "screen" for e in entries)


def test_a_restart_plays_the_live_program_from_the_store(tmp_path: Path, store: Store) -> None:
    show = make_show(tmp_path, store)
    show.program(1, [text("a"), text("b")])
    show.run_jobs()
    again = make_show(tmp_path, store)
    assert again.screen.current == "a"
    assert again.status()["programs"] == {DEV_PROGRAM: 1}
    assert PREFIX in DEV_PROGRAM


def test_a_cancelled_emergency_stops_sounding_at_once(show: Show) -> None:
    show.program(1, [text("a")])
    show.run_jobs()
    alert = {
        "id": "bao-gia",
        "title": "Báo động nhầm",
        "level": "emergency",
        "speaker": {"kind": "tts", "text": "Cảnh báo sóng thần."},
    }
    show.command("emergency.start", {"bulletin": alert}, "emerg-000009")
    assert show.speaker.current is not None
    assert show.speaker.current.bulletin.id == "bao-gia"
    show.command("emergency.stop", {"ref": "emerg-000009"}, "emerg-stop-09")
    assert show.speaker.stopped == 1  # a false alarm does not play on to its end
    show.flush_interrupts()
    assert show.speaker.current is None


def test_a_corrected_bulletin_under_the_same_id_is_shown_at_once(show: Show) -> None:
    wrong = {
        "id": "em",
        "title": "Bão số 9",
        "level": "emergency",
        "screen": {"kind": "text", "text": "Sơ tán về trường Tiểu học A"},
    }
    show.program(1, [text("a"), wrong])
    show.run_jobs()
    assert show.screen.current == "em"
    fixed = {**wrong, "screen": {"kind": "text", "text": "Sơ tán về trường Tiểu học B"}}
    show.program(2, [text("a"), fixed])
    show.run_jobs()
    item = show.screen.shown[-1]
    assert item is not None and item.bulletin.screen is not None
    assert item.bulletin.screen.text == "Sơ tán về trường Tiểu học B"


def test_files_of_an_emergency_in_force_are_never_evicted(show: Show) -> None:
    data = "Bản đồ sơ tán".encode()
    sha = hashlib.sha256(data).hexdigest()
    path = show.cache.path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    media = {
        "url": "https://media.example.vn/map.png",
        "sha256": sha,
        "size": len(data),
        "mime": "image/png",
    }
    alert = {
        "id": "ban-do",
        "title": "Sơ tán",
        "level": "emergency",
        "screen": {"kind": "image", "media": media},
    }
    show.command("emergency.start", {"bulletin": alert}, "emerg-000011")
    assert sha in show.conductor.keep()
    assert show.cache.gc(show.conductor.keep(), target_bytes=0) == []
    assert path.exists()


def test_a_superseded_program_is_not_fetched_and_its_backoff_is_forgotten(show: Show) -> None:
    data = b"x"
    media = {
        "url": "https://media.example.vn/x.png",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": 1,
        "mime": "image/png",
    }
    show.program(1, [{"id": "img", "title": "Ảnh", "screen": {"kind": "image", "media": media}}])
    show.run_jobs()  # fails: retried in a minute
    show.program(2, [text("b")])
    assert [j.doc_id for j in show.jobs] == ["prog-000002-q10-p12-bang-01"]
    show.rig.clock.advance(120)
    show.conductor.retry_due()
    assert len(show.jobs) == 1  # the old retry does not submit the new version twice


def test_a_failure_while_deciding_still_schedules_the_next_decision(show: Show) -> None:
    show.program(1, [text("a")])
    show.run_jobs()

    def broken(now: datetime) -> datetime | None:
        raise RuntimeError("database or disk is full")

    show.conductor.stage.reconcile = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        show.conductor.reconcile()
    assert show.wakes[-1] == show.rig.clock() + timedelta(seconds=5)


def test_an_unreadable_saved_override_does_not_stop_the_boot(tmp_path: Path, store: Store) -> None:
    store.record(
        settings={
            "overrides": json.dumps(
                [{"doc": "{}", "rank": 0, "received_at": "2026-11-26T06:00:00Z"}]
            )
        },
        now=0.0,
    )
    show = make_show(tmp_path, store)
    assert show.conductor.stage.world.emergencies == ()


def _synchronized(show: Show, seconds_ahead: float, doc_id: str = "sync-0001") -> datetime:
    play_at = show.rig.clock() + timedelta(seconds=seconds_ahead)
    body = {"bulletin": spoken("cung-luc"), "play_at": format_time(play_at)}
    show.command("play.now", body, doc_id)
    return play_at


def test_a_synchronized_play_now_goes_to_the_speaker_early_and_is_logged_when_it_sounds(
    show: Show,
) -> None:
    play_at = _synchronized(show, 30)
    assert show.speaker.played == []  # not yet: 30 s ahead, prepared 10 s ahead
    assert show.wakes[-1] == play_at - timedelta(seconds=10)
    show.at(21)
    [item] = show.speaker.played
    assert (item.start_at, item.key) == (play_at, "sync-0001#1")
    assert show.rig.store.open_plays() == []  # recorded when it sounds, not when handed over
    show.rig.clock.advance(9)
    show.conductor.stage.started(PlayStarted("speaker", item.key, 3))
    [play] = show.rig.store.open_plays()
    assert play.bulletin == "cung-luc"
    show.speaker_done()
    show.conductor.close()
    [(_, payload)] = show.rig.outbox("/playlog")
    [entry] = json.loads(payload)["entries"]
    assert (entry["outcome"], entry["start_error_ms"]) == ("completed", 3)


def test_a_restart_while_it_waits_for_its_time_hands_it_over_again(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    play_at = _synchronized(show, 5)
    [item] = show.speaker.played
    assert item.start_at == play_at
    show.conductor.close()  # the agent stops before play_at: nothing sounded, nothing logged
    assert show.rig.outbox("/playlog") == []
    again = make_show(tmp_path, store)
    again.rig.clock.now = show.rig.clock()
    again.conductor.reconcile()
    [handed] = again.speaker.played
    assert (handed.start_at, handed.key) == (play_at, "sync-0001#1")


def entries(show: Show) -> list[dict[str, Any]]:
    """Every playlog entry written so far (pending, or already in the outbox)."""
    show.conductor.recorder.flush()
    return [e for _, p in show.rig.outbox("/playlog") for e in json.loads(p)["entries"]]


def test_a_synchronized_call_cuts_the_announcement_speaking_which_is_replayed_after(
    show: Show,
) -> None:
    show.command("play.now", {"bulletin": spoken("dang-noi")}, "busy-0001")
    assert show.speaker.current is not None  # the loudspeakers are busy …
    play_at = _synchronized(show, 5)
    [prepared] = show.speaker.prepared  # … so the district call is synthesized ahead
    assert prepared.key == "sync-0001#1"
    assert show.wakes[-1] == play_at - timedelta(seconds=2)
    show.at(3)  # play_at - 2 s: the one speaking is cut
    assert show.speaker.stopped == 1
    show.flush_interrupts()
    handed = show.speaker.current
    assert handed is not None and (handed.key, handed.start_at) == ("sync-0001#1", play_at)
    show.rig.clock.advance(2)
    show.conductor.stage.started(PlayStarted("speaker", handed.key, 1))
    show.speaker_done()
    again = show.speaker.current
    assert again is not None and again.key == "busy-0001#1"  # replayed from its start
    show.speaker_done()
    got = [
        (e["bulletin"], e["outcome"], e.get("replayed"), e.get("attempt")) for e in entries(show)
    ]
    assert got == [
        ("dang-noi", "interrupted", True, None),
        ("cung-luc", "completed", None, None),
        ("dang-noi", "completed", None, 2),
    ]
    sync = next(e for e in entries(show) if e["bulletin"] == "cung-luc")
    assert sync["start_error_ms"] == 1


def test_a_synchronized_call_behind_an_emergency_is_skipped_late_and_an_event_says_so(
    show: Show,
) -> None:
    alert = {**spoken("bao-khan", "emergency")}
    show.command("emergency.start", {"bulletin": alert}, "emerg-000001")
    play_at = _synchronized(show, 5)
    show.at(5.1)
    assert [e["outcome"] for e in entries(show)] == []  # within tolerance: still waiting
    show.at(0.2)
    [skipped] = entries(show)
    assert (skipped["bulletin"], skipped["outcome"], skipped["reason"]) == (
        "cung-luc",
        "skipped",
        "late_for_play_at",
    )
    assert skipped["start_error_ms"] == 300
    [(_, event)] = show.rig.outbox("/event")
    assert json.loads(event)["code"] == "late_for_play_at"
    assert play_at < show.rig.clock()


def test_an_announcement_cut_by_an_emergency_is_replayed_after_it_and_the_next_waits(
    show: Show,
) -> None:
    show.command("play.now", {"bulletin": spoken("mot")}, "first-0001")
    show.command("play.now", {"bulletin": spoken("hai")}, "second-001")
    assert show.speaker.current is not None and show.speaker.current.key == "first-0001#1"
    show.command("emergency.start", {"bulletin": spoken("bao", "emergency")}, "emerg-000001")
    show.flush_interrupts()
    assert show.speaker.current is not None and show.speaker.current.key.startswith("emerg")
    show.at(2)
    show.command("emergency.stop", {"ref": "emerg-000001"}, "stop-000001")
    show.flush_interrupts()
    assert show.speaker.current is not None and show.speaker.current.key == "first-0001#1"
    show.speaker_done()
    assert show.speaker.current is not None and show.speaker.current.key == "second-001#1"
    show.speaker_done()
    got = [
        (e["bulletin"], e["outcome"], e.get("replayed"))
        for e in entries(show)
        if e["channel"] == "speaker"
    ]
    assert got == [
        ("mot", "interrupted", True),
        ("bao", "interrupted", False),
        ("mot", "completed", None),
        ("hai", "completed", None),
    ]


def test_announcements_held_by_an_emergency_too_long_are_skipped_expired(show: Show) -> None:
    show.command("emergency.start", {"bulletin": text("bao", "emergency")}, "emerg-000001")
    show.command("play.now", {"bulletin": spoken("cho")}, "waits-0001")
    assert show.speaker.current is None  # held: an emergency is in force
    show.at(600)
    [entry] = entries(show)
    assert (entry["bulletin"], entry["outcome"], entry["reason"]) == (
        "cho",
        "skipped",
        "expired_in_queue",
    )


def test_a_forced_off_amplifier_skips_announcements_and_reports_an_unheard_emergency(
    show: Show,
) -> None:
    show.command("power.set", {"amplifier": "off"}, "power-00001")
    show.command("play.now", {"bulletin": spoken("im")}, "quiet-0001")
    show.command("emergency.start", {"bulletin": spoken("bao", "emergency")}, "emerg-000001")
    assert show.speaker.played == []
    assert [(e["bulletin"], e["reason"]) for e in entries(show)] == [
        ("im", "amplifier_off"),
        ("bao", "amplifier_off"),
    ]
    codes = [json.loads(p)["code"] for _, p in show.rig.outbox("/event")]
    assert codes == ["emergency_not_heard"]


def test_what_waits_and_what_was_cut_by_a_power_cut_survive_the_restart(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    show.command("play.now", {"bulletin": spoken("dang")}, "speaks-001")
    show.command("play.now", {"bulletin": spoken("cho")}, "waits-0001")
    # The power goes: no close(), nothing more is written.
    again = make_show(tmp_path, store)
    again.rig.clock.now = show.rig.clock() + timedelta(seconds=30)
    again.conductor.reconcile()
    current = again.speaker.current
    assert current is not None and current.key == "speaks-001#1"  # replayed from its start
    again.speaker_done()
    assert again.speaker.current is not None and again.speaker.current.key == "waits-0001#1"
    again.speaker_done()
    got = [(e["bulletin"], e["outcome"], e.get("replayed")) for e in entries(again)]
    assert got == [
        ("dang", "interrupted", True),
        ("dang", "completed", None),
        ("cho", "completed", None),
    ]


def test_a_full_queue_drops_the_last_in_precedence_and_says_so(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    show.conductor.stage.loudspeakers.policy = replace(
        show.conductor.stage.loudspeakers.policy, queue_max=1
    )
    show.command("play.now", {"bulletin": spoken("dang")}, "speaks-001")
    show.command("play.now", {"bulletin": spoken("mot")}, "first-0001")
    show.command("play.now", {"bulletin": spoken("hai")}, "second-001")
    [entry] = entries(show)
    assert (entry["bulletin"], entry["reason"]) == ("hai", "queue_full")
    codes = [json.loads(p)["code"] for _, p in show.rig.outbox("/event")]
    assert codes == ["announcement_dropped"]


def test_a_technicians_say_waits_for_nothing_and_yields_to_everything(show: Show) -> None:
    stage = show.conductor.stage
    assert stage.say("Một hai ba", None, False) is None
    assert show.speaker.current is not None and show.speaker.current.origin == "technician"
    assert "playing" in (stage.say("again", None, False) or "")
    show.command("play.now", {"bulletin": spoken("that")}, "real-00001")
    show.flush_interrupts()
    assert show.speaker.current is not None and show.speaker.current.key == "real-00001#1"
    show.speaker_done()
    got = [(e["bulletin"], e["outcome"], e.get("replayed"), e["ref"]) for e in entries(show)]
    assert got == [
        ("technician-test", "interrupted", False, "technician"),
        ("that", "completed", None, "real-00001"),
    ]


def test_a_play_now_screen_part_waits_behind_one_of_its_level_and_then_shows_in_full(
    show: Show,
) -> None:
    show.command("play.now", {"bulletin": text("dau", ms=10000)}, "first-0001")
    show.at(2)
    show.command("play.now", {"bulletin": text("sau", ms=10000)}, "second-001")
    assert show.screen.current == "dau"  # it keeps the screen
    show.at(8)
    assert show.screen.current == "sau"
    show.at(9)
    assert show.screen.current == "sau"  # its full 10 s, from when it took the screen
    show.at(1)
    assert show.screen.current != "sau"


def test_a_play_now_screen_part_cut_by_an_emergency_resumes_with_the_rest(show: Show) -> None:
    show.command("play.now", {"bulletin": text("dau", ms=10000)}, "first-0001")
    show.at(4)
    show.command("emergency.start", {"bulletin": text("bao", "emergency")}, "emerg-000001")
    assert show.screen.current == "bao"
    show.at(30)
    show.command("emergency.stop", {}, "stop-000001")
    assert show.screen.current == "dau"
    item = show.screen.shown[-1]
    assert item is not None and item.until == show.rig.clock() + timedelta(seconds=6)
    show.at(6)
    got = [
        (e["bulletin"], e["outcome"], e.get("replayed"))
        for e in entries(show)
        if e["channel"] == "screen"
    ]
    assert got[:3] == [
        ("dau", "interrupted", True),
        ("bao", "interrupted", None),
        ("dau", "completed", None),
    ]


def test_a_play_now_waits_for_a_screen_that_is_off_and_is_skipped_when_its_time_is_up(
    show: Show,
) -> None:
    show.command("power.set", {"screen": "off"}, "power-00001")
    show.command("play.now", {"bulletin": text("toi")}, "dark-00001")
    show.at(599)
    assert [e for e in entries(show) if e["channel"] == "screen"] == []  # it waits for the screen
    show.at(1)
    [entry] = [e for e in entries(show) if e["channel"] == "screen"]
    assert (entry["bulletin"], entry["outcome"], entry["reason"]) == (
        "toi",
        "skipped",
        "screen_off",
    )


def audio_media(show: Show, name: str, cached: bool) -> dict[str, Any]:
    data = f"âm thanh {name}".encode()
    sha = hashlib.sha256(data).hexdigest()
    if cached:
        path = show.cache.path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    url = f"https://media.example.vn/{name}.mp3"
    return {"url": url, "sha256": sha, "size": len(data), "mime": "audio/mpeg"}


def test_a_stop_the_player_never_answers_ends_the_call_after_a_while(show: Show) -> None:
    show.command("play.now", {"bulletin": spoken("ket")}, "stuck-0001")
    show.speaker.deaf = True
    show.command("emergency.start", {"bulletin": spoken("bao", "emergency")}, "emerg-000001")
    assert show.speaker.stopped == 1 and show.speaker.played[-1].key == "stuck-0001#1"
    assert show.wakes[-1] == show.rig.clock() + timedelta(seconds=5)
    show.at(5)
    current = show.speaker.current
    assert current is not None and current.key.startswith("emerg")  # the emergency speaks
    [entry] = [e for e in entries(show) if e["channel"] == "speaker"]
    assert (entry["bulletin"], entry["outcome"], entry["replayed"]) == ("ket", "interrupted", True)


def test_a_scheduled_announcement_corrected_while_it_waits_plays_as_corrected(
    show: Show,
) -> None:
    show.command("emergency.start", {"bulletin": text("bao", "emergency")}, "emerg-000001")
    now_local = show.rig.clock().astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    at = now_local.strftime("%H:%M")
    sched = {**spoken("hop-to"), "schedule": {"times": [at]}}
    show.program(1, [sched])
    show.run_jobs()
    assert show.speaker.current is None  # held by the emergency
    fixed = {**sched, "speaker": {"kind": "tts", "text": "Họp tổ dân phố lúc 19 giờ."}}
    show.at(1)
    show.program(2, [fixed])
    show.run_jobs()
    show.command("emergency.stop", {}, "stop-000001")
    current = show.speaker.current
    assert current is not None and current.bulletin.speaker is not None
    assert current.bulletin.speaker.text == "Họp tổ dân phố lúc 19 giờ."
    show.speaker_done()
    speaker = [(e["outcome"], e.get("reason")) for e in entries(show) if e["channel"] == "speaker"]
    assert speaker == [("skipped", "superseded"), ("completed", None)]


def test_an_announcement_finished_before_a_power_cut_is_not_played_again(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    show.command("play.now", {"bulletin": spoken("xong")}, "done-00001")
    show.speaker_done()
    again = make_show(tmp_path, store)  # the power went: no close()
    again.conductor.reconcile()
    assert again.speaker.played == []
    assert [e["outcome"] for e in entries(again)] == ["completed"]


def test_an_emergency_cut_by_a_power_cut_is_spoken_again_after_it(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    show.command("emergency.start", {"bulletin": spoken("bao", "emergency")}, "emerg-000001")
    assert show.speaker.current is not None
    again = make_show(tmp_path, store)
    again.rig.clock.now = show.rig.clock() + timedelta(seconds=20)
    again.conductor.reconcile()
    current = again.speaker.current
    assert current is not None and current.key.startswith("emerg-000001@")
    speaker = [
        (e["outcome"], e.get("replayed")) for e in entries(again) if e["channel"] == "speaker"
    ]
    assert speaker == [("interrupted", True)]


def test_a_screen_play_now_skipped_is_skipped_once_and_shown_time_survives_a_restart(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    show.command("play.now", {"bulletin": text("mot", ms=20000)}, "first-0001")
    show.at(5)
    show.command("play.now", {"bulletin": text("hai", "priority", ms=10000)}, "second-001")
    assert show.screen.current == "hai"  # the first has shown 5 of its 20 s
    again = make_show(tmp_path, store, now=show.rig.clock())
    again.at(10)
    assert again.screen.current == "mot"
    item = again.screen.shown[-1]
    assert item is not None and item.until == again.rig.clock() + timedelta(seconds=15)


def test_a_play_now_waiting_for_its_files_survives_a_restart_and_a_failure_is_logged(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    part = {"kind": "audio", "media": audio_media(show, "nhac", cached=False)}
    bulletin = {"id": "nhac", "title": "Nhạc hiệu", "speaker": part}
    show.command("play.now", {"bulletin": bulletin}, "files-0001")
    assert statuses(show, "files-0001") == [("accepted", None)]
    again = make_show(tmp_path, store)  # a restart before the file came
    [job] = again.jobs
    assert job.doc_id == "files-0001"
    again.run_jobs(fail="hash_mismatch")
    assert [s for s, _ in statuses(again, "files-0001")] == ["accepted", "failed"]
    [entry] = entries(again)
    assert (entry["bulletin"], entry["outcome"], entry["reason"]) == (
        "nhac",
        "skipped",
        "hash_mismatch",
    )
    third = make_show(tmp_path, store)
    assert third.jobs == []  # given up: not fetched again


def test_an_emergency_stopped_before_its_files_came_is_logged_cancelled(show: Show) -> None:
    part = {"kind": "audio", "media": audio_media(show, "coi", cached=False)}
    alert = {"id": "coi", "title": "Còi", "level": "emergency", "speaker": part}
    show.command("emergency.start", {"bulletin": alert}, "emerg-000002")
    show.command("emergency.stop", {}, "stop-000002")
    [entry] = entries(show)
    assert (entry["bulletin"], entry["reason"]) == ("coi", "cancelled")


def test_a_late_synchronized_play_now_accounts_for_every_repeat(show: Show) -> None:
    play_at = show.rig.clock() - timedelta(seconds=700)
    body = {"bulletin": spoken("tre"), "play_at": format_time(play_at), "repeat": 2}
    show.command("play.now", body, "late-00001")
    got = [(e["outcome"], e["reason"]) for e in entries(show) if e["channel"] == "speaker"]
    assert sorted(got) == [("skipped", "expired_in_queue"), ("skipped", "late_for_play_at")]


def test_the_queue_bound_counts_what_waits_besides_what_speaks(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    show.conductor.stage.loudspeakers.policy = replace(
        show.conductor.stage.loudspeakers.policy, queue_max=1
    )
    show.program(1, [spoken("mot"), spoken("hai")])
    show.run_jobs()
    assert show.speaker.current is not None
    assert entries(show) == []  # one speaks, one waits: nothing falls off
