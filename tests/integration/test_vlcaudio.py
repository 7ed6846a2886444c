"""Audio decoding through the real libVLC into S16LE mono 22,050 Hz PCM (no sound card).

Tone files (WAV in pure Python and by sox, Ogg Vorbis by sox, MP3 and M4A by libVLC's own
encoders) decode to their length at 440 Hz; garbage and missing files fail at once; a file is
decoded no faster than it is read and loses nothing to a slow reader; HLS and ``.m3u``/``.pls``
links over a real HTTP server decode. A live HTTP stream (an endless WAV paced in real time,
like an Icecast mount) that drops is reported gone, retried with back-off while the mount
answers 404, reported back and plays again; one that goes quiet is reconnected; one that never
comes can be given up; after ``stop()`` no request reaches the server. ``stop()`` is prompt
during a blocked read, a held-back decoder and from ``on_state``."""

from __future__ import annotations

import itertools
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from player.output import RATE
from player.vlcaudio import AudioEngine, AudioSource
from tests.helpers import MediaServer
from tests.media import (
    pcm_samples,
    sound_span,
    sox_formats,
    sox_tone,
    tone_pcm,
    tone_wav,
    vlc_encode,
    zero_crossing_frequency,
)

BYTES_PER_SECOND = RATE * 2
TONE = 440.0


@pytest.fixture(scope="module")
def engine() -> Iterator[AudioEngine]:
    eng = AudioEngine()
    yield eng
    eng.close()


def read_all(source: AudioSource, timeout: float) -> bytes:
    """Every byte ``source`` yields until its end; fail after ``timeout`` seconds."""
    pcm = bytearray()
    deadline = time.monotonic() + timeout
    while (data := source.read(8820, 0.2)) is not None:
        pcm += data
        if time.monotonic() > deadline:
            raise AssertionError(f"{source.name} still running after {timeout}s")
    return bytes(pcm)


def read_for(source: AudioSource, seconds_of_pcm: float, timeout: float) -> bytes:
    """At least ``seconds_of_pcm`` of PCM from ``source``; fail after ``timeout`` seconds."""
    want = int(seconds_of_pcm * BYTES_PER_SECOND)
    pcm = bytearray()
    deadline = time.monotonic() + timeout
    while len(pcm) < want:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(pcm)} of {want} bytes after {timeout}s")
        data = source.read(4410, 0.2)
        if data is None:
            raise AssertionError(f"{source.name} ended early: {source.state}, {source.error}")
        pcm += data
    return bytes(pcm)


def read_until(source: AudioSource, done: Callable[[], bool], timeout: float, what: str) -> bytes:
    """Keep reading (as the output would) until ``done()``; fail after ``timeout`` seconds."""
    pcm = bytearray()
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        data = source.read(4410, 0.05)
        if data is None:
            raise AssertionError(f"{source.name} ended while waiting for {what}")
        pcm += data
    return bytes(pcm)


def assert_tone(pcm: bytes, what: str) -> None:
    """``pcm`` is a loud 440 Hz tone (its first and last 50 ms left out: fades, resampling)."""
    samples = pcm_samples(pcm)[RATE // 20 : -RATE // 20]
    assert samples, f"{what}: no PCM"
    assert max(abs(s) for s in samples) > 8000, f"{what}: silent"
    frequency = zero_crossing_frequency(samples, RATE)
    assert abs(frequency - TONE) < TONE * 0.03, f"{what}: {frequency:.1f} Hz, not {TONE} Hz"


# -- files ---------------------------------------------------------------------------------


def make_tone_file(kind: str, folder: Path) -> tuple[Path, float]:
    """A 1.0 s 440 Hz tone file of ``kind``, and the seconds of PCM it holds in all.

    MP3 and M4A come from libVLC's own encoders, whose transcoder loses the end of its input
    (30-180 ms measured) and, with LAME, its first ~50 ms: their tone gets 0.2 s of silence
    before and 0.3 s after, so that the whole tone survives to be measured.
    """
    if kind == "wav (python)":
        return tone_wav(folder / "tone.wav", 1.0, TONE, rate=44100), 1.0
    formats = sox_formats()
    if kind in ("wav (sox)", "ogg"):
        suffix = "wav" if kind == "wav (sox)" else "ogg"
        if suffix not in formats or (suffix == "ogg" and "vorbis" not in formats):
            pytest.skip(f"this sox cannot write {suffix} (it writes: {' '.join(sorted(formats))})")
        return sox_tone(folder / f"tone.{suffix}", 1.0, TONE, rate=44100, channels=2), 1.0
    if "wav" not in formats:
        pytest.skip("sox cannot write the WAV that libVLC would encode")
    padded = sox_tone(folder / "padded.wav", 1.0, TONE, rate=44100, channels=2, pad=(0.2, 0.3))
    acodec, mux, suffix = {"mp3": ("mp3", "raw", "mp3"), "m4a": ("mp4a", "mp4", "m4a")}[kind]
    try:
        return vlc_encode(padded, folder / f"tone.{suffix}", acodec, mux), 1.5
    except RuntimeError as exc:
        pytest.skip(f"no {kind} encoder here: {exc}")


@pytest.mark.parametrize("kind", ["wav (python)", "wav (sox)", "ogg", "mp3", "m4a"])
def test_a_tone_file_decodes_to_its_length_at_its_pitch(
    engine: AudioEngine, tmp_path: Path, kind: str
) -> None:
    path, length = make_tone_file(kind, tmp_path)
    source = engine.open(str(path))
    began = time.monotonic()
    source.start()
    first = source.read(4410, 5.0)
    first_pcm_s = time.monotonic() - began
    assert first, f"no PCM within 5 s: {source.state}, {source.error}"
    pcm = first + read_all(source, timeout=10)
    source.stop()

    assert source.state == "ended" and source.error is None
    assert len(pcm) % 2 == 0
    start, end = sound_span(pcm_samples(pcm))
    assert abs((end - start) / RATE - 1.0) <= 0.05, f"the tone lasts {(end - start) / RATE:.3f} s"
    total = len(pcm) / BYTES_PER_SECOND
    if length == 1.0:  # the tone alone
        assert abs(total - 1.0) <= 0.05, f"{total:.3f} s of PCM, not 1.0 s"
    else:  # the tone in silence, of which libVLC's encoder kept most
        assert 1.0 < total <= length * 1.05, f"{total:.3f} s of PCM for {length} s"
    assert_tone(pcm[start * 2 : end * 2], kind)
    assert first_pcm_s < 1.0, f"first PCM after {first_pcm_s:.2f} s"


def test_a_file_is_decoded_no_faster_than_it_is_read_and_loses_nothing(
    engine: AudioEngine, tmp_path: Path
) -> None:
    """libVLC runs ~1 s ahead of its own clock and drops what is late; the buffer's pausing of
    the player keeps a slow reader from losing any of it."""
    path = tone_wav(tmp_path / "long.wav", 2.5, TONE, rate=22050)
    source = engine.open(str(path), buffer_seconds=1.0)
    source.start()
    pcm = bytearray()
    most_buffered = 0
    began = time.monotonic()
    deadline = began + 20
    while (data := source.read(2205, 1.0)) is not None:  # 50 ms pieces at half speed
        pcm += data
        most_buffered = max(most_buffered, source.buffered_bytes)
        time.sleep(len(data) / BYTES_PER_SECOND * 2)
        assert time.monotonic() < deadline, "the slow read did not finish in 20 s"
    took = time.monotonic() - began
    assert source.state == "ended", source.error
    assert abs(len(pcm) - 2.5 * BYTES_PER_SECOND) <= 0.01 * BYTES_PER_SECOND, len(pcm)
    assert most_buffered <= BYTES_PER_SECOND  # the buffer's bound
    assert took > 4.5  # paced by the reader: 2.5 s read at half speed
    assert_tone(bytes(pcm), "slow read")


@pytest.mark.parametrize("content", [b"", b"this is not audio\n" * 40, bytes(range(256)) * 400])
def test_a_file_that_is_not_audio_fails_promptly(
    engine: AudioEngine, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bulletin.mp3"
    path.write_bytes(content)
    source = engine.open(str(path))
    began = time.monotonic()
    source.start()
    assert source.read(4410, 5.0) is None
    assert time.monotonic() - began < 2.0
    assert source.state == "failed"
    assert source.error and "bulletin.mp3" in source.error
    source.stop()


def test_a_missing_file_fails_at_once(engine: AudioEngine, tmp_path: Path) -> None:
    source = engine.open(str(tmp_path / "nowhere.ogg"))
    source.start()
    assert source.read(4410, 2.0) is None
    assert source.state == "failed" and source.error and "nowhere.ogg" in source.error


def test_an_hls_playlist_and_icecast_style_playlist_links_decode(
    engine: AudioEngine, tmp_path: Path
) -> None:
    """HLS: one MPEG-TS of AAC cut into three segments; ``.m3u`` and ``.pls`` links (which
    libVLC only lists) lead to their first entry."""
    if "wav" not in sox_formats():
        pytest.skip("sox cannot write the WAV that libVLC would encode")
    padded = sox_tone(tmp_path / "padded.wav", 2.0, TONE, rate=44100, channels=2, pad=(0.2, 0.3))
    try:
        ts = vlc_encode(padded, tmp_path / "all.ts", "mp4a", "ts").read_bytes()
    except RuntimeError as exc:
        pytest.skip(f"no AAC in MPEG-TS encoder here: {exc}")
    packets = len(ts) // 188
    with MediaServer() as media:
        for i in range(3):  # cut on packet boundaries, as a segmenter would
            media.add(f"seg{i}.ts", ts[188 * (packets * i // 3) : 188 * (packets * (i + 1) // 3)])
        hls = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        hls += "".join(f"#EXTINF:0.84,\nseg{i}.ts\n" for i in range(3)) + "#EXT-X-ENDLIST\n"
        wav = media.add("tone.wav", tone_wav(tmp_path / "tone.wav", 1.0, TONE).read_bytes())
        links = {
            media.add("vod.m3u8", hls.encode()): 2.0,
            media.add("listen.m3u", f"#EXTM3U\n#EXTINF:-1,Phuong 5\n{wav}\n".encode()): 1.0,
            media.add("listen.pls", f"[playlist]\nFile1={wav}\nNumberOfEntries=1\n".encode()): 1.0,
        }
        for url, seconds in links.items():
            source = engine.open(url)
            source.start()
            pcm = read_all(source, timeout=10)
            assert source.state == "ended", (url, source.error)
            start, end = sound_span(pcm_samples(pcm))
            assert abs((end - start) / RATE - seconds) <= 0.05 * seconds, (url, end - start)
            assert_tone(pcm[start * 2 : end * 2], url)


# -- a live stream ---------------------------------------------------------------------------


class ToneStation:
    """An Icecast-like HTTP mount on a free loopback port: ``/live.wav`` streams an endless WAV
    (a 440 Hz tone, 44.1 kHz mono, its header claiming ~6 hours), paced in real time after a
    0.5 s burst. :meth:`drop` closes every listener's connection and answers 404 (the mount is
    gone, as Icecast answers while the studio's source is away) for ``seconds``; :meth:`mute`
    stops sending on every open connection but keeps it open (a half-dead 3G link).
    """

    STREAM_RATE = 44100
    PIECE_S = 0.05

    def __init__(self) -> None:
        self.requests = 0  # every GET, answered or refused
        self.refused = 0  # GETs answered 404 while the mount was down
        self.times: list[float] = []  # when each GET came
        self._generation = 0  # bumped by drop(): streams of an older generation close
        self._down_until = 0.0
        self._muted_before = 0.0  # streams begun before this instant send nothing more
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/live.wav"

    def start(self) -> ToneStation:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._generation += 1
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def drop(self, seconds: float) -> None:
        """Cut every stream now; answer 404 for ``seconds``."""
        with self._lock:
            self._generation += 1
            self._down_until = time.monotonic() + seconds

    def mute(self) -> None:
        """Send nothing more on the connections open now, without closing them."""
        with self._lock:
            self._muted_before = time.monotonic()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.requests, self.refused

    def attempts(self) -> list[float]:
        """When each connection attempt came: libVLC sends two GETs per attempt (its newer
        http access with ``Range: bytes=0-``, then the older one with ``Icy-MetaData: 1``),
        so GETs less than 0.25 s apart count as one."""
        with self._lock:
            times = list(self.times)
        return [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 0.25]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        station = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the stream ends when the connection closes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with station._lock:
                    station.requests += 1
                    station.times.append(time.monotonic())
                    down = time.monotonic() < station._down_until
                    station.refused += down
                    generation = station._generation
                try:
                    if self.path != "/live.wav" or down:
                        self.send_error(404, "mount not found")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "audio/wav")
                    self.send_header("icy-name", "Phuong 5 test station")
                    self.end_headers()
                    station._stream(self.wfile, generation)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the listener left (libVLC hangs up on a 404 before its body)

        return Handler

    def _stream(self, out: Any, generation: int) -> None:
        rate = self.STREAM_RATE
        size = 0x7FFF0000  # bytes of PCM the header promises: about 6.7 hours
        header = b"RIFF" + struct.pack("<I", size + 36) + b"WAVE"
        header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        header += b"data" + struct.pack("<I", size)
        out.write(header)
        sent = 0  # samples
        began = time.monotonic()
        burst = int(0.5 * rate)
        while True:
            with self._lock:
                if self._generation != generation:
                    return
                muted = began < self._muted_before
            if muted:
                time.sleep(self.PIECE_S)
                continue
            due = burst + int((time.monotonic() - began) * rate)
            if due > sent:
                out.write(tone_pcm((due - sent) / rate, TONE, rate, start_sample=sent))
                out.flush()
                sent = due
            time.sleep(self.PIECE_S)


class Transitions:
    """What ``on_state`` reported, with when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str, float]] = []

    def __call__(self, what: str, detail: str) -> None:
        with self._lock:
            self.seen.append((what, detail, time.monotonic()))

    def kinds(self) -> list[str]:
        with self._lock:
            return [what for what, _, _ in self.seen]

    def at(self, what: str) -> float:
        with self._lock:
            return next(t for w, _, t in self.seen if w == what)


@pytest.fixture
def station() -> Iterator[ToneStation]:
    server = ToneStation().start()
    yield server
    server.stop()


def test_a_live_stream_that_drops_is_retried_reported_and_plays_again(
    engine: AudioEngine, station: ToneStation
) -> None:
    transitions = Transitions()
    source = engine.open(station.url, live=True, on_state=transitions)
    assert source.state == "connecting"
    began = time.monotonic()
    source.start()
    first = read_for(source, 0.05, timeout=10)
    first_pcm_s = time.monotonic() - began
    pcm = first + read_for(source, 1.0, timeout=10)
    assert source.state == "playing"
    assert_tone(pcm, "the stream")

    # The studio goes away: the mount answers 404 for 1.5 s.
    station.drop(1.5)
    dropped = time.monotonic()
    read_until(source, lambda: "gone" in transitions.kinds(), 10, "the stream reported gone")
    assert source.state == "reconnecting"
    assert source.error
    assert source.read(4410, 0.05) == b""  # silence is the output's business
    read_until(source, lambda: "back" in transitions.kinds(), 15, "the stream reported back")
    assert source.state == "playing" and source.error is None
    assert_tone(read_for(source, 1.0, timeout=10), "the stream after it came back")
    requests, refused = station.counts()
    assert refused >= 1, "no reconnect attempt came while the mount was down"
    retries = [t - dropped for t in station.attempts() if t > dropped]
    assert transitions.kinds() == ["gone", "back"]
    gone_s = transitions.at("gone") - dropped
    back_s = transitions.at("back") - dropped
    print(  # the measurements, for `pytest -s`
        f"\nfirst PCM {first_pcm_s:.2f} s; gone {gone_s:.2f} s and back {back_s:.2f} s after "
        f"the drop; attempts at {', '.join(f'{t:.2f}' for t in retries)} s; {requests} GETs, "
        f"{refused} refused; dropped {source.dropped_bytes} B"
    )

    # It drops again, and is stopped while it waits to retry: nothing more reaches the server.
    station.drop(1.0)
    read_until(source, lambda: source.state == "reconnecting", 10, "the second drop")
    stopping = time.monotonic()
    source.stop()
    assert time.monotonic() - stopping < 2.0
    assert source.state == "stopped"
    assert source.read(4410, 1.0) is None
    after_stop = station.counts()[0]
    time.sleep(2.5)  # past the next retry (1 s) and the mount's return
    assert station.counts()[0] == after_stop, "a reconnect attempt came after stop()"


def test_a_live_stream_is_retried_with_back_off_until_it_appears(
    engine: AudioEngine, station: ToneStation
) -> None:
    """A mount that is not up yet: attempts 0.5, 1 and 2 s apart; no "gone" (it never
    played), no "back"; plays once the mount is up; stop() stops the retries."""
    station.drop(2.5)
    transitions = Transitions()
    source = engine.open(station.url, live=True, on_state=transitions)
    source.start()
    read_until(source, lambda: source.state == "reconnecting", 5, "the first retry")
    assert source.error and "could not play" in source.error
    read_until(source, lambda: source.state == "playing", 15, "the stream to appear")
    assert_tone(read_for(source, 0.5, timeout=10), "the stream")
    assert transitions.kinds() == []
    attempts = station.attempts()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) == 3, attempts  # refused at 0, 0.5 and 1.5 s; played from 3.5 s
    for gap, expected in zip(gaps, (0.5, 1.0, 2.0), strict=True):
        assert expected <= gap < expected + 0.3, gaps
    source.stop()
    after_stop = station.counts()[0]
    time.sleep(1.0)
    assert station.counts()[0] == after_stop


def test_a_live_stream_that_goes_quiet_is_reconnected(
    engine: AudioEngine, station: ToneStation
) -> None:
    """The connection stays open but nothing more comes: after ``stall_timeout`` without PCM
    the stream counts as gone and a new connection plays."""
    transitions = Transitions()
    source = engine.open(station.url, live=True, on_state=transitions, stall_timeout=1.0)
    source.start()
    read_for(source, 0.5, timeout=10)
    station.mute()
    muted = time.monotonic()
    read_until(source, lambda: "back" in transitions.kinds(), 10, "the stream reported back")
    gone_s = transitions.at("gone") - muted
    assert transitions.kinds() == ["gone", "back"]
    assert "no audio" in transitions.seen[0][1]
    assert 1.0 <= gone_s < 4.0, gone_s  # what libVLC had in hand, then stall_timeout
    assert_tone(read_for(source, 0.5, timeout=10), "the stream after it came back")
    source.stop()
    print(f"\nmuted: gone {gone_s:.2f} s after, back {transitions.at('back') - muted:.2f} s after")


def test_a_live_stream_can_be_given_up(engine: AudioEngine, station: ToneStation) -> None:
    station.drop(30)
    source = engine.open(station.url, live=True, give_up_after=1.0)
    source.start()
    began = time.monotonic()
    deadline = began + 10
    while source.read(4410, 0.1) is not None:
        assert time.monotonic() < deadline, "the source did not give up"
    assert 1.0 <= time.monotonic() - began < 3.0  # at the third attempt, 1.5 s in
    assert source.state == "failed"
    assert source.error and "gave up" in source.error


# -- stop() ----------------------------------------------------------------------------------


def test_stop_is_prompt_during_a_blocked_read_and_a_blocked_decoder(
    engine: AudioEngine, tmp_path: Path, station: ToneStation
) -> None:
    # A reader waiting on a live stream that is not up yet.
    station.drop(30)
    waiting = engine.open(station.url, live=True)
    waiting.start()
    got: list[bytes | None] = []
    reader = threading.Thread(target=lambda: got.append(waiting.read(4410, 20.0)))
    reader.start()
    time.sleep(0.3)
    began = time.monotonic()
    waiting.stop()
    reader.join(2.0)
    assert not reader.is_alive() and got == [None]
    assert time.monotonic() - began < 2.0

    # A file whose decoder is held back by a full buffer that nobody reads.
    path = tone_wav(tmp_path / "long.wav", 10.0, TONE, rate=22050)
    unread = engine.open(str(path), buffer_seconds=0.5)
    unread.start()
    filled = [0]
    deadline = time.monotonic() + 5
    while unread.buffered_bytes == 0 or unread.buffered_bytes != filled[-1]:
        assert time.monotonic() < deadline, "the buffer never filled"
        filled.append(unread.buffered_bytes)
        time.sleep(0.3)
    assert filled[-1] >= BYTES_PER_SECOND * 0.3
    began = time.monotonic()
    unread.stop()
    assert time.monotonic() - began < 2.0
    assert unread.read(4410, 0.1) is None and unread.state == "stopped"

    # stop() from on_state, on the source's own thread, must not wait for itself.
    station.drop(0)
    stopped_inside = threading.Event()
    holder: list[AudioSource] = []

    def stop_when_gone(what: str, detail: str) -> None:
        holder[0].stop()
        stopped_inside.set()

    live = engine.open(station.url, live=True, on_state=stop_when_gone)
    holder.append(live)
    live.start()
    read_for(live, 0.3, timeout=10)
    station.drop(5)
    deadline = time.monotonic() + 10
    while live.read(4410, 0.1) is not None:
        assert time.monotonic() < deadline, "stop() from on_state did not end the source"
    assert stopped_inside.is_set() and live.state == "stopped"


def test_an_engine_closes_with_sources_still_running(tmp_path: Path) -> None:
    engine = AudioEngine()
    path = tone_wav(tmp_path / "long.wav", 5.0, TONE, rate=22050)
    source = engine.open(str(path))
    source.start()
    read_for(source, 0.2, timeout=5)
    began = time.monotonic()
    engine.close()
    assert time.monotonic() - began < 2.0
    assert source.read(4410, 0.1) is None
    with pytest.raises(Exception, match="closed"):
        engine.open(str(path))
