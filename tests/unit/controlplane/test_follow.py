"""How long the control plane waits for a synchronized call: the devices' own estimate of the
speech (``protocol.speaking_time_s``, which the null loudspeaker plays for) plus the chime."""

from __future__ import annotations

import pytest

from controlplane.follow import speaking_estimate_s, synchronized_speech
from protocol import SpeakerPart, speaking_time_s


@pytest.mark.parametrize(
    ("text", "seconds"), [("x" * 140, 10.0), ("ngắn", 2.0), ("x" * 140_000, 600.0)]
)
def test_speech_takes_its_text_at_14_characters_a_second_within_bounds(
    text: str, seconds: float
) -> None:
    assert speaking_time_s(SpeakerPart(kind="tts", text=text)) == seconds


def test_a_part_without_text_takes_the_minimum() -> None:
    assert speaking_time_s(None) == 2.0


def test_the_wait_is_the_speech_and_the_chime_or_a_minute_for_a_file() -> None:
    tts = {"kind": "tts", "text": "x" * 280}
    assert speaking_estimate_s({"speaker": tts}) == 3.0 + 20.0
    assert speaking_estimate_s({"speaker": {**tts, "chime": False}}) == 20.0
    media = {"url": "http://m/a.mp3", "sha256": "0" * 64, "size": 1, "mime": "audio/mpeg"}
    assert speaking_estimate_s({"speaker": {"kind": "audio", "media": media}}) == 63.0


def test_only_a_play_now_with_play_at_and_speech_is_followed() -> None:
    speech = {"bulletin": {"speaker": {"kind": "tts", "text": "a"}}}
    assert synchronized_speech({**speech, "play_at": "2026-11-26T06:00:00Z"})
    assert not synchronized_speech(speech)
    assert not synchronized_speech({"bulletin": {"screen": {}}, "play_at": "2026-11-26T06:00:00Z"})
