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
