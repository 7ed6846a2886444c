"""``make fleet``: run the simulated fleet at each size, print the table, write the JSON.

python -m fleetsim [--sizes 100,300,1000] [--processes 2] [--out fleet-out]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from fleetsim.report import table
from fleetsim.scenario import Options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetsim", description=__doc__)
    parser.add_argument("--sizes", default="100,300,1000", help="device counts, one run each")
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 2, help="at least this many hosts"
    )
    parser.add_argument(
        "--jitter",
        type=int,
        help="the devices' [cache] fetch_jitter_s (default: N ÷ 10 s, at least 20 s)",
    )
    parser.add_argument("--wakeups", choices=("shared", "daemon"), default="shared")
    parser.add_argument("--out", type=Path, default=Path("fleet-out"))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    shutil.rmtree(args.out, ignore_errors=True)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        began = time.monotonic()
        print(f"fleet: {n} devices …", file=sys.stderr, flush=True)
        jitter = args.jitter if args.jitter is not None else max(20, n // 10)
        opts = Options(n, args.out / f"n{n}", args.processes, jitter, wakeups=args.wakeups)
        row = run(opts)
        row["run_s"] = round(time.monotonic() - began, 1)
        rows.append(row)
        (args.out / "fleet.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    print(f"\nJSON: {args.out / 'fleet.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
