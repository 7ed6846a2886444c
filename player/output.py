"""Where the loudspeakers' sound goes: the sound card (sounddevice), nowhere, or a WAV file.

Every source (speech, chimes, files, live streams) reaches the loudspeakers as one format:
signed 16-bit little-endian mono PCM at 22,050 Hz (Piper's rate; horn loudspeakers do not
reproduce more). ``write`` blocks at the pace of real time, whatever the output: the sound card
paces itself, and the null and file outputs keep their own clock (they have none, and a capture
that ran faster than real time would make every timing in the tests a fiction).

Only this module imports sounddevice.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

RATE = 22050
SAMPLE_BYTES = 2
AHEAD_S = 0.2  # how far a clock-paced output may run ahead of real time


class OutputError(Exception):
    """The output cannot be opened or written."""


class AudioOutput(Protocol):
    """A sink for PCM in the pipeline's one format."""

    # Seconds between a write and its sound at the loudspeakers (the sound card's buffer).
    latency_s: float

    def write(self, pcm: bytes) -> None:
        """Play ``pcm``; returns once it is (nearly) heard: real-time pace."""

    def idle(self) -> None:
        """Nothing plays for now (the next write starts a new stretch of sound)."""

    def close(self) -> None: ...


class _Clock:
    """Real-time pacing for outputs that have no clock of their own."""

    def __init__(self) -> None:
        self.origin: float | None = None
        self.written_s = 0.0

    def after(self, seconds: float) -> None:
        now = time.monotonic()
        if self.origin is None or now > self.origin + self.written_s + 0.5:
            # First sound, or a gap: this stretch starts now.
            self.origin, self.written_s = now, 0.0
        self.written_s += seconds
        ahead = self.origin + self.written_s - now - AHEAD_S
        if ahead > 0:
            time.sleep(ahead)

    def reset(self) -> None:
        self.origin = None


class NullOutput:
    """Discards the sound, at the pace of real time."""

    latency_s = 0.0

    def __init__(self) -> None:
        self.clock = _Clock()

    def write(self, pcm: bytes) -> None:
        self.clock.after(len(pcm) / (RATE * SAMPLE_BYTES))

    def idle(self) -> None:
        self.clock.reset()

    def close(self) -> None:
        pass


class FileOutput:
    """Appends the sound to a WAV file (a capture for tests and headless demos).

    The header is rewritten after every write, so the file is a valid WAV while it grows and
    after a crash; silences between announcements are not recorded.
    """

    latency_s = 0.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = _Clock()
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = path.open("wb")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}") from exc
        self._data = 0
        self._header()

    def _header(self) -> None:
        fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * SAMPLE_BYTES, SAMPLE_BYTES, 16)
        header = (
            b"RIFF"
            + struct.pack("<I", 36 + self._data)
            + b"WAVEfmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + b"data"
            + struct.pack("<I", self._data)
        )
        self._file.seek(0)
        self._file.write(header)
        self._file.seek(0, 2)

    def write(self, pcm: bytes) -> None:
        with self._lock:
            self._file.write(pcm)
            self._data += len(pcm)
            self._header()
            self._file.flush()
        self.clock.after(len(pcm) / (RATE * SAMPLE_BYTES))

    def idle(self) -> None:
        self.clock.reset()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class DeviceOutput:
    """The system's default sound device (ALSA, through PortAudio)."""

    def __init__(self, device: str | None = None) -> None:
        try:
            import sounddevice  # the only import of sounddevice
        except (ImportError, OSError) as exc:  # OSError: no libportaudio
            raise OutputError(f"sounddevice is not usable: {exc}") from exc
        try:
            self._stream = sounddevice.RawOutputStream(
                samplerate=RATE, channels=1, dtype="int16", device=device, latency="high"
            )
            self._stream.start()
        except Exception as exc:  # sounddevice.PortAudioError and friends
            raise OutputError(f"cannot open the sound device: {exc}") from exc
        self.latency_s = float(self._stream.latency)

    def write(self, pcm: bytes) -> None:
        try:
            self._stream.write(pcm)
        except Exception as exc:
            raise OutputError(f"writing to the sound device failed: {exc}") from exc

    def idle(self) -> None:
        pass

    def close(self) -> None:
        try:
            self._stream.stop()
            self._stream.close()
        except Exception:
            log.exception("closing the sound device failed")


def open_output(spec: str) -> AudioOutput:
    """The ``[speaker] output``: ``default`` (the sound card), ``null`` or ``file:/path.wav``."""
    if spec == "null":
        return NullOutput()
    if spec.startswith("file:"):
        return FileOutput(Path(spec[5:]))
    return DeviceOutput()
