"""A process hosting a slice of the simulated fleet (one such process per core).

    python -m fleetsim.host ROOT FIRST COUNT [--wakeups shared|daemon] [--log FILE]

Loads the configurations ``ROOT/sim-NNNN/agent.toml`` of devices FIRST … FIRST+COUNT-1, builds
each with ``fleetsim.device.build_device`` and starts it. Then it answers one JSON line on
stdout per line on stdin: ``stats`` (threads, resident memory) and ``stop`` (stops every device
the daemon's way, publishing its offline state, and exits). End of input stops too.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from agent.config import load_config
from agent.events import Stop
from fleetsim.device import SimDevice, WakeFactory, build_device, daemon_wakeup
from fleetsim.provision import device_id
from fleetsim.wakeups import SharedWakeups


def rss_kib() -> int:
    """Resident memory of this process (VmRSS), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stats(devices: list[SimDevice]) -> dict[str, int]:
    return {
        "devices": len(devices),
        "connected": sum(d.link.connected for d in devices),
        "threads": threading.active_count(),
        "rss_kib": rss_kib(),
    }


def _say(data: Mapping[str, object]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetsim.host")
    parser.add_argument("root", type=Path)
    parser.add_argument("first", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--wakeups", choices=("shared", "daemon"), default="shared")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(
        level=logging.WARNING,
        filename=str(args.log) if args.log else None,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    shared = SharedWakeups()
    make_wake: WakeFactory = shared.for_device if args.wakeups == "shared" else daemon_wakeup
    started = time.monotonic()
    devices = []
    for index in range(args.first, args.first + args.count):
        config = load_config(args.root / device_id(index) / "agent.toml")
        devices.append(build_device(config, make_wake))
    shared.start()
    for device in devices:
        device.start()
    _say({"ready": len(devices), "build_s": round(time.monotonic() - started, 3)})
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            _say(stats(devices))
        elif command == "stop":
            break
    began = time.monotonic()
    for device in devices:
        device.director.post(Stop())
    for device in devices:
        device.stop()
    shared.stop()
    _say({"stopped": len(devices), "stop_s": round(time.monotonic() - began, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
