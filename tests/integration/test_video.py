"""Video through the real libVLC (no display, no sound card): a generated MJPEG AVI plays to its
end in real time, in frames that fit the box and keep the aspect ratio, red then green then blue;
a looping clip keeps playing; a file that is not a video fails without hanging; ``stop()`` is
prompt, idempotent, safe from ``on_end``, and no frame arrives after it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from player.video import Frame, VideoClip, VideoEngine, VideoError
from tests.media import BLUE, GREEN, RED, Color, mjpeg_avi

BOX = (800, 800)
LENGTH = 2.1  # seconds: three colours, 7 frames each at 10 fps


@pytest.fixture(scope="module")
def engine() -> Iterator[VideoEngine]:
    eng = VideoEngine(aout="adummy")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def rgb_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mjpeg_avi(tmp_path_factory.mktemp("video") / "rgb.avi", size=(320, 180), fps=10)


def sample(
    clip: VideoClip, done: Callable[[], bool], timeout: float, what: str = "condition"
) -> list[Frame]:
    """Every new frame the clip shows until ``done()``; fail after ``timeout`` seconds."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        frame = clip.frame()
        if frame is not None and (not frames or frame.serial != frames[-1].serial):
            frames.append(frame)
        time.sleep(0.01)
    return frames


def centre_colour(frame: Frame) -> Color:
    """The frame's centre pixel as (r, g, b); the data is BGRA."""
    i = ((frame.height // 2) * frame.width + frame.width // 2) * 4
    blue, green, red = frame.data[i : i + 3]
    return red, green, blue


def nearest(colour: Color, tolerance: int = 60) -> Color | None:
    """Which of red, green and blue ``colour`` is, allowing for JPEG's losses."""
    for reference in (RED, GREEN, BLUE):
        if all(abs(a - b) <= tolerance for a, b in zip(colour, reference, strict=True)):
            return reference
    return None


def colour_runs(frames: list[Frame]) -> list[Color | None]:
    """The centre colours in the order shown, each run of equal colours collapsed to one."""
    runs: list[Color | None] = []
    for frame in frames:
        colour = nearest(centre_colour(frame))
        if not runs or runs[-1] != colour:
            runs.append(colour)
    return runs


def test_plays_to_its_end_in_real_time_fitting_the_box(
    engine: VideoEngine, rgb_video: Path
) -> None:
    finished = threading.Event()
    clip = engine.open(rgb_video, BOX, on_end=finished.set)
    try:
        started = time.monotonic()
        clip.start()
        frames = sample(clip, lambda: clip.ended, timeout=LENGTH + 6, what="the end")
        took = time.monotonic() - started
        assert finished.wait(2), "on_end was not called"
    finally:
        clip.stop()

    assert clip.error is None
    # No audio: libVLC paces by the system clock, so the end comes after the video's length.
    assert LENGTH * 0.75 < took < LENGTH + 6
    assert clip.source_size == (320, 180)
    assert len(frames) >= 10, f"only {len(frames)} frames shown of the 21 in the file"
    assert {(f.width, f.height) for f in frames} == {(800, 450)}  # 16:9 into a square box
    assert all(len(f.data) == 800 * 450 * 4 for f in frames)
    serials = [f.serial for f in frames]
    assert serials == sorted(serials) and len(set(serials)) == len(serials)
    assert colour_runs(frames) == [RED, GREEN, BLUE]

    # The renderer's conversion reads the same bytes the same way.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    last = frames[-1]
    surface = pygame.image.frombuffer(last.data, (last.width, last.height), "BGRA")
    r, g, b, a = surface.get_at((last.width // 2, last.height // 2))
    assert nearest((r, g, b)) == BLUE and a == 255


def test_a_looping_clip_plays_past_its_end(engine: VideoEngine, rgb_video: Path) -> None:
    finished = threading.Event()
    clip = engine.open(rgb_video, BOX, loop=True, on_end=finished.set)
    try:
        clip.start()
        deadline = time.monotonic() + LENGTH * 1.5
        frames = sample(clip, lambda: time.monotonic() > deadline, timeout=LENGTH * 2)
        assert not clip.ended and clip.error is None and not finished.is_set()
        # Still playing: new frames keep coming, and the second pass began with red again.
        last = frames[-1].serial
        sample(clip, lambda: (f := clip.frame()) is not None and f.serial > last, timeout=2)
        assert colour_runs(frames)[:4] == [RED, GREEN, BLUE, RED]
    finally:
        clip.stop()
    assert not clip.ended


def test_a_file_that_is_not_a_video_fails_without_hanging(
    engine: VideoEngine, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(200_000))
    finished = threading.Event()
    clip = engine.open(junk, BOX, on_end=finished.set)
    try:
        clip.start()
        sample(clip, lambda: clip.error is not None or clip.ended, timeout=5, what="a failure")
        assert finished.wait(2), "on_end was not called"
        assert clip.error is not None and not clip.ended
        assert clip.frame() is None
    finally:
        started = time.monotonic()
        clip.stop()
        clip.stop()
        assert time.monotonic() - started < 2


def test_a_missing_file_does_not_start(engine: VideoEngine, tmp_path: Path) -> None:
    clip = engine.open(tmp_path / "missing.mp4", BOX)
    with pytest.raises(VideoError):
        clip.start()
    clip.stop()


def test_stop_during_playback_is_prompt_and_final(engine: VideoEngine, rgb_video: Path) -> None:
    finished = threading.Event()
    clip = engine.open(rgb_video, BOX, on_end=finished.set)
    clip.start()
    try:
        sample(clip, lambda: clip.frame() is not None, timeout=5, what="the first frame")
        time.sleep(0.3)
    finally:
        started = time.monotonic()
        clip.stop()
        took = time.monotonic() - started
    assert took < 2
    last = clip.frame()
    assert last is not None
    time.sleep(0.5)
    assert clip.frame() == last, "a frame arrived after stop()"
    assert not clip.ended and not finished.is_set()
    clip.stop()


def test_stop_from_on_end_does_not_deadlock(engine: VideoEngine, tmp_path: Path) -> None:
    short = mjpeg_avi(tmp_path / "short.avi", colors=[GREEN], seconds_per_color=0.3)
    stopped = threading.Event()
    clips: list[VideoClip] = []

    def on_end() -> None:  # runs on a libVLC thread
        clips[0].stop()
        stopped.set()

    clips.append(engine.open(short, BOX, on_end=on_end))
    clips[0].start()
    assert stopped.wait(5), "stop() inside on_end hung or on_end never came"
    assert clips[0].ended
