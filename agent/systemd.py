"""systemd notifications (READY, WATCHDOG, STOPPING, STATUS) without a library."""

from __future__ import annotations

import contextlib
import os
import socket
import time


class Notifier:
    """Sends sd_notify messages when started by systemd with ``Type=notify``; else does nothing."""

    def __init__(self) -> None:
        self._address = os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        valid = usec is not None and usec.isdigit() and (pid is None or pid == str(os.getpid()))
        # Ping at half the watchdog period, as systemd recommends.
        self.watchdog_interval_s: float | None = int(usec) / 2e6 if valid and usec else None

    def notify(self, message: str) -> None:
        if not self._address:
            return
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
            contextlib.suppress(OSError),
        ):
            sock.sendto(message.encode("utf-8"), address)

    def ready(self) -> None:
        self.notify("READY=1")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")
