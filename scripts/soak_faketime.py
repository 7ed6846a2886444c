#!/usr/bin/env python3
"""Which of the agent's clocks libfaketime speeds up, one probe per primitive.

    python scripts/soak_faketime.py [--speed 168] [--lib /usr/lib/.../libfaketimeMT.so.1]

Each probe runs in its own Python child under ``LD_PRELOAD`` with
``FAKETIME="@2026-12-07 05:00:00 x168"`` and ``FAKETIME_NO_CACHE=1``, waits ``WAIT_S`` seconds
of the child's (fake) time and prints what the child saw. The parent times the child on its
own, real clock: a sped-up wait takes ``WAIT_S / speed`` real seconds, an unfaked one
``WAIT_S``, and one that never returns is cut at ``TIMEOUT_S``. Exit status 1 when any probe
is not sped up (so a compressed soak cannot run the agent unmodified under libfaketime).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
WAIT_S = 1.68
TIMEOUT_S = 6.0

SETUP = "import time, threading, queue, select, socket, sqlite3, datetime\n"
# name -> statement that waits WAIT_S seconds of the child's clock
PROBES: dict[str, str] = {
    "time.sleep": "time.sleep(W)",
    "threading.Event.wait": "threading.Event().wait(W)",
    "threading.Condition.wait": "c = threading.Condition()\nwith c:\n    c.wait(W)",
    "queue.Queue.get(timeout)": (
        "try:\n    queue.Queue().get(timeout=W)\nexcept queue.Empty:\n    pass"
    ),
    "threading.Lock.acquire(timeout)": (
        "lk = threading.Lock()\nlk.acquire()\nlk.acquire(timeout=W)"
    ),
    "select.select (paho's loop)": "a, b = socket.socketpair()\nselect.select([a], [], [], W)",
    "select.poll": (
        "a, b = socket.socketpair()\np = select.poll()\np.register(a, select.POLLIN)\n"
        "p.poll(W * 1000)"
    ),
    "socket recv timeout": (
        "a, b = socket.socketpair()\na.settimeout(W)\ntry:\n    a.recv(1)\n"
        "except TimeoutError:\n    pass"
    ),
    "sqlite3 busy timeout": (
        "import tempfile, os\nd = tempfile.mkdtemp()\nf = os.path.join(d, 'x.db')\n"
        "a = sqlite3.connect(f, isolation_level=None)\na.execute('BEGIN EXCLUSIVE')\n"
        "b = sqlite3.connect(f, timeout=W)\ntry:\n    b.execute('BEGIN EXCLUSIVE')\n"
        "except sqlite3.OperationalError:\n    pass"
    ),
}
REPORT = (
    "print(round(time.monotonic() - m0, 3), round(time.time() - w0, 3), "
    "datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'))"
)


def probe(statement: str, env: dict[str, str]) -> tuple[float, str]:
    """Run one probe; return its real seconds and what the child printed (or a verdict)."""
    code = f"{SETUP}W = {WAIT_S}\nm0 = time.monotonic()\nw0 = time.time()\n{statement}\n{REPORT}"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return time.monotonic() - started, "never returned"
    out = done.stdout.strip() or done.stderr.strip().splitlines()[-1]
    return time.monotonic() - started, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=int, default=168)
    parser.add_argument("--lib", type=Path, default=LIB)
    args = parser.parse_args()
    if not args.lib.exists():
        print(f"error: {args.lib} missing (apt-get install libfaketime)", file=sys.stderr)
        return 2
    base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    modes = {
        "monotonic faked": {},
        "FAKETIME_DONT_FAKE_MONOTONIC=1": {"FAKETIME_DONT_FAKE_MONOTONIC": "1"},
    }
    sped = WAIT_S / args.speed
    print(
        f"libfaketime {args.lib.name}, x{args.speed}: a wait of {WAIT_S} s of fake time is "
        f"{sped:.3f} s real when sped up, {WAIT_S} s when not faked\n"
    )
    print("| probe | mode | real s | verdict | child: monotonic s, time s, now |")
    print("|---|---|---:|---|---|")
    broken = 0
    for name, statement in PROBES.items():
        for mode, extra in modes.items():
            env = {
                **base,
                **extra,
                "LD_PRELOAD": str(args.lib),
                "FAKETIME_NO_CACHE": "1",
                "FAKETIME": f"@2026-12-07 05:00:00 x{args.speed}",
            }
            real, out = probe(statement, env)
            if out == "never returned":
                verdict = "hangs"
            elif real < WAIT_S / 2:
                verdict = "sped up"
            else:
                verdict = "real speed"
            broken += verdict != "sped up" and mode == "monotonic faked"
            print(f"| {name} | {mode} | {real:.2f} | {verdict} | {out} |", flush=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
