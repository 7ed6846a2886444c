"""The loudspeakers' amplifier: on with a warm-up before the first sound, off after a hold time.

A public-address amplifier thumps when switched, and some take a second or two before they
pass sound: it is switched on ``warmup_s`` before the first sound, kept on for ``hold_s`` after
the last (announcements often come in runs), then switched off to save power and hum.
The switch is a configured argv hook (``player.power.PowerHook``) or a GPIO line driving a relay
(``GpioSwitch``, through libgpiod).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

log = logging.getLogger(__name__)
Mode = Literal["auto", "on", "off"]


class Switch(Protocol):
    """Something that switches the amplifier's power."""

    def set(self, on: bool) -> None: ...

    def close(self) -> None: ...


class GpioSwitch:
    """A GPIO output line (``/dev/gpiochipN``, line offset) driving the amplifier's relay."""

    def __init__(self, chip: str, line: int, active_low: bool = False) -> None:
        try:
            import gpiod  # libgpiod's Python binding (v2 API)
        except ImportError as exc:
            raise RuntimeError("amplifier_gpio needs the gpiod Python package") from exc
        self._gpiod = gpiod
        self.line = line
        settings = gpiod.LineSettings(
            direction=gpiod.line.Direction.OUTPUT,
            active_low=active_low,
            output_value=gpiod.line.Value.INACTIVE,
        )
        path = chip if chip.startswith("/") else f"/dev/{chip}"
        self._request = gpiod.request_lines(
            path, consumer="ttcs-agent amplifier", config={line: settings}
        )

    def set(self, on: bool) -> None:
        value = self._gpiod.line.Value.ACTIVE if on else self._gpiod.line.Value.INACTIVE
        self._request.set_value(self.line, value)
        log.info("amplifier power %s (GPIO line %d)", "on" if on else "off", self.line)

    def close(self) -> None:
        self._request.release()


class Amplifier:
    """Keeps the amplifier on while sound plays (``acquire``/``release``), or as forced."""

    def __init__(
        self,
        switch: Switch | None,
        warmup_s: float,
        hold_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.switch = switch
        self.warmup_s = warmup_s
        self.hold_s = hold_s
        self.monotonic = monotonic
        self.mode: Mode = "auto"
        self._on_since: float | None = None
        self._users = 0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return self._on_since is not None

    def acquire(self) -> float:
        """Sound is about to play: switch on; return how long to wait for the warm-up."""
        with self._lock:
            self._users += 1
            self._cancel_timer()
            if self.mode == "off" or self.switch is None:
                return 0.0
            if self._on_since is None:
                self._set(True)
            assert self._on_since is not None
            return max(0.0, self._on_since + self.warmup_s - self.monotonic())

    def release(self) -> None:
        """The sound ended: switch off after the hold time, unless sound comes again."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or self.mode != "auto" or self._on_since is None:
                return
            self._timer = threading.Timer(self.hold_s, self._hold_ended)
            self._timer.daemon = True
            self._timer.start()

    def set_mode(self, mode: Mode) -> None:
        """``power.set``: force on or off, or ``auto`` (follow the sound)."""
        with self._lock:
            self.mode = mode
            self._cancel_timer()
            if (mode == "on" or (mode == "auto" and self._users)) and self._on_since is None:
                self._set(True)
            elif self._on_since is not None and (mode == "off" or not self._users):
                self._set(False)

    def close(self) -> None:
        with self._lock:
            self._cancel_timer()
            if self._on_since is not None:
                self._set(False)
        if self.switch is not None:
            self.switch.close()

    def _hold_ended(self) -> None:
        with self._lock:
            if not self._users and self.mode == "auto" and self._on_since is not None:
                self._set(False)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set(self, on: bool) -> None:
        self._on_since = self.monotonic() if on else None
        if self.switch is not None:
            try:
                self.switch.set(on)
            except Exception:
                log.exception("switching the amplifier %s failed", "on" if on else "off")
