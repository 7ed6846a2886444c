#!/usr/bin/env python3
"""The long runs of ``make soak``: the agent behind a flapping 3G-like link, then the load soak.

    python scripts/soak.py [--flap-minutes 30] [--load-minutes 20] [--commands 1000] [--seed 13]

Each part starts its own Mosquitto on a free loopback port and a real ``ttcs-agent run``
(tests/flapping.py, tests/load_soak.py), prints its table, and the exit status is 1 when a
promise was broken: a command run twice or never, an ack or playlog entry missing, a blank
screen, a half-open link noticed later than 1.5 keepalives, memory growing more than
1 MB per hour after warm-up, file descriptors or threads growing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.keys import SigningKey
from tests.flapping import run_flapping
from tests.load_soak import run_load_soak

MAX_GROWTH_KB_PER_HOUR = 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flap-minutes", type=float, default=30.0)
    parser.add_argument("--load-minutes", type=float, default=20.0)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    key = SigningKey.generate("hcm-2026")
    failed = False
    with tempfile.TemporaryDirectory(prefix="ttcs-soak-") as tmp:
        if args.flap_minutes > 0:
            print(f"## flapping link, {args.flap_minutes:g} min (seed {args.seed})", flush=True)
            flap = run_flapping(Path(tmp) / "flap", key, args.flap_minutes * 60, args.seed)
            print(flap.table() + "\n", flush=True)
            failed |= bool(flap.problems)
        if args.load_minutes > 0:
            print(
                f"## load soak, {args.commands} commands in {args.load_minutes:g} min", flush=True
            )
            load = run_load_soak(Path(tmp) / "load", key, args.load_minutes * 60, args.commands)
            print(load.table(), flush=True)
            samples = load.samples[len(load.samples) // 10 :]
            fds = [s.fds for s in samples] or [0]
            threads = [s.threads for s in samples] or [0]
            if load.growth_kb_per_hour() > MAX_GROWTH_KB_PER_HOUR:
                load.problems.append("memory grows more than 1 MB per hour")
            if max(fds) - min(fds) > 4 or max(threads) - min(threads) > 2:
                load.problems.append("file descriptors or threads grow")
            if load.problems:
                print("problems: " + "; ".join(load.problems), flush=True)
            failed |= bool(load.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
