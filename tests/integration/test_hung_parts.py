"""A wedged part: the screen's render thread blocks in a read that never returns (an image file
whose storage froze, made here with a FIFO that nobody writes). The read blocks inside SDL
without releasing Python's interpreter lock, as a wedged driver call does, so the whole agent
freezes and its watchdog pings stop; the service manager (tests/supervisor.py: what systemd
does for Type=notify, WatchdogSec and Restart=always, over a real notify socket) aborts and
restarts it, and it comes back on the same program.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path

import pygame

from controlplane.keys import SigningKey
from tests.helpers import (
    ROOT,
    Broker,
    Device,
    Listener,
    MediaServer,
    agent_status,
    cache_path,
    media_doc,
    program,
    provision,
    wait_for,
)
from tests.supervisor import Supervisor

WATCHDOG_S = 6.0
SCREEN = 'enabled = true\ndriver = "headless"\nwidth = 320\nheight = 180\nward_name = "Phường 12"'


def _png() -> bytes:
    surface = pygame.Surface((64, 36))
    surface.fill((200, 30, 30))
    out = io.BytesIO()
    pygame.image.save(surface, out, "poster.png")
    return out.getvalue()


def _blocked_on_fifo(pid: int) -> bool:
    """Whether a thread of ``pid`` waits in the kernel for a FIFO's writer (its ``wchan``)."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            if (task / "wchan").read_text().strip() == "wait_for_partner":
                return True
    return False


def test_a_wedged_renderer_is_restarted_on_the_same_program(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> None:
    device: Device = provision(tmp_path, broker, signing_key, screen=SCREEN)
    png = _png()
    with MediaServer() as media, Listener(broker, ["ttcs/v1/dev/+/ack"]) as listener:
        url = media.add("poster.png", png)
        bulletins = [
            {
                "id": "tb-chu",
                "title": "Lịch tiếp dân",
                "screen": {"kind": "text", "text": "Thứ Hai", "duration_ms": 1000},
            },
            {
                "id": "tb-anh",
                "title": "Áp phích",
                "screen": {
                    "kind": "image",
                    "media": media_doc(url, png, "image/png"),
                    "duration_ms": 1000,
                },
            },
        ]
        topic, payload, doc = program(signing_key, 7, bulletins)
        listener.publish(topic, payload, retain=True)
        argv = [sys.executable, "-m", "agent", "run", "--config", str(device.config)]
        output = tmp_path / "agent.out"
        supervisor = Supervisor(argv, tmp_path / "svc", WATCHDOG_S, cwd=ROOT, output=output)
        supervisor.start()
        try:
            wait_for(lambda: supervisor.of("ready"), 30, "READY=1")
            listener.wait_ack(doc["id"], "done", 30)
            first_pid = supervisor.of("ready")[0].pid
            real = cache_path(device.cache_dir, media_doc(url, png, "image/png")["sha256"])
            fifo = real.with_suffix(".fifo")
            os.mkfifo(fifo)
            saved = real.read_bytes()
            os.replace(fifo, real)  # the next time the poster is drawn, the read never returns
            wait_for(lambda: _blocked_on_fifo(first_pid), 30, "the render thread to block")
            blocked_at = time.monotonic()
            abort = wait_for(lambda: supervisor.of("abort"), 3 * WATCHDOG_S, "abort")[0]
            # The storage recovers before the service is started again.
            real.unlink()
            real.write_bytes(saved)
            ready = wait_for(
                lambda: [e for e in supervisor.of("ready") if e.pid != first_pid], 30, "restart"
            )[0]
            status = wait_for(lambda: _status_with_program(device), 20, "the program again")
        finally:
            supervisor.stop()
    # The last sign of life: READY=1 or a ping, before the abort.
    signs = [e for e in supervisor.events if e.pid == first_pid and e.what in ("ready", "ping")]
    last_sign = max(e.at for e in signs if e.at < abort.at)
    print(
        f"\nrender thread blocked -> abort {abort.at - blocked_at:.1f} s "
        f"(last ping or READY {last_sign - blocked_at:+.1f} s), -> ready again "
        f"{ready.at - blocked_at:.1f} s; WatchdogSec {WATCHDOG_S:.0f} s"
    )
    assert abort.at - last_sign <= WATCHDOG_S + 1.0
    assert not supervisor.of("kill") or supervisor.of("kill")[0].pid == first_pid
    assert status["programs"] == {"ttcs/v1/dev/q10-p12-bang-01/program": 7}
    assert status["now"]["screen"] in ("tb-chu", "tb-anh")


def _status_with_program(device: Device) -> dict[str, object] | None:
    with contextlib.suppress(OSError, AssertionError):
        status = agent_status(device)
        if status["programs"] and status["now"].get("screen"):
            return status
    return None
