"""Media files for tests, made in pure Python: an MJPEG AVI that libVLC plays without ffmpeg.

The AVI is the classic RIFF layout (``hdrl`` with ``avih`` and one ``strl``, ``movi`` with one
``00dc`` chunk per frame, then an ``idx1`` index); each frame is a JPEG encoded by pygame.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from pathlib import Path

Color = tuple[int, int, int]

RED: Color = (255, 0, 0)
GREEN: Color = (0, 255, 0)
BLUE: Color = (0, 0, 255)

_AVIF_HASINDEX = 0x10
_AVIIF_KEYFRAME = 0x10


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    """A RIFF chunk: id, little-endian size, data padded to an even length."""
    pad = b"\0" if len(data) % 2 else b""
    return fourcc + struct.pack("<I", len(data)) + data + pad


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def jpeg_frames(size: tuple[int, int], colors: Sequence[Color]) -> list[bytes]:
    """One JPEG per colour: a full frame of that colour, encoded by pygame."""
    # Importing pygame must never try to open a real display or sound card.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import pygame

    frames = []
    for color in colors:
        surface = pygame.Surface(size)
        surface.fill(color)
        out = io.BytesIO()
        pygame.image.save(surface, out, "frame.jpg")
        frames.append(out.getvalue())
    return frames


def mjpeg_avi(
    path: Path,
    size: tuple[int, int] = (320, 180),
    fps: int = 10,
    colors: Sequence[Color] = (RED, GREEN, BLUE),
    seconds_per_color: float = 0.7,
) -> Path:
    """Write a video showing each of ``colors`` for ``seconds_per_color``, in order; return path.

    Its length is ``len(colors) * round(seconds_per_color * fps) / fps`` seconds.
    """
    width, height = size
    per_color = max(1, round(seconds_per_color * fps))
    encoded = jpeg_frames(size, colors)
    frames = [jpeg for jpeg in encoded for _ in range(per_color)]
    biggest = max(len(f) for f in frames)

    avih = struct.pack(
        "<10I4I",
        1_000_000 // fps,  # microseconds per frame
        biggest * fps,  # max bytes per second
        0,
        _AVIF_HASINDEX,
        len(frames),
        0,
        1,  # streams
        biggest,
        width,
        height,
        0,
        0,
        0,
        0,
    )
    strh = struct.pack(
        "<4s4sIHHIIIIIIIIhhhh",
        b"vids",
        b"MJPG",
        0,
        0,
        0,
        0,
        1,  # scale
        fps,  # rate: rate / scale = frames per second
        0,
        len(frames),
        biggest,
        0xFFFFFFFF,  # quality: default
        0,
        0,
        0,
        width,
        height,
    )
    strf = struct.pack(
        "<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0
    )
    hdrl = _list(
        b"hdrl", _chunk(b"avih", avih), _list(b"strl", _chunk(b"strh", strh), _chunk(b"strf", strf))
    )

    movi_chunks = []
    index = []
    offset = 4  # idx1 offsets count from the 'movi' fourcc
    for jpeg in frames:
        chunk = _chunk(b"00dc", jpeg)
        index.append(struct.pack("<4sIII", b"00dc", _AVIIF_KEYFRAME, offset, len(jpeg)))
        movi_chunks.append(chunk)
        offset += len(chunk)
    movi = _list(b"movi", *movi_chunks)
    idx1 = _chunk(b"idx1", b"".join(index))

    body = b"AVI " + hdrl + movi + idx1
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


# -- Audio: tones as PCM, WAV, Ogg Vorbis (sox), MP3 and M4A (libVLC's encoders); their analysis.
# Imports stay inside the functions so that this file's head stays as others wrote it.


def tone_pcm(
    seconds: float,
    frequency: float = 440.0,
    rate: int = 22050,
    amplitude: float = 0.5,
    start_sample: int = 0,
) -> bytes:
    """A sine tone as signed 16-bit little-endian mono PCM; ``start_sample`` continues the phase
    of an earlier piece, so that pieces made one after another join without a click."""
    import math

    count = round(seconds * rate)
    peak = amplitude * 32767
    step = 2 * math.pi * frequency / rate
    samples = (round(peak * math.sin(step * (start_sample + i))) for i in range(count))
    return struct.pack(f"<{count}h", *samples)


def tone_wav(path: Path, seconds: float = 1.0, frequency: float = 440.0, rate: int = 44100) -> Path:
    """Write a mono 16-bit WAV of a sine tone in pure Python; return ``path``."""
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone_pcm(seconds, frequency, rate))
    return path


def sox_formats() -> set[str]:
    """The file types the installed sox can write (empty if sox is missing)."""
    import shutil
    import subprocess

    sox = shutil.which("sox")
    if sox is None:
        return set()
    usage = subprocess.run([sox, "-h"], capture_output=True, text=True, timeout=10).stdout
    for line in usage.splitlines():
        if line.startswith("AUDIO FILE FORMATS:"):
            return set(line.split(":", 1)[1].split())
    return set()


def sox_tone(
    path: Path,
    seconds: float = 1.0,
    frequency: float = 440.0,
    rate: int = 44100,
    channels: int = 2,
    pad: tuple[float, float] = (0.0, 0.0),
) -> Path:
    """Write a sine tone with sox, with ``pad`` seconds of silence before and after it, in the
    format that ``path``'s suffix names (``.wav``, ``.ogg`` …); return ``path``."""
    import subprocess

    argv = ["sox", "-n", "-r", str(rate), "-c", str(channels), str(path)]
    argv += ["synth", str(seconds), "sine", str(frequency), "vol", "0.5"]
    if any(pad):
        argv += ["pad", str(pad[0]), str(pad[1])]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    return path


def vlc_encode(source: Path, path: Path, acodec: str, mux: str, timeout: float = 10.0) -> Path:
    """Encode ``source`` with libVLC's own encoders (``acodec`` e.g. ``mp3`` or ``mp4a``, ``mux``
    e.g. ``raw`` or ``mp4``) into ``path``; return it.

    Raises RuntimeError if nothing was written: this libVLC has no such encoder or muxer.
    libVLC's transcoder loses the end of its input (measured: 30-180 ms, its encoder is never
    drained) and, with LAME, the first ~50 ms: put some silence around ``source``'s sound when
    its length matters.
    """
    import time

    import vlc

    instance = vlc.Instance(["--quiet", "--no-xlib", "--aout=adummy", "--vout=dummy"])
    try:
        media = instance.media_new_path(str(source))
        media.add_option(
            f":sout=#transcode{{acodec={acodec},ab=64,channels=1,samplerate=22050}}"
            f":std{{access=file,mux={mux},dst={path}}}"
        )
        player = instance.media_player_new()
        player.set_media(media)
        player.play()
        deadline = time.monotonic() + timeout
        while player.get_state() not in (vlc.State.Ended, vlc.State.Error):
            if time.monotonic() > deadline:
                raise RuntimeError(f"libVLC did not finish encoding {path.name} in {timeout}s")
            time.sleep(0.01)
        player.stop()  # the mp4 muxer writes its index only now
        player.release()
        media.release()
    finally:
        instance.release()
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"libVLC wrote nothing for {acodec} in {mux}")
    return path


def pcm_samples(pcm: bytes) -> list[int]:
    """Signed 16-bit little-endian PCM as a list of samples."""
    count = len(pcm) // 2
    return list(struct.unpack(f"<{count}h", pcm[: count * 2]))


def sound_span(samples: Sequence[int], threshold: int = 2000) -> tuple[int, int]:
    """The first and one past the last index whose sample exceeds ``threshold`` in magnitude;
    (0, 0) when nothing does."""
    loud = [i for i, s in enumerate(samples) if abs(s) > threshold]
    return (loud[0], loud[-1] + 1) if loud else (0, 0)


def zero_crossing_frequency(samples: Sequence[int], rate: int) -> float:
    """The frequency of a pure tone from its sign changes (two per period)."""
    import itertools

    if len(samples) < 2:
        return 0.0
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / rate)
