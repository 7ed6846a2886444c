"""The loudspeakers: announcements (speech, audio files), the chime, a live relay, the amplifier.

One thread owns the output. An announcement runs on it from start to end: the amplifier is
switched on (and warmed up), the chime plays, then the speech (Piper, sentence by sentence, so
the first sentence sounds while the rest is synthesized) or the file (libVLC); ``stop`` cuts it
within a tenth of a second. A live relay (``stream.start``) plays whenever no announcement does:
an announcement interrupts it and it resumes after.

With ``PlayItem.start_at`` (a ``play_at`` shared by a street's loudspeakers) everything is made
ready first (amplifier warmed up, first sentence synthesized or file opened) and the first
sample is written on the clock; the measured start error is reported with ``started``.
"""

from __future__ import annotations

import logging
import math
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.protocol import Channel, Outcome
from player.amplifier import Amplifier, Mode
from player.base import PlayItem
from player.normalize import normalize
from player.output import RATE, AudioOutput, OutputError
from player.tts import Tts

log = logging.getLogger(__name__)
PIECE_S = 0.1  # what is written at once: how quickly a stop is heard
STREAM_MAX_S = 3600.0  # a bulletin of kind "stream" relays at most this long
Chunks = Iterator[bytes]


class SpeakerEvents(Protocol):
    """Where the speaker reports (from its own thread; must not block)."""

    def finished(self, channel: Channel, key: str, outcome: Outcome, detail: str) -> None: ...

    def started(self, channel: Channel, key: str, start_error_ms: int | None) -> None: ...


class Decoder(Protocol):
    """libVLC's audio decoding (``player.vlcaudio.AudioEngine``)."""

    def open(
        self, source: str, *, live: bool = False, on_state: Callable[[str, str], None] | None = None
    ) -> Any: ...

    def close(self) -> None: ...


class Interrupted(Exception):
    """``stop`` was called (or the agent is closing)."""


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


class AudioSpeaker:
    """The speaker player (``player.base.SpeakerPlayer``) with a real audio output."""

    def __init__(
        self,
        output: AudioOutput,
        tts: Tts,
        events: SpeakerEvents,
        *,
        decoder: Callable[[], Decoder] | None = None,
        amplifier: Amplifier | None = None,
        chime_file: Path | None = None,
        volume: int = 70,
        report: Callable[[str, str, str], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.output = output
        self.tts = tts
        self.events = events
        self.amplifier = amplifier or Amplifier(None, 0.0, 0.0)
        self.chime_file = chime_file
        self.volume = volume
        self.report = report or (lambda severity, code, detail: None)
        self.clock = clock
        self._decoder_factory = decoder
        self._decoder: Decoder | None = None
        self._jobs: queue.SimpleQueue[PlayItem | None] = queue.SimpleQueue()
        self._interrupt = threading.Event()
        self._closing = False
        self._current: PlayItem | None = None
        self._relay_url: str | None = None
        self._relay: Any = None
        self._chime = chime()
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ SpeakerPlayer

    def play(self, item: PlayItem) -> None:
        if self._current is not None:
            self._interrupt.set()
        self._jobs.put(item)

    def stop(self) -> None:
        self._interrupt.set()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._interrupt.set()
        self._jobs.put(None)
        self._thread.join(timeout=5)
        self._stop_relay()
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
        self._jobs.put(None if self._closing else _WAKE)

    @property
    def speaking(self) -> bool:
        return self._current is not None

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while not self._closing:
            try:
                job = self._jobs.get(timeout=None if self._relay_url is None else PIECE_S)
            except queue.Empty:
                job = _WAKE
            if job is None:
                continue
            if job is not _WAKE:
                self._stop_relay()
                self._announce(job)
                continue
            self._relay_piece()

    def _announce(self, item: PlayItem) -> None:
        self._interrupt.clear()
        self._current = item
        outcome: Outcome = "completed"
        detail = ""
        try:
            wait = self.amplifier.acquire()
            try:
                chunks = self._chunks(item)
                first = next(chunks, b"")  # ready before the clock starts
                self._sleep(wait)
                error_ms = self._wait_until(item.start_at)
                self.events.started("speaker", item.key, error_ms)
                self._write(first)
                for chunk in chunks:
                    self._write(chunk)
            finally:
                self.output.idle()
                self.amplifier.release()
        except Interrupted:
            outcome = "interrupted"
        except Exception as exc:
            outcome, detail = "failed", f"{type(exc).__name__}: {exc}"[:200]
            log.error("speaker failed on %s: %s", item.bulletin.id, detail)
        finally:
            self._current = None
        self.events.finished("speaker", item.key, outcome, detail)

    def _chunks(self, item: PlayItem) -> Chunks:
        part = item.bulletin.speaker
        if part is None:
            return iter(())
        intro: list[bytes] = []
        if part.chime:
            intro = [self._chime_pcm()]
        if part.kind == "tts":
            return _chain(intro, self._speech(part.text or "", part.voice))
        if part.kind == "audio" and part.media is not None:
            return _chain(intro, self._decode(str(item.media[part.media.sha256]), live=False))
        url = part.url or (str(item.media[part.media.sha256]) if part.media else "")
        return _chain(intro, self._decode(url, live=True, limit_s=STREAM_MAX_S))

    def _speech(self, text: str, voice: str | None) -> Chunks:
        speech = self.tts.synthesize(normalize(text), voice)
        try:
            for pcm in speech:
                yield resample(pcm.samples, pcm.rate)
        finally:
            speech.close()

    def _decode(self, source: str, live: bool, limit_s: float | None = None) -> Chunks:
        decoder = self._get_decoder()
        audio = decoder.open(source, live=live)
        audio.start()
        budget = None if limit_s is None else int(limit_s * RATE * 2)
        try:
            while budget is None or budget > 0:
                if self._interrupt.is_set():
                    raise Interrupted
                pcm = audio.read(int(RATE * 2 * PIECE_S), PIECE_S)
                if pcm is None:
                    if audio.error:
                        raise RuntimeError(audio.error)
                    return
                if pcm:
                    if budget is not None:
                        budget -= len(pcm)
                    yield pcm
        finally:
            audio.stop()

    def _chime_pcm(self) -> bytes:
        if self.chime_file is None:
            return self._chime
        try:
            return b"".join(self._decode(str(self.chime_file), live=False))
        except Interrupted:
            raise
        except Exception as exc:
            log.warning("chime file %s unusable (%s): the generated chime", self.chime_file, exc)
            return self._chime

    def _get_decoder(self) -> Decoder:
        if self._decoder is None:
            if self._decoder_factory is None:
                raise RuntimeError("no audio decoder (libVLC) available")
            self._decoder = self._decoder_factory()
        return self._decoder

    def _write(self, pcm: bytes) -> None:
        step = int(RATE * PIECE_S) * 2
        for offset in range(0, len(pcm), step):
            if self._interrupt.is_set():
                raise Interrupted
            self.output.write(gain(pcm[offset : offset + step], self.volume))

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._interrupt.wait(seconds):
            raise Interrupted

    def _wait_until(self, start_at: datetime | None) -> int | None:
        """Sleep until ``start_at`` (wall clock, read often); return the start error in ms."""
        if start_at is None:
            return None
        while True:
            left = (start_at - self.clock()).total_seconds()
            if left <= 0:
                break
            if self._interrupt.wait(min(left, 0.05) if left > 0.002 else 0):
                raise Interrupted
            if left <= 0.002:
                while (start_at - self.clock()).total_seconds() > 0:
                    pass  # the last two milliseconds: no sleep is that precise
        return round((self.clock() - start_at).total_seconds() * 1000)

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
                log.error("relay of %s cannot start: %s", url, exc)
                self.report("warning", "stream_failed", f"{url}: {exc}")
                self._relay_url = None
                return
            self._relay = (url, source)
            self.amplifier.acquire()
        pcm = self._relay[1].read(int(RATE * 2 * PIECE_S), PIECE_S)
        if pcm is None:
            self.report("warning", "stream_ended", url)
            self._stop_relay()
            self._relay_url = None
        elif pcm:
            try:
                self.output.write(gain(pcm, self.volume))
            except OutputError as exc:
                log.error("relay: %s", exc)

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


_WAKE: Any = object()  # a queue marker: look at the relay


def _chain(first: list[bytes], rest: Iterator[bytes]) -> Chunks:
    yield from first
    yield from rest


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
