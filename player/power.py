"""Power hooks: a configured argv run to switch a screen (or an amplifier) on or off.

Never a shell: the argv list is executed as given, with a timeout, from a worker thread so that
a slow ``cec-ctl`` never holds up a frame or a command. Only the latest wanted state is applied;
a failure is logged and reported, and tried again at the next change.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


class PowerHook:
    """Applies on/off through ``on_argv`` / ``off_argv`` (either may be absent)."""

    def __init__(
        self,
        name: str,
        on_argv: Sequence[str] | None,
        off_argv: Sequence[str] | None,
        timeout_s: float,
        report: Callable[[str], None],
    ) -> None:
        self.name = name
        self.argv = {True: tuple(on_argv or ()), False: tuple(off_argv or ())}
        self.timeout_s = timeout_s
        self.report = report
        self._wanted: bool | None = None
        self._applied: bool | None = None
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"power-{name}", daemon=True)
        self._thread.start()

    def set(self, on: bool) -> None:
        with self._cond:
            self._wanted = on
            self._cond.notify()

    @property
    def applied(self) -> bool | None:
        """The state the last successful hook run set (None: never run, or it failed)."""
        return self._applied

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=self.timeout_s + 1)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing and (self._wanted is None or self._wanted == self._applied):
                    self._cond.wait()
                if self._closing:
                    return
                on = bool(self._wanted)
            ok = self._apply(on)
            with self._cond:
                self._applied = on if ok else None
                if not ok and self._wanted == on:
                    self._wanted = None  # not retried in a loop; the next change tries again

    def _apply(self, on: bool) -> bool:
        argv = self.argv[on]
        state = "on" if on else "off"
        if not argv:
            return True
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            detail = f"{self.name} power {state}: {argv[0]} failed: {exc}"
        else:
            if done.returncode == 0:
                log.info("%s power %s (%s)", self.name, state, argv[0])
                return True
            err = done.stderr.decode("utf-8", "replace").strip()[-200:]
            detail = f"{self.name} power {state}: {argv[0]} exited {done.returncode}: {err}"
        log.error("%s", detail)
        self.report(detail)
        return False
