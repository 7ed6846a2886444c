"""The loudspeakers: announcements (speech, audio files), the chime, a live relay, the amplifier.

One thread owns the output. An announcement runs on it from start to end: the amplifier is
switched on (and warmed up), the chime plays, then the speech (Piper, sentence by sentence, so
the first sentence sounds while the rest is synthesized) or the file (libVLC); ``stop`` cuts it
within a tenth of a second. A live relay (``stream.start``) plays whenever no announcement does:
an announcement interrupts it and it resumes after.

With ``PlayItem.start_at`` (a ``play_at`` shared by a street's loudspeakers) everything is made
ready first (amplifier warmed up, first sentence synthesized or file opened) and the first
sample is written on the clock; the measured start error is reported with ``started``. One
that is ready only after ``start_tolerance_ms`` past its time is not played at all (it would
echo against the street's other loudspeakers): it ends ``skipped``, ``late_for_play_at``.
``prepare`` synthesizes an announcement's speech ahead (into the TTS cache) while another plays.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from player.amplifier import Amplifier, Mode
from player.base import PlayEnded, PlayerEvents, PlayItem, PlayStarted
from player.normalize import normalize
from player.output import RATE, AudioOutput
from player.tts import Speech, Tts, TtsError
from protocol import Outcome

log = logging.getLogger(__name__)
PIECE_S = 0.1  # what is written at once: how quickly a stop is heard
PREPARED_MAX = 2  # speeches synthesized ahead and kept for their play
STREAM_MAX_S = 3600.0  # a bulletin of kind "stream" relays at most this long
STREAM_GIVE_UP_S = 30.0  # … and ends when its stream has not played for this long
Chunks = Iterator[bytes]


class Decoder(Protocol):
    """libVLC's audio decoding (``player.vlcaudio.AudioEngine``)."""

    def open(
        self,
        source: str,
        *,
        live: bool = False,
        on_state: Callable[[str, str], None] | None = None,
        give_up_after: float | None = None,
    ) -> Any: ...

    def close(self) -> None: ...


class Interrupted(Exception):
    """``stop`` was called (or the agent is closing)."""


class Late(Exception):
    """A synchronized announcement was ready too late to start with the others."""

    def __init__(self, error_ms: int) -> None:
        super().__init__(f"ready {error_ms} ms after its play_at")
        self.error_ms = error_ms


def tone(freq: float, seconds: float, level: float = 0.5, fade_s: float = 0.02) -> bytes:
    """A sine tone in the pipeline's format, faded in and out (no clicks)."""
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    wave = np.sin(2 * math.pi * freq * t) * level
    fade = max(1, int(RATE * fade_s))
    envelope = np.ones(n)
    envelope[:fade] = np.linspace(0, 1, fade)
    envelope[-fade:] = np.linspace(1, 0, fade)
    return (wave * envelope * 32767).astype("<i2").tobytes()


def chime() -> bytes:
    """The generated chime: three rising notes, then a short silence before the voice."""
    notes = [tone(f, 0.28, 0.45) for f in (523.25, 659.25, 783.99)]  # C5 E5 G5
    return b"".join(notes) + bytes(int(RATE * 0.35) * 2)


def gain(pcm: bytes, percent: int) -> bytes:
    """Scale ``pcm`` to the volume (a perceptual curve: 50 % is about -12 dB)."""
    if percent >= 100:
        return pcm
    factor = (max(0, percent) / 100) ** 2
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * factor
    return samples.astype("<i2").tobytes()


def resample(pcm: bytes, rate: int) -> bytes:
    """``pcm`` at ``rate`` Hz brought to the pipeline's rate (linear interpolation)."""
    if rate == RATE or not pcm:
        return pcm
    src = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n = max(1, round(len(src) * RATE / rate))
    out = np.interp(np.linspace(0, len(src) - 1, n), np.arange(len(src)), src)
    return out.astype("<i2").tobytes()


@dataclass
class _Job:
    """One announcement, with its own stop flag (a stop is never lost nor carried over)."""

    item: PlayItem
    stop: threading.Event = field(default_factory=threading.Event)


def audio_decoder() -> Decoder:
    """libVLC for audio, loaded with the first audio file or stream (not for speech alone)."""
    from player.vlcaudio import AudioEngine

    return AudioEngine()


class AudioSpeaker:
    """The speaker player (``player.base.SpeakerPlayer``) with a real audio output."""

    audible = True

    def __init__(
        self,
        output: AudioOutput,
        tts: Tts,
        events: PlayerEvents,
        *,
        volume: int,
        decoder: Callable[[], Decoder] | None = None,
        amplifier: Amplifier | None = None,
        chime_file: Path | None = None,
        report: Callable[[str, str, str], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stream_give_up_s: float = STREAM_GIVE_UP_S,
    ) -> None:
        self.output = output
        self.tts = tts
        self.events = events
        self.amplifier = amplifier or Amplifier(None, 0.0, 0.0)
        self.chime_file = chime_file
        self.volume = volume
        self.report = report or (lambda severity, code, detail: None)
        self.clock = clock
        self.stream_give_up_s = stream_give_up_s
        self._decoder_factory = decoder
        self._decoder: Decoder | None = None
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending: list[_Job] = []  # queued, and the one playing (first)
        self._job: _Job | None = None  # the one playing
        self._closing = False
        self._relay_url: str | None = None
        self._relay: Any = None
        self._relay_warm_until = 0.0
        self._chime: bytes | None = None
        self._prepared: dict[str, Speech] = {}  # speech synthesized ahead, by item key
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ SpeakerPlayer

    def play(self, item: PlayItem) -> None:
        """Play ``item`` (what plays now is interrupted first)."""
        with self._lock:
            if self._job is not None:
                self._job.stop.set()
            self._pending.append(_Job(item))
        self._wake.put(None)

    def stop(self) -> None:
        """Interrupt what plays and what was asked to play so far."""
        with self._lock:
            for job in self._pending:
                job.stop.set()

    def prepare(self, item: PlayItem) -> None:
        """Start synthesizing ``item``'s speech now, on a thread of its own, and keep it for
        when the item is played (so that, handed over later, its first sentence is ready at
        once); files need nothing ahead."""
        part = item.bulletin.speaker
        if part is None or part.kind != "tts" or self._closing:
            return

        def synthesize() -> None:
            try:
                speech = self.tts.synthesize(normalize(part.text or ""), part.voice)
            except Exception as exc:  # it is tried again when it plays
                log.warning("speaker: preparing %s failed: %s", item.key, exc)
                return
            with self._lock:
                self._prepared[item.key] = speech
                while len(self._prepared) > PREPARED_MAX:
                    self._prepared.pop(next(iter(self._prepared))).close()

        threading.Thread(target=synthesize, name="speaker-prepare", daemon=True).start()

    # agent.update's health proof (agent/update.py health_problem) asks this.
    @property
    def alive(self) -> bool:
        """Whether the speaker thread runs."""
        return self._thread.is_alive() and not self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.stop()
        self._wake.put(None)
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            log.error("the speaker thread did not stop; closing its output anyway")
        self._stop_relay()
        with self._lock:
            for speech in self._prepared.values():
                speech.close()
            self._prepared.clear()
        if self._decoder is not None:
            self._decoder.close()
        self.tts.close()
        self.amplifier.close()
        self.output.close()

    # ------------------------------------------------------------------ more

    def set_volume(self, percent: int) -> None:
        """Applies to every source from the next tenth of a second."""
        self.volume = max(0, min(100, percent))

    def set_amplifier(self, mode: Mode) -> None:
        self.amplifier.set_mode(mode)

    def relay(self, url: str | None) -> None:
        """Relay a live stream whenever no announcement plays (None: stop relaying)."""
        self._relay_url = url
        self._wake.put(None)

    @property
    def speaking(self) -> bool:
        return self._job is not None

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(queue.Empty):
                self._wake.get(timeout=None if self._relay_url is None else PIECE_S)
            try:
                self._turn()
            except Exception as exc:
                # A bug or a broken output must not silence the loudspeakers for the day.
                log.exception("speaker: unexpected failure")
                self.report("error", "speaker_error", f"{type(exc).__name__}: {exc}"[:200])
                with contextlib.suppress(Exception):
                    self._stop_relay()
                time.sleep(PIECE_S)

    def _turn(self) -> None:
        with self._lock:
            job = self._pending[0] if self._pending and not self._closing else None
        if job is None:
            self._relay_piece()
            return
        try:
            self._stop_relay()
        finally:
            self._announce(job)  # always reports finished

    def _announce(self, job: _Job) -> None:
        item = job.item
        self._job = job
        outcome: Outcome = "failed"
        detail = ""
        reason: str | None = "playback_error"
        late_ms: int | None = None
        try:
            warm_at = time.monotonic() + self.amplifier.acquire()
            try:
                intro, first, rest = self._prepare(item, job)
                self._sleep(job, warm_at - time.monotonic())  # what is left of the warm-up
                error_ms = None
                if item.start_at is not None:
                    error_ms = self._wait_until(job, item.start_at, item.start_tolerance_ms)
                self.events.started(PlayStarted("speaker", item.key, error_ms))
                self._write(job, intro)
                self._write(job, first)
                for chunk in rest:
                    self._write(job, chunk)
                outcome, reason = "completed", None
            finally:
                self.output.idle()
                self.amplifier.release()
        except Interrupted:
            outcome, reason = "interrupted", None
        except Late as late:
            outcome, reason, late_ms, detail = (
                "skipped",
                "late_for_play_at",
                late.error_ms,
                str(late),
            )
            log.warning("speaker: %s not played: %s", item.key, late)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"[:200]
            reason = "speech_error" if isinstance(exc, TtsError) else reason
            reason = "media_error" if isinstance(exc, (KeyError, OSError)) else reason
            log.error("speaker failed on %s: %s", item.bulletin.id, detail)
        finally:
            with self._lock:
                self._job = None
                if job in self._pending:
                    self._pending.remove(job)
            self.events.finished(PlayEnded("speaker", item.key, outcome, detail, reason, late_ms))

    def _prepare(self, item: PlayItem, job: _Job) -> tuple[bytes, bytes, Chunks]:
        """The chime, the content's first chunk and the rest: ready before the first sound.

        The first chunk is synthesized (or the file opened and read) now, so that a
        synchronized start is not late by a synthesis and the voice follows the chime at once.
        """
        part = item.bulletin.speaker
        if part is None:
            return b"", b"", iter(())
        intro = self._chime_pcm(job) if part.chime else b""
        if part.kind == "tts":
            content = self._speech(job, part.text or "", part.voice)
        elif part.kind == "audio" and part.media is not None:
            content = self._decode(job, str(item.media[part.media.sha256]), live=False)
        else:
            url = part.url or (str(item.media[part.media.sha256]) if part.media else "")
            content = self._decode(job, url, live=True, limit_s=STREAM_MAX_S)
        return intro, next(content, b""), content

    def _speech(self, job: _Job, text: str, voice: str | None) -> Chunks:
        with self._lock:
            speech = self._prepared.pop(job.item.key, None)
        if speech is None:
            speech = self.tts.synthesize(normalize(text), voice)
        try:
            while True:
                if job.stop.is_set():
                    raise Interrupted
                try:
                    pcm = speech.poll(PIECE_S)
                except StopIteration:
                    return
                if pcm is not None:
                    yield resample(pcm.samples, pcm.rate)
        finally:
            speech.close()

    def _decode(
        self, job: _Job | None, source: str, live: bool, limit_s: float | None = None
    ) -> Chunks:
        """PCM of a file or, for an announcement of kind ``stream``, a live source: it ends
        when the stream drops, when it has not played for ``stream_give_up_s``, or after
        ``limit_s``."""
        gone = threading.Event()
        audio = self._get_decoder().open(
            source,
            live=live,
            on_state=(lambda what, _detail: gone.set() if what == "gone" else None),
            give_up_after=self.stream_give_up_s if live else None,
        )
        audio.start()
        deadline = None if limit_s is None else time.monotonic() + limit_s
        try:
            while deadline is None or time.monotonic() < deadline:
                if job is not None and job.stop.is_set():
                    raise Interrupted
                pcm = audio.read(int(RATE * 2 * PIECE_S), PIECE_S)
                if pcm is None or (gone.is_set() and not pcm):
                    if pcm is None and audio.error:
                        raise RuntimeError(audio.error)
                    return
                if pcm:
                    yield pcm
        finally:
            audio.stop()

    def _chime_pcm(self, job: _Job) -> bytes:
        """The chime: the configured file, decoded once, or the generated one."""
        if self._chime is not None:
            return self._chime
        pcm = chime()
        if self.chime_file is not None:
            try:
                pcm = b"".join(self._decode(job, str(self.chime_file), live=False))
            except Interrupted:
                raise
            except Exception as exc:
                log.warning("chime file %s unusable (%s): the generated one", self.chime_file, exc)
                pcm = chime()
        self._chime = pcm
        return pcm

    def _get_decoder(self) -> Decoder:
        if self._decoder is None:
            if self._decoder_factory is None:
                raise RuntimeError("no audio decoder (libVLC) available")
            self._decoder = self._decoder_factory()
        return self._decoder

    def _write(self, job: _Job, pcm: bytes) -> None:
        step = int(RATE * PIECE_S) * 2
        for offset in range(0, len(pcm), step):
            if job.stop.is_set():
                raise Interrupted
            self.output.write(gain(pcm[offset : offset + step], self.volume))

    def _sleep(self, job: _Job, seconds: float) -> None:
        if seconds > 0 and job.stop.wait(seconds):
            raise Interrupted

    def _wait_until(self, job: _Job, start_at: datetime, tolerance_ms: int | None) -> int:
        """Sleep until the sound leaving the output reaches the loudspeakers at ``start_at``
        (wall clock, read often); return how late (ms) it did. Raises Late when it is already
        later than ``tolerance_ms``."""
        latency = timedelta(seconds=self.output.latency_s)
        late_ms = round((self.clock() + latency - start_at).total_seconds() * 1000)
        if tolerance_ms is not None and late_ms > tolerance_ms:
            raise Late(late_ms)
        write_at = start_at - latency
        while (left := (write_at - self.clock()).total_seconds()) > 0:
            # The last two milliseconds are spun: no sleep is that precise.
            if left > 0.002 and job.stop.wait(min(left - 0.002, 0.05)):
                raise Interrupted
        return round((self.clock() + latency - start_at).total_seconds() * 1000)

    # ------------------------------------------------------------------ relay

    def _relay_piece(self) -> None:
        url = self._relay_url
        if url is None:
            self._stop_relay()
            return
        if self._relay is None or self._relay[0] != url:
            self._stop_relay()
            try:
                source = self._get_decoder().open(url, live=True, on_state=self._stream_state)
                source.start()
            except Exception as exc:
                # Credentials in the URL are redacted by the log and event redactor.
                log.error("relay of %s cannot start: %s", url, exc)
                self.report("warning", "stream_failed", f"{url}: {exc}")
                if self._relay_url == url:  # not replaced meanwhile
                    self._relay_url = None
                return
            self._relay = (url, source)
            self._relay_warm_until = time.monotonic() + self.amplifier.acquire()
        pcm = self._relay[1].read(int(RATE * 2 * PIECE_S), PIECE_S)
        if pcm is None:
            self.report("warning", "stream_ended", url)
            self._stop_relay()
            if self._relay_url == url:
                self._relay_url = None
        elif pcm and time.monotonic() >= self._relay_warm_until:  # live: the warm-up is lost
            self.output.write(gain(pcm, self.volume))

    def _stream_state(self, what: str, detail: str) -> None:
        """A relayed stream dropped ("gone", it is reconnected) or plays again ("back")."""
        log.warning("relay: stream %s: %s", what, detail)
        self.report("warning", f"stream_{what}", detail)

    def _stop_relay(self) -> None:
        if self._relay is not None:
            _, source = self._relay
            self._relay = None
            source.stop()
            self.output.idle()
            self.amplifier.release()


def wav_pcm(path: Path) -> bytes:
    """The PCM of a WAV file in the pipeline's format (tests and the demo read captures)."""
    data = path.read_bytes()
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if tag == b"data":
            return data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


def rms(pcm: bytes) -> float:
    """Root mean square level of ``pcm`` (0 for silence, 32767 for a full-scale square)."""
    if not pcm:
        return 0.0
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))
