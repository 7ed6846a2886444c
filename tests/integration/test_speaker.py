"""The loudspeakers' player: real TTS (espeak-ng and Piper), the real outputs, real libVLC.

Sound goes to ``FileOutput`` (a WAV capture paced like a sound card) and, for the sound-card
path, through sounddevice to an ALSA null or file PCM defined in an ``.asoundrc``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from player.amplifier import Amplifier
from player.base import PlayEnded, PlayItem, PlayStarted
from player.output import RATE, FileOutput, NullOutput
from player.power import PowerHook
from player.speaker import AudioSpeaker, chime, gain, rms, wav_pcm
from player.tts import Tts
from protocol import Bulletin, Outcome
from tests.helpers import wait_for
from tests.integration.test_tts import speaking_vietnamese

TEXT = "Ủy ban nhân dân phường thông báo: ngày 08/9 cắt điện từ 7h30 đến 11h."


class Events:
    def __init__(self) -> None:
        self.ended: list[tuple[str, Outcome, str]] = []
        self.reports: list[PlayEnded] = []
        self.started_at: dict[str, tuple[float, int | None]] = {}
        self.done = threading.Event()

    def finished(self, report: PlayEnded) -> None:
        self.ended.append((report.key, report.outcome, report.detail))
        self.reports.append(report)
        self.done.set()

    def started(self, report: PlayStarted) -> None:
        self.started_at[report.key] = (time.monotonic(), report.start_error_ms)


def announcement(text: str = TEXT, chime_on: bool = False, voice: str | None = None) -> Bulletin:
    return Bulletin.model_validate(
        {
            "id": "thong-bao",
            "title": "Thông báo",
            "speaker": {"kind": "tts", "text": text, "voice": voice, "chime": chime_on},
        }
    )


@pytest.fixture
def espeak_tts(tmp_path: Path) -> Iterator[Tts]:
    tts = Tts({}, "vi-north", tmp_path / "cache", lambda code, detail: None)
    yield tts
    tts.close()


def speaker_on_file(
    tmp_path: Path, tts: Tts, events: Events, **kw: object
) -> tuple[AudioSpeaker, Path]:
    capture = tmp_path / "capture.wav"
    kw.setdefault("volume", 70)
    return AudioSpeaker(FileOutput(capture), tts, events, **kw), capture  # type: ignore[arg-type]


def play(speaker: AudioSpeaker, events: Events, bulletin: Bulletin, **kw: object) -> None:
    events.done.clear()
    speaker.play(PlayItem(bulletin, "speaker", "k1", "rotation", **kw))  # type: ignore[arg-type]
    assert events.done.wait(60), "the announcement did not end"


def test_an_announcement_is_spoken_after_the_chime(tmp_path: Path, espeak_tts: Tts) -> None:
    events = Events()
    speaker, capture = speaker_on_file(tmp_path, espeak_tts, events, volume=100)
    try:
        started = time.monotonic()
        play(speaker, events, announcement(chime_on=True))
        took = time.monotonic() - started
    finally:
        speaker.close()
    assert events.ended == [("k1", "completed", "")]
    pcm = wav_pcm(capture)
    seconds = len(pcm) / (2 * RATE)
    ring = chime()
    assert pcm[: len(ring)] == ring  # the chime first, exactly
    speech = pcm[len(ring) :]
    assert rms(speech) > 500
    # The normalized text is longer than the written one ("bảy giờ ba mươi phút" for 7h30).
    assert 0.03 * len(TEXT) < len(speech) / (2 * RATE) < 0.25 * len(TEXT)
    # The output keeps real time: playing took as long as the sound lasts.
    assert took >= seconds - 0.3


def test_stop_interrupts_within_a_fraction_of_a_second(tmp_path: Path, espeak_tts: Tts) -> None:
    events = Events()
    speaker, _ = speaker_on_file(tmp_path, espeak_tts, events)
    try:
        speaker.play(PlayItem(announcement(TEXT * 3), "speaker", "long", "rotation"))
        wait_for(lambda: "long" in events.started_at, 20, "the announcement to start")
        time.sleep(0.5)
        stopped = time.monotonic()
        speaker.stop()
        assert events.done.wait(5)
        assert time.monotonic() - stopped < 1.0
    finally:
        speaker.close()
    assert events.ended == [("long", "interrupted", "")]


def test_volume_scales_every_sample() -> None:
    ring = chime()
    quiet = gain(ring, 50)
    assert rms(quiet) / rms(ring) == pytest.approx(0.25, rel=0.02)
    assert gain(ring, 100) == ring
    assert rms(gain(ring, 0)) == 0


def test_a_synchronized_start_begins_on_the_clock(tmp_path: Path, espeak_tts: Tts) -> None:
    events = Events()
    speaker, capture = speaker_on_file(tmp_path, espeak_tts, events)
    start_at = datetime.now(UTC) + timedelta(seconds=2)
    try:
        play(speaker, events, announcement("Một, hai, ba."), start_at=start_at)
    finally:
        speaker.close()
    _, error_ms = events.started_at["k1"]
    assert error_ms is not None and abs(error_ms) < 50, error_ms
    assert rms(wav_pcm(capture)) > 300


def test_the_amplifier_warms_up_before_the_first_sound_and_goes_off_after_the_hold(
    tmp_path: Path, espeak_tts: Tts
) -> None:
    marks = tmp_path / "amp"
    marks.mkdir()
    hook = PowerHook(
        "amplifier", ["touch", str(marks / "on")], ["touch", str(marks / "off")], 5, print
    )
    amplifier = Amplifier(hook, warmup_s=0.8, hold_s=0.5)
    events = Events()
    speaker, _ = speaker_on_file(tmp_path, espeak_tts, events, amplifier=amplifier)
    try:
        asked = time.monotonic()
        play(speaker, events, announcement("Một."))
        first_sound, _ = events.started_at["k1"]
        assert first_sound - asked >= 0.75  # the warm-up came first
        assert (marks / "on").exists()
        assert not (marks / "off").exists()  # held on …
        wait_for(lambda: (marks / "off").exists(), 5, "the amplifier off after the hold")
    finally:
        speaker.close()


def test_piper_speaks_vietnamese_through_the_speaker(tmp_path: Path) -> None:
    voice = speaking_vietnamese(tmp_path / "voices")
    tts = Tts({"vi-north": voice}, "vi-north", tmp_path / "cache", lambda c, d: None)
    events = Events()
    speaker, capture = speaker_on_file(tmp_path, tts, events)
    try:
        play(speaker, events, announcement("Xin chào bà con. Hôm nay trời đẹp."))
    finally:
        speaker.close()
    assert events.ended[0][1] == "completed"
    assert rms(wav_pcm(capture)) > 300


ASOUNDRC = """pcm.!default {{ type plug; slave.pcm "capture" }}
pcm.capture {{ type file; slave.pcm "nullsink"; file "{path}"; format "raw" }}
pcm.nullsink {{ type null }}
"""


def test_the_sound_card_path_plays_through_alsa(tmp_path: Path) -> None:
    """sounddevice → PortAudio → ALSA's default PCM, here a file PCM (no sound card)."""
    raw = tmp_path / "alsa.raw"
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(path=raw))
    # PortAudio reads ALSA's configuration once per process: a child with its own HOME.
    code = (
        "from player.output import DeviceOutput; from player.speaker import chime\n"
        "out = DeviceOutput(); out.write(chime()); out.close()\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    captured = np.frombuffer(raw.read_bytes(), dtype="<i2")
    assert len(captured) >= len(chime()) // 2 * 0.9
    assert float(np.sqrt(np.mean(captured.astype(np.float64) ** 2))) > 1000


def test_null_output_keeps_real_time() -> None:
    out = NullOutput()
    started = time.monotonic()
    for _ in range(10):
        out.write(bytes(int(RATE * 0.1) * 2))
    assert time.monotonic() - started >= 1.0 - 0.25  # AHEAD_S of slack


def test_a_relayed_stream_survives_a_cut_and_gives_way_to_an_announcement(
    tmp_path: Path, espeak_tts: Tts
) -> None:
    from player.vlcaudio import AudioEngine
    from tests.integration.test_vlcaudio import ToneStation

    station = ToneStation().start()
    reports: list[tuple[str, str]] = []
    events = Events()
    speaker, capture = speaker_on_file(
        tmp_path,
        espeak_tts,
        events,
        decoder=AudioEngine,
        report=lambda severity, code, detail: reports.append((code, detail)),
    )

    def heard() -> int:
        return len(wav_pcm(capture)) if capture.exists() else 0

    try:
        speaker.relay(station.url)
        wait_for(lambda: heard() > 2 * RATE * 2, 15, "two seconds of the relay")
        station.drop(1.5)  # the studio's link drops; the mount refuses for 1.5 s
        wait_for(lambda: "stream_gone" in {c for c, _ in reports}, 10, "stream_gone")
        wait_for(lambda: "stream_back" in {c for c, _ in reports}, 15, "stream_back")
        before = heard()
        wait_for(lambda: heard() > before + RATE * 2, 10, "the relay playing again")

        # An announcement interrupts the relay, and the relay resumes after it.
        mark = heard()
        play(speaker, events, announcement("Thông báo ngắn."))
        spoken_end = heard()
        wait_for(lambda: heard() > spoken_end + RATE * 2, 15, "the relay after the announcement")
    finally:
        speaker.close()
        station.stop()
    pcm = wav_pcm(capture)
    # The announcement's audio sits between relay audio: speech is not the station's pure tone.
    assert rms(pcm[mark:spoken_end]) > 300
    assert events.ended[-1][1] == "completed"


def test_a_stop_right_after_play_is_not_lost(tmp_path: Path, espeak_tts: Tts) -> None:
    events = Events()
    speaker, capture = speaker_on_file(tmp_path, espeak_tts, events)
    try:
        speaker.play(PlayItem(announcement(TEXT * 3), "speaker", "long", "rotation"))
        speaker.stop()  # before the speaker thread has even picked it up
        assert events.done.wait(10)
    finally:
        speaker.close()
    assert events.ended == [("long", "interrupted", "")]
    assert len(wav_pcm(capture)) < RATE * 2 // 2  # less than half a second went out


def test_a_stream_announcement_whose_stream_is_dead_ends(tmp_path: Path, espeak_tts: Tts) -> None:
    from player.vlcaudio import AudioEngine

    dead = Bulletin.model_validate(
        {
            "id": "tiep-song",
            "title": "Tiếp sóng",
            "speaker": {"kind": "stream", "url": "http://127.0.0.1:9/live", "chime": False},
        }
    )
    events = Events()
    speaker, _ = speaker_on_file(
        tmp_path, espeak_tts, events, decoder=AudioEngine, stream_give_up_s=2.0
    )
    try:
        speaker.play(PlayItem(dead, "speaker", "dead", "rotation"))
        assert events.done.wait(20), "a dead stream held the loudspeakers"
    finally:
        speaker.close()
    assert events.ended[0][0] == "dead"


def test_a_synchronized_start_has_the_speech_ready_after_the_chime(tmp_path: Path) -> None:
    """The voice (not warmed: loading it takes about a second) is ready before play_at."""
    voice = speaking_vietnamese(tmp_path / "voices")
    tts = Tts({"vi-north": voice}, "vi-north", None, lambda c, d: None)
    events = Events()
    speaker, capture = speaker_on_file(tmp_path, tts, events, volume=100)
    start_at = datetime.now(UTC) + timedelta(seconds=6)
    try:
        play(speaker, events, announcement("Xin chào bà con.", chime_on=True), start_at=start_at)
    finally:
        speaker.close()
    _, error_ms = events.started_at["k1"]
    assert error_ms is not None and abs(error_ms) < 50, error_ms
    pcm = wav_pcm(capture)
    ring = chime()
    assert pcm[: len(ring)] == ring
    # The voice follows the chime at once: Piper's own leading silence, not a synthesis.
    samples = np.frombuffer(pcm[len(ring) :], dtype="<i2")
    onset = int(np.argmax(np.abs(samples) > 1000))
    assert onset / RATE < 0.4, f"{onset / RATE:.2f} s between the chime and the voice"


def test_the_volume_scales_what_the_loudspeakers_play(tmp_path: Path) -> None:
    levels = {}
    for volume in (100, 40):
        events = Events()
        folder = tmp_path / str(volume)
        folder.mkdir()
        tts = Tts({}, "vi-north", None, lambda code, detail: None)  # espeak-ng: the same audio
        speaker, capture = speaker_on_file(folder, tts, events, volume=volume)
        try:
            play(speaker, events, announcement("Một, hai, ba."))
        finally:
            speaker.close()
        levels[volume] = rms(wav_pcm(capture))
    assert levels[40] / levels[100] == pytest.approx(0.16, rel=0.05)


def test_forcing_the_amplifier_back_to_auto_while_sound_plays_switches_it_on() -> None:
    switched: list[bool] = []

    class Relay:
        def set(self, on: bool) -> None:
            switched.append(on)

        def close(self) -> None:
            pass

    amplifier = Amplifier(Relay(), warmup_s=0.0, hold_s=10.0)
    amplifier.acquire()  # a relay is playing
    amplifier.set_mode("off")
    amplifier.set_mode("auto")
    assert switched == [True, False, True]
    amplifier.release()
    amplifier.close()


def test_a_synchronized_start_ready_too_late_is_not_played(tmp_path: Path, espeak_tts: Tts) -> None:
    events = Events()
    speaker, capture = speaker_on_file(tmp_path, espeak_tts, events)
    start_at = datetime.now(UTC) - timedelta(seconds=1)  # already past
    try:
        play(speaker, events, announcement("Một, hai."), start_at=start_at, start_tolerance_ms=200)
    finally:
        speaker.close()
    [report] = events.reports
    assert (report.outcome, report.reason) == ("skipped", "late_for_play_at")
    assert report.start_error_ms is not None and report.start_error_ms >= 1000
    assert "k1" not in events.started_at  # nothing sounded
    if capture.exists():
        assert rms(wav_pcm(capture)) == 0.0


def test_speech_prepared_ahead_is_the_speech_played(tmp_path: Path, espeak_tts: Tts) -> None:
    events = Events()
    speaker, capture = speaker_on_file(tmp_path, espeak_tts, events, volume=100)
    item = PlayItem(announcement("Ba, bốn, năm."), "speaker", "k1", "play_now")
    try:
        speaker.prepare(item)
        wait_for(lambda: "k1" in speaker._prepared, 10, "the speech prepared")
        events.done.clear()
        speaker.play(item)
        assert events.done.wait(30)
        assert speaker._prepared == {}  # taken by the play, not synthesized twice
    finally:
        speaker.close()
    assert events.ended == [("k1", "completed", "")]
    assert rms(wav_pcm(capture)) > 500
