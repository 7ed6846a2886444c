"""The disk fills up: a small tmpfs of its own holds the agent's state and cache (one SD card on
a board). During play-log writes and during a program's download the live program keeps
playing, no play-log entry is lost, the download is tried again and the new program goes live,
and one ``disk_full`` event is sent once space returns.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pygame
import pytest

from controlplane.keys import SigningKey
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    MediaServer,
    agent_status,
    media_doc,
    program,
    provision,
    wait_for,
)

DEV = "q10-p12-bang-01"
VOLUME = 6 * 1024 * 1024
SCREEN = 'enabled = true\ndriver = "headless"\nwidth = 320\nheight = 180\nward_name = "Phường 12"'
TEXT = {
    "id": "tb-chu",
    "title": "Lịch tiếp dân",
    "screen": {"kind": "text", "text": "Thứ Hai", "duration_ms": 1000},
}


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs (root only: skipped where mounting is refused)."""
    path = tmp_path / "sd"
    path.mkdir()
    args = ["mount", "-t", "tmpfs", "-o", f"size={VOLUME}", "tmpfs", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(volume: Path, leave: int = 0, name: str = "ballast") -> Path:
    """Fill the volume with a ballast file until about ``leave`` bytes are free."""
    ballast = volume / name
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for block in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while free_bytes(volume) - block >= leave and os.write(fd, b"\0" * block):
                    pass
    finally:
        os.close(fd)
    return ballast


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _png(side: int) -> bytes:
    surface = pygame.Surface((side, side))
    for y in range(side):  # stripes: a file PNG cannot squeeze to nothing
        pygame.draw.line(
            surface, ((y * 37) % 256, (y * 91) % 256, (y * 13) % 256), (0, y), (side, y)
        )
    for x in range(0, side, 3):
        pygame.draw.line(surface, ((x * 7) % 256, 0, 0), (x, 0), (x, side))
    out = io.BytesIO()
    pygame.image.save(surface, out, "poster.png")
    return out.getvalue()


def _device(tmp_path: Path, volume: Path, broker: Broker, key: SigningKey) -> Device:
    device = provision(tmp_path, broker, key, screen=SCREEN, extra="[cache]\nmin_free_bytes = 0")
    state, cache = volume / "state", volume / "cache"
    text = device.config.read_text()
    text = text.replace(str(device.state_dir), str(state)).replace(
        str(device.cache_dir), str(cache)
    )
    device.config.write_text(text)
    return Device(device.device_id, device.groups, device.config, state, cache)


class ScreenWatch:
    """Samples what the running agent shows, from its status, until stopped."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.samples: list[str | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ScreenWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            with contextlib.suppress(OSError, AssertionError):
                self.samples.append(agent_status(self.device)["now"].get("screen"))


def _screen_entries(listener: Listener) -> list[dict[str, Any]]:
    entries = {e["id"]: e for b in listener.json_on("/playlog") for e in b["entries"]}
    return sorted(
        (e for e in entries.values() if e["channel"] == "screen"), key=lambda e: e["started_at"]
    )


def _gaps_s(entries: list[dict[str, Any]]) -> list[float]:
    """Seconds between the end of each showing and the start of the next."""

    def t(value: str) -> float:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    return [t(b["started_at"]) - t(a["ended_at"]) for a, b in itertools.pairwise(entries)]


def test_playlog_writes_on_a_full_disk(
    tmp_path: Path, volume: Path, broker: Broker, signing_key: SigningKey
) -> None:
    device = _device(tmp_path, volume, broker, signing_key)
    agent = AgentProcess(device)
    agent.output = tmp_path / "agent.out"  # not on the full disk
    subs = [f"{PREFIX}/dev/{DEV}/ack", f"{PREFIX}/dev/{DEV}/playlog", f"{PREFIX}/dev/{DEV}/event"]
    with Listener(broker, subs) as listener:
        topic, payload, doc = program(signing_key, 1, [TEXT])
        listener.publish(topic, payload, retain=True)
        agent.start(wait_online=True)
        try:
            listener.wait_ack(doc["id"], "done", 30)
            with ScreenWatch(device) as watch:
                ballast = fill(volume)
                full_from = len(watch.samples)
                # Eight showings of one second while not one byte can be written.
                wait_for(lambda: len(watch.samples) - full_from >= 27, 30, "8 s on a full disk")
                assert free_bytes(volume) < 4096
                ballast.unlink()
                events = wait_for(lambda: listener.json_on("/event"), 30, "the disk_full event")
                shown = len(_screen_entries(listener))
                wait_for(lambda: len(_screen_entries(listener)) >= shown + 3, 30, "more plays")
            assert watch.samples and None not in watch.samples, watch.samples
        finally:
            agent.stop()
    assert [e["code"] for e in listener.json_on("/event")] == ["disk_full"], events
    entries = _screen_entries(listener)
    gaps = _gaps_s(entries)
    print(f"\n{events[0]['detail']}; {len(entries)} showings, longest gap {max(gaps):.2f} s")
    # Nothing lost: one showing follows the other, through the full disk too.
    assert len(entries) >= 10 and max(gaps) < 1.5, gaps


@pytest.mark.slow
def test_a_download_that_fills_the_disk(
    tmp_path: Path, volume: Path, broker: Broker, signing_key: SigningKey
) -> None:
    """The disk fills while the new program's file comes in: the old program plays on, the
    download is tried again (a minute later) once space returns, and the new program goes
    live."""
    device = _device(tmp_path, volume, broker, signing_key)
    agent = AgentProcess(device)
    agent.output = tmp_path / "agent.out"  # not on the full disk
    big = _png(700)
    subs = [f"{PREFIX}/dev/{DEV}/ack", f"{PREFIX}/dev/{DEV}/playlog", f"{PREFIX}/dev/{DEV}/event"]
    with MediaServer() as media, Listener(broker, subs) as listener:
        topic, payload, doc = program(signing_key, 1, [TEXT])
        listener.publish(topic, payload, retain=True)
        agent.start(wait_online=True)
        try:
            listener.wait_ack(doc["id"], "done", 30)
            url = media.add("poster.png", big)
            poster = {
                "id": "tb-anh",
                "title": "Áp phích",
                "screen": {"kind": "image", "media": media_doc(url, big, "image/png")},
            }
            topic, payload, doc2 = program(signing_key, 2, [TEXT, poster])
            release = media.stall_after(len(big) // 4)
            with ScreenWatch(device) as watch:
                listener.publish(topic, payload, retain=True)
                listener.wait_ack(doc2["id"], "accepted", 30)
                wait_for(lambda: media.sent("poster.png") >= len(big) // 4, 30, "a quarter")
                ballast = fill(volume)  # the disk fills while the download waits
                release.set()
                wait_for(lambda: len(watch.samples) >= 20, 30, "6 s of the old program")
                assert agent_status(device)["programs"][topic] == 1
                ballast.unlink()
                listener.wait_ack(doc2["id"], "done", 150)
            assert watch.samples and None not in watch.samples, watch.samples
            assert agent_status(device)["programs"][topic] == 2
        finally:
            agent.stop()
    assert not [a for a in listener.acks(doc2["id"]) if a["status"] == "failed"]
    assert [e["code"] for e in listener.json_on("/event")].count("disk_full") == 1
