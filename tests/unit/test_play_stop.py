"""``play.stop`` on the device: a ``play.now`` withdrawn wherever it is, logged exactly once.

The conductor and stage of ``test_conductor`` (recording players, real store and cache).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.store import Store
from tests.unit.test_conductor import (
    Show,
    audio_media,
    entries,
    make_show,
    spoken,
    statuses,
    text,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state" / "agent.db")
    yield s
    s.close()


@pytest.fixture
def show(tmp_path: Path, store: Store) -> Show:
    return make_show(tmp_path, store)


def details(show: Show, doc_id: str) -> list[str]:
    return [a["detail"] for a in show.rig.acks(doc_id)]


def logged(show: Show, bulletin: str) -> list[tuple[str, str, str | None]]:
    """The play-log entries of ``bulletin``: channel, outcome, reason."""
    return [
        (e["channel"], e["outcome"], e.get("reason"))
        for e in entries(show)
        if e["bulletin"] == bulletin
    ]


def stop(show: Show, ref: str, doc_id: str = "stop-play-01") -> None:
    show.command("play.stop", {"ref": ref}, doc_id)


def test_a_play_now_waiting_for_its_files_is_withdrawn_and_not_fetched(show: Show) -> None:
    part = {"kind": "audio", "media": audio_media(show, "nhac", cached=False)}
    show.command(
        "play.now", {"bulletin": {"id": "nhac", "title": "Nhạc", "speaker": part}}, "files-0001"
    )
    assert len(show.jobs) == 1
    stop(show, "files-0001")
    assert statuses(show, "stop-play-01") == [("done", None)]
    assert "waiting for its files" in details(show, "stop-play-01")[0]
    assert statuses(show, "files-0001") == [("accepted", None), ("failed", "cancelled")]
    assert show.jobs == []
    assert logged(show, "nhac") == [("speaker", "skipped", "cancelled")]
    assert show.speaker.played == []


def test_a_play_now_queued_on_the_speaker_is_skipped_cancelled(show: Show) -> None:
    show.command("play.now", {"bulletin": spoken("dau")}, "first-0001")
    show.command("play.now", {"bulletin": spoken("sau"), "repeat": 2}, "second-001")
    current = show.speaker.current
    assert current is not None and current.key == "first-0001#1"
    stop(show, "second-001")
    assert statuses(show, "stop-play-01") == [("done", None)]
    assert show.speaker.stopped == 0  # the one speaking plays on
    show.speaker_done()
    assert show.speaker.current is None  # nothing of the withdrawn one comes after it
    assert logged(show, "sau") == [("speaker", "skipped", "cancelled")] * 2
    assert logged(show, "dau") == [("speaker", "completed", None)]


def test_a_play_now_speaking_is_interrupted_and_not_replayed(show: Show) -> None:
    show.command("play.now", {"bulletin": spoken("dang-noi")}, "speak-0001")
    assert show.speaker.current is not None
    stop(show, "speak-0001")
    assert statuses(show, "stop-play-01") == [("done", None)]
    assert show.speaker.stopped == 1
    show.flush_interrupts()
    show.at(60)
    assert [p.key for p in show.speaker.played] == ["speak-0001#1"]
    [entry] = [e for e in entries(show) if e["bulletin"] == "dang-noi"]
    assert (entry["outcome"], entry["replayed"]) == ("interrupted", False)
    assert "stopped on the loudspeakers" in details(show, "stop-play-01")[0]
    stop(show, "speak-0001", "stop-play-02")  # a second stop of it changes nothing
    assert statuses(show, "stop-play-02") == [("done", "not_found")]
    assert len(entries(show)) == 1


def test_a_play_now_on_the_screen_gives_the_screen_back(show: Show) -> None:
    show.program(1, [text("a", ms=60000)])
    show.run_jobs()
    show.command("play.now", {"bulletin": text("ngay", ms=30000)}, "screen-001")
    assert show.screen.current == "ngay"
    stop(show, "screen-001")
    assert statuses(show, "stop-play-01") == [("done", None)]
    assert show.screen.current == "a"
    show.at(60)
    assert logged(show, "ngay") == [("screen", "interrupted", None)]


def test_a_screen_part_waiting_behind_another_is_skipped_cancelled(show: Show) -> None:
    show.command("play.now", {"bulletin": text("mot", ms=20000)}, "first-0001")
    show.command("play.now", {"bulletin": text("hai", ms=20000)}, "second-001")
    assert show.screen.current == "mot"
    stop(show, "second-001")
    show.at(30)
    assert show.screen.current != "hai"
    assert logged(show, "hai") == [("screen", "skipped", "cancelled")]


def _play_now(bid: str) -> dict[str, Any]:
    return {"bulletin": {**spoken(bid), "screen": text(bid)["screen"]}}


def test_a_stop_before_its_play_now_keeps_it_from_playing_also_after_a_restart(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    stop(show, "later-0001")
    assert statuses(show, "stop-play-01") == [("done", "not_found")]
    assert "will not be played if it comes" in details(show, "stop-play-01")[0]
    show.conductor.close()
    store.close()
    reopened = Store(tmp_path / "state" / "agent.db")  # a restart in between
    again = make_show(tmp_path, reopened, now=show.rig.clock())
    again.command("play.now", _play_now("muon"), "later-0001")
    assert statuses(again, "later-0001") == [("failed", "cancelled")]
    assert again.speaker.played == [] and again.screen.current is None
    assert sorted(logged(again, "muon")) == [
        ("screen", "skipped", "cancelled"),
        ("speaker", "skipped", "cancelled"),
    ]
    reopened.close()


def test_a_withdrawn_play_now_saved_in_force_does_not_come_back_after_a_restart(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    show.command("play.now", _play_now("cu"), "saved-0001")
    stop(show, "saved-0001")
    show.flush_interrupts()
    again = make_show(tmp_path, store, now=show.rig.clock())  # the power went: no close()
    again.at(1)
    assert again.speaker.played == [] and again.screen.current is None
    assert sorted(logged(again, "cu")) == [
        ("screen", "interrupted", None),
        ("speaker", "interrupted", None),
    ]


def test_an_unknown_ref_is_done_not_found_and_a_played_one_says_so(show: Show) -> None:
    stop(show, "nobody-001")
    assert statuses(show, "stop-play-01") == [("done", "not_found")]
    show.command("play.now", {"bulletin": spoken("xong")}, "over-00001")
    show.speaker_done()
    stop(show, "over-00001", "stop-play-02")
    assert statuses(show, "stop-play-02") == [("done", "not_found")]
    assert logged(show, "xong") == [("speaker", "completed", None)]


def test_a_burst_decides_once_after_its_last_message(show: Show) -> None:
    backlog = [True]
    show.conductor.busy = lambda: bool(backlog)
    show.command("play.now", {"bulletin": spoken("chum")}, "burst-0001")
    assert show.speaker.played == []  # a decision waits behind the burst …
    assert show.wakes[-1] == show.rig.clock()  # … as a wake-up queued behind it
    backlog.clear()
    stop(show, "burst-0001")
    assert show.speaker.played == []  # withdrawn before it ever sounded
    assert logged(show, "chum") == [("speaker", "skipped", "cancelled")]


def test_a_single_command_is_decided_at_once(show: Show) -> None:
    show.conductor.busy = lambda: False
    show.command("play.now", {"bulletin": spoken("mot-minh")}, "alone-0001")
    current = show.speaker.current
    assert current is not None and current.key == "alone-0001#1"


def test_a_power_cut_before_the_player_answered_the_stop_does_not_replay_it(
    tmp_path: Path, store: Store
) -> None:
    show = make_show(tmp_path, store)
    show.command("play.now", {"bulletin": spoken("cat-dien")}, "cut-000001")
    show.speaker.deaf = True  # the stop is asked, the player never says it ended
    stop(show, "cut-000001")
    again = make_show(tmp_path, store, now=show.rig.clock())  # the power went
    again.at(60)
    assert again.speaker.played == []
    [entry] = [e for e in entries(again) if e["bulletin"] == "cat-dien"]
    assert (entry["outcome"], entry["replayed"]) == ("interrupted", False)
