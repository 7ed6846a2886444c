"""agent.stage.Stage on its own: programs and ticker, overrides and what brings them back after
a restart, power, volume, the technician's ``say`` and screen, the players' reports in the
play log, and the shutdown.

The players are the recording fakes of test_conductor; the store, the play log recorder and
the arbitration are the real ones, on a fake clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.arbiter import Entry
from agent.playlog import PlaylogRecorder
from agent.programs import Merged
from agent.stage import RELAY_SETTING, SCREEN_MODE_SETTING, Stage
from agent.store import Store
from player.base import PlayEnded, PlayStarted
from protocol import Bulletin, Envelope, Level, Playlog, PlaylogEntry
from tests.unit.fakes import DEVICE, NOW, TOPICS, FakeClock, Signer, document
from tests.unit.test_conductor import RecordingScreen, RecordingSpeaker

PROGRAM_TOPIC = TOPICS.dev(DEVICE, "program")
SIGNER = Signer()


@dataclass
class Rig:
    stage: Stage
    store: Store
    screen: RecordingScreen
    speaker: RecordingSpeaker
    clock: FakeClock
    recorder: PlaylogRecorder

    def now(self) -> datetime:
        return self.clock()

    def at(self, seconds: float) -> datetime | None:
        self.clock.advance(seconds)
        return self.stage.reconcile(self.clock())

    def entries(self) -> list[PlaylogEntry]:
        """The play log: entries already in outbox messages, then those still pending."""
        sent = [
            entry
            for item in self.store.pending(limit=1000)
            if item.topic == TOPICS.dev(DEVICE, "playlog")
            for entry in Playlog.model_validate_json(item.payload).entries
        ]
        pending = [PlaylogEntry.model_validate_json(e) for e in self.store.playlog_pending()]
        return sent + pending


def make_rig(path: Path, clock: FakeClock, screen: RecordingScreen | None = None) -> Rig:
    store = Store(path)
    screen = screen or RecordingScreen()
    speaker = RecordingSpeaker()
    recorder = PlaylogRecorder(store, DEVICE, TOPICS, clock)
    stage = Stage(
        store,
        screen,
        speaker,
        recorder,
        lambda sha: path.parent / "cache" / sha,
        ZoneInfo("Asia/Ho_Chi_Minh"),
    )
    return Rig(stage, store, screen, speaker, clock, recorder)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rig(tmp_path: Path, clock: FakeClock) -> Iterator[Rig]:
    r = make_rig(tmp_path / "state" / "agent.db", clock)
    yield r
    r.store.close()


def text(bid: str, ms: int = 10000, level: str = "normal") -> dict[str, Any]:
    return {
        "id": bid,
        "title": f"Bản tin {bid}",
        "level": level,
        "screen": {"kind": "text", "text": f"Nội dung {bid}", "duration_ms": ms},
    }


def spoken(bid: str, level: str = "normal") -> dict[str, Any]:
    return {
        "id": bid,
        "title": f"Loa {bid}",
        "level": level,
        "speaker": {"kind": "tts", "text": f"Kính thưa bà con, {bid}."},
    }


def merged(*bulletins: dict[str, Any], ticker: tuple[str, ...] = ()) -> Merged:
    """One live program of the device's own topic, gone live at the fake clock's start."""
    entries = tuple(
        Entry(Bulletin.model_validate(b), 0, PROGRAM_TOPIC, i) for i, b in enumerate(bulletins)
    )
    return Merged(entries, ticker, None, NOW, {})


def command(
    doc_type: str, body: dict[str, Any], doc_id: str, issued: datetime, ttl_s: int = 3600
) -> Envelope:
    """A signed command as the verifier would have passed it."""
    doc = SIGNER.sign(document(doc_type, body, doc_id=doc_id, issued_at=issued, ttl_s=ttl_s))
    return Envelope.model_validate(doc)


def emergency(doc_id: str, issued: datetime, **bulletin: Any) -> Envelope:
    alert = {"id": f"bt-{doc_id}", "title": "Bão số 9", "level": "emergency", **bulletin}
    alert.setdefault("screen", {"kind": "text", "text": "Sơ tán ngay"})
    return command("emergency.start", {"bulletin": alert}, doc_id, issued)


def shown_ids(screen: RecordingScreen) -> list[str | None]:
    return [item.bulletin.id if item is not None else None for item in screen.shown]


# --------------------------------------------------------------------------- programs


def test_programs_reach_the_screen_and_their_ticker_at_once(rig: Rig) -> None:
    rig.stage.set_programs(merged(text("a"), text("b"), ticker=("Phường 12 thông báo",)))
    assert rig.screen.ticker == ("Phường 12 thông báo",)  # before any decision
    assert rig.screen.shown == []
    wake = rig.stage.reconcile(rig.now())
    assert rig.screen.current == "a"
    assert wake == rig.now() + timedelta(seconds=10)
    rig.at(10)
    assert rig.screen.current == "b"
    rig.stage.set_programs(merged(text("c")))  # a new program without a ticker clears it
    assert len(rig.screen.ticker) == 0
    rig.at(0)
    assert rig.screen.current == "c"


# --------------------------------------------------------------------------- overrides


def test_overrides_setting_round_trips_add_and_stop(rig: Rig) -> None:
    now = rig.now()
    first, second = emergency("emerg-0001", now), emergency("emerg-0002", now)
    rig.stage.add_override(first, 1, now, now)
    rig.stage.add_override(second, 0, now + timedelta(seconds=1), now)
    saved = json.loads(rig.stage.overrides_setting()["overrides"] or "[]")
    assert [Envelope.model_validate_json(s["doc"]) for s in saved] == [first, second]
    assert [s["rank"] for s in saved] == [1, 0]
    assert [s["received_at"] for s in saved] == ["2026-11-26T06:00:00Z", "2026-11-26T06:00:01Z"]
    assert rig.stage.override_media() == set()  # text only: no files to keep

    assert rig.stage.stop_emergency("no-such-emergency", now) == 0
    assert [e.id for e in rig.stage.world.emergencies] == ["emerg-0001", "emerg-0002"]
    assert rig.stage.stop_emergency("emerg-0001", now) == 1
    assert [e.id for e in rig.stage.world.emergencies] == ["emerg-0002"]
    saved = json.loads(rig.stage.overrides_setting()["overrides"] or "[]")
    assert [Envelope.model_validate_json(s["doc"]).id for s in saved] == ["emerg-0002"]
    assert rig.stage.stop_emergency(None, now) == 1  # all of them
    assert rig.stage.world.emergencies == ()
    assert rig.stage.overrides_setting() == {"overrides": "[]"}
    # The caller saves each change with its ack: the stage wrote nothing itself.
    assert rig.store.get_setting("overrides") is None


def test_overrides_relay_and_screen_time_come_back_after_a_reopen(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = tmp_path / "state" / "agent.db"
    first = make_rig(db, clock)
    now = clock()
    play = command("play.now", {"bulletin": text("pn", ms=20000)}, "playnow-0001", now, ttl_s=3600)
    first.stage.add_override(play, 0, now, now)
    first.stage.reconcile(now)
    assert first.screen.current == "pn"
    clock.advance(5)
    alert = emergency("emerg-0003", clock())
    first.stage.add_override(alert, 0, clock(), clock())
    first.stage.reconcile(clock())
    assert first.screen.current == "bt-emerg-0003"
    # What the conductor saves with the acks: the overrides, and a relay of stream.start.
    first.store.record(settings=first.stage.overrides_setting(), now=clock().timestamp())
    relay = json.dumps({"url": "https://radio.example.vn/vov1", "level": "priority"})
    first.store.set_setting(RELAY_SETTING, relay)
    first.store.close()

    clock.advance(60)
    again = make_rig(db, clock)  # a new process on the same file
    try:
        assert dict(again.stage.world.shown) == {"playnow-0001": 5000}
        again.stage.restore(clock())
        assert [e.id for e in again.stage.world.emergencies] == ["emerg-0003"]
        assert [p.id for p in again.stage.world.play_now] == ["playnow-0001"]
        assert dict(again.stage.world.shown) == {"playnow-0001": 5000}
        assert again.stage.loudspeakers.relay_wanted == (
            "https://radio.example.vn/vov1",
            Level.PRIORITY.rank,
        )
        again.stage.reconcile(clock())
        assert again.screen.current == "bt-emerg-0003"
        assert getattr(again.speaker, "relaying", None) is None  # not over an emergency
        assert again.stage.stop_emergency(None, clock()) == 1
        again.stage.reconcile(clock())
        # The play.now resumes with the 15 s it had left, and the relay starts.
        item = again.screen.shown[-1]
        assert item is not None and item.bulletin.id == "pn"
        assert item.until == clock() + timedelta(seconds=15)
        assert again.speaker.relaying == "https://radio.example.vn/vov1"
    finally:
        again.store.close()


def test_an_unreadable_saved_override_or_relay_is_dropped_and_the_rest_kept(
    rig: Rig,
) -> None:
    now = rig.now()
    good = emergency("emerg-0004", now)
    saved = [
        {"doc": '{"v": 1, "type": "emergency.start"}', "rank": 0, "received_at": "2026"},
        {"rank": 0},
        {"doc": good.model_dump_json(), "rank": 0, "received_at": "2026-11-26T06:00:00Z"},
    ]
    rig.store.set_setting("overrides", json.dumps(saved))
    rig.store.set_setting(RELAY_SETTING, '{"level": "normal"}')  # no url
    rig.stage.restore(now)
    assert [e.id for e in rig.stage.world.emergencies] == ["emerg-0004"]
    assert rig.stage.loudspeakers.relay_wanted is None
    # The survivors are saved back as they are now.
    kept = json.loads(rig.store.get_setting("overrides") or "[]")
    assert [Envelope.model_validate_json(s["doc"]).id for s in kept] == ["emerg-0004"]


def test_an_expired_override_is_not_brought_back(rig: Rig) -> None:
    issued = rig.now() - timedelta(hours=2)  # its command expired an hour ago
    old = emergency("emerg-0005", issued)
    rig.store.set_setting(
        "overrides",
        json.dumps(
            [{"doc": old.model_dump_json(), "rank": 0, "received_at": "2026-11-26T04:00:00Z"}]
        ),
    )
    rig.stage.restore(rig.now())
    assert rig.stage.world.emergencies == ()
    assert rig.store.get_setting("overrides") == "[]"


def test_never_played_names_every_part_that_will_not_play(rig: Rig) -> None:
    now = rig.now()
    both = {**text("pn2"), "speaker": {"kind": "tts", "text": "Kính thưa bà con."}}
    play = command("play.now", {"bulletin": both, "repeat": 3}, "playnow-0002", now)
    entries = rig.stage.never_played(play, "download_failed")
    parsed = [PlaylogEntry.model_validate_json(e) for _, e in entries]
    assert [(p.channel, p.outcome, p.reason, p.ref) for p in parsed] == [
        ("speaker", "skipped", "download_failed", "playnow-0002"),
        ("speaker", "skipped", "download_failed", "playnow-0002"),
        ("speaker", "skipped", "download_failed", "playnow-0002"),
        ("screen", "skipped", "download_failed", "playnow-0002"),
    ]
    assert {p.bulletin for p in parsed} == {"pn2"}
    assert len({i for i, _ in entries}) == 4
    assert [i for i, _ in entries] == [p.id for p in parsed]
    # An emergency's speaker part is one announcement, whatever its repeat.
    alert = emergency("emerg-0006", now, speaker={"kind": "tts", "text": "Sơ tán."})
    entries = rig.stage.never_played(alert, "stopped")
    assert [PlaylogEntry.model_validate_json(e).channel for _, e in entries] == [
        "speaker",
        "screen",
    ]
    # Not written: the caller records them with its ack.
    assert rig.store.playlog_pending_count() == 0


# --------------------------------------------------------------------------- power, volume


def test_power_modes_force_the_screen_and_the_amplifier(rig: Rig) -> None:
    rig.stage.set_programs(merged(text("a")))
    state = rig.stage.power_state()
    assert (state.screen, state.screen_mode, state.amplifier_mode) == (None, "auto", "auto")
    rig.stage.reconcile(rig.now())
    assert rig.screen.power == [True]
    assert rig.stage.power_state().screen == "on"

    rig.stage.set_power(screen="off")
    assert rig.screen.power == [True]  # the caller reconciles
    rig.stage.reconcile(rig.now())
    assert rig.screen.power == [True, False]
    assert rig.screen.shown[-1] is None  # a switched-off screen shows (and proves) nothing
    state = rig.stage.power_state()
    assert (state.screen, state.screen_mode) == ("off", "off")

    rig.stage.add_override(emergency("emerg-0007", rig.now()), 0, rig.now(), rig.now())
    rig.stage.reconcile(rig.now())
    assert rig.screen.power[-1] is True  # an emergency is always seen
    assert rig.screen.current == "bt-emerg-0007"

    rig.stage.set_power(amplifier="off")
    assert rig.speaker.amplifier == "off"
    assert rig.stage.power_state().amplifier_mode == "off"
    assert rig.stage.power_state().screen_mode == "off"  # left as it was
    rig.stage.set_power(screen="auto", amplifier="auto")
    assert (rig.stage.screen_mode, rig.stage.amplifier_mode, rig.speaker.amplifier) == (
        "auto",
        "auto",
        "auto",
    )


def test_saved_power_modes_are_read_at_start(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "state" / "agent.db"
    store = Store(db)
    store.record(settings={SCREEN_MODE_SETTING: "on", "power.amplifier": "off"}, now=0)
    store.close()
    again = make_rig(db, clock)
    try:
        state = again.stage.power_state()
        assert (state.screen_mode, state.amplifier_mode) == ("on", "off")
    finally:
        again.store.close()


def test_set_volume_reaches_the_speaker(rig: Rig) -> None:
    rig.stage.set_volume(35)
    assert rig.speaker.volume == 35


# --------------------------------------------------------------------------- technician


class TestCardScreen(RecordingScreen):
    """A screen that shows the technician's test card, like the real one."""

    __test__ = False

    def show_test_card(self, seconds: float) -> None:
        self.card = seconds

    def describe(self) -> dict[str, Any]:
        return {"driver": "headless"}


def test_technician_screen_only_for_a_screen_with_a_test_card(
    rig: Rig, tmp_path: Path, clock: FakeClock
) -> None:
    assert rig.stage.technician_screen() is None
    other = make_rig(tmp_path / "other" / "agent.db", clock, TestCardScreen())
    try:
        screen = other.stage.technician_screen()
        assert isinstance(screen, TestCardScreen) and screen is other.screen
    finally:
        other.store.close()


def test_say_starts_on_free_loudspeakers_and_is_refused_when_busy(rig: Rig) -> None:
    assert rig.stage.say("Một, hai, ba, bốn.", "vi-south", chime=True) is None
    [item] = rig.speaker.played
    assert (item.origin, item.bulletin.id, item.bulletin.title) == (
        "technician",
        "technician-test",
        "Thử loa",
    )
    assert item.bulletin.speaker is not None
    assert (item.bulletin.speaker.text, item.bulletin.speaker.voice) == (
        "Một, hai, ba, bốn.",
        "vi-south",
    )
    assert item.bulletin.speaker.chime is True
    assert rig.stage.now_playing().speaker == "technician-test"
    busy = rig.stage.say("Lần nữa.", None, chime=False)
    assert busy == "the loudspeakers are playing technician-test"
    assert len(rig.speaker.played) == 1

    rig.stage.finished(PlayEnded("speaker", item.key, "completed"))
    assert rig.stage.now_playing().speaker is None
    [entry] = rig.entries()  # a test on the loudspeakers is a play like any other
    assert (entry.bulletin, entry.channel, entry.outcome, entry.ref) == (
        "technician-test",
        "speaker",
        "completed",
        "technician",
    )

    rig.stage.add_override(emergency("emerg-0008", rig.now()), 0, rig.now(), rig.now())
    rig.stage.reconcile(rig.now())
    assert rig.stage.say("Thử.", None, chime=False) == "an emergency is in force"
    rig.stage.stop_emergency(None, rig.now())
    rig.stage.set_power(amplifier="off")
    rig.stage.reconcile(rig.now())
    refused = rig.stage.say("Thử.", None, chime=False)
    assert refused == "the amplifier is forced off (power.set)"
    assert len(rig.speaker.played) == 1


# --------------------------------------------------------------------------- player reports


def test_started_and_finished_reports_end_up_in_the_play_log(rig: Rig) -> None:
    rig.stage.set_programs(merged(text("a"), spoken("loa")))
    rig.stage.reconcile(rig.now())
    assert rig.screen.current == "a"
    [call] = rig.speaker.played  # the unscheduled announcement plays at go-live
    assert {p.channel for p in rig.recorder.open_plays()} == {"screen", "speaker"}

    rig.clock.advance(3)
    rig.stage.started(PlayStarted("speaker", call.key))
    rig.stage.finished(PlayEnded("speaker", call.key, "completed"))
    [spoke] = rig.entries()
    assert (spoke.bulletin, spoke.channel, spoke.outcome, spoke.ref) == (
        "loa",
        "speaker",
        "completed",
        PROGRAM_TOPIC,
    )
    assert spoke.ended_at == "2026-11-26T06:00:03Z"

    # The screen's media failed: the play ends failed with the reason, the slot stays.
    showing = rig.screen.shown[-1]
    assert showing is not None
    rig.stage.finished(PlayEnded("screen", "some-other-key", "failed"))  # not what shows
    assert len(rig.entries()) == 1
    rig.stage.finished(PlayEnded("screen", showing.key, "failed", reason="media_error"))
    failed = rig.entries()[-1]
    assert (failed.bulletin, failed.channel, failed.outcome, failed.reason) == (
        "a",
        "screen",
        "failed",
        "media_error",
    )
    rig.stage.finished(PlayEnded("screen", showing.key, "failed"))  # told twice: one entry
    assert len(rig.entries()) == 2
    shows = len(rig.screen.shown)
    rig.at(1)
    assert len(rig.screen.shown) == shows  # not shown again at once
    assert rig.recorder.open_plays() == []


def test_a_synchronized_start_is_recorded_when_its_sound_starts(rig: Rig) -> None:
    play_at = rig.now() + timedelta(seconds=30)
    body = {"bulletin": spoken("dong-bo"), "play_at": play_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    play = command("play.now", body, "playnow-0003", rig.now())
    rig.stage.add_override(play, 0, rig.now(), rig.now())
    wake = rig.stage.reconcile(rig.now())
    while not rig.speaker.played:
        assert wake is not None and wake <= play_at
        rig.clock.now = wake
        wake = rig.stage.reconcile(wake)
    [item] = rig.speaker.played
    assert item.start_at == play_at and rig.now() < play_at  # handed over ahead of its time
    assert rig.recorder.open_plays() == []  # no sound yet: no play
    rig.clock.now = play_at
    rig.stage.started(PlayStarted("speaker", item.key, start_error_ms=12))
    [opened] = rig.recorder.open_plays()
    assert (opened.bulletin, opened.ref, opened.started_at) == (
        "dong-bo",
        "playnow-0003",
        "2026-11-26T06:00:30Z",
    )
    rig.clock.advance(4)
    rig.stage.finished(PlayEnded("speaker", item.key, "completed", start_error_ms=12))
    [entry] = rig.entries()
    assert (entry.outcome, entry.start_error_ms, entry.ended_at) == (
        "completed",
        12,
        "2026-11-26T06:00:34Z",
    )


def test_close_ends_the_open_showing_as_interrupted(rig: Rig) -> None:
    rig.stage.set_programs(merged(text("a", ms=60000), spoken("loa")))
    rig.stage.reconcile(rig.now())
    assert len(rig.recorder.open_plays()) == 2
    rig.clock.advance(20)
    rig.stage.close()
    assert rig.recorder.open_plays() == []
    by_channel = {e.channel: e for e in rig.entries()}
    assert by_channel["screen"].outcome == "interrupted"
    assert by_channel["screen"].ended_at == "2026-11-26T06:00:20Z"
    assert by_channel["speaker"].outcome == "interrupted"
    assert rig.stage.showing is None
    assert rig.stage.now_playing().screen is None
