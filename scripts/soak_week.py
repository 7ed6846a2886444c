#!/usr/bin/env python3
"""A week compressed: the unmodified agent under libfaketime, its clock sped up.

    python scripts/soak_week.py [--wall-s 3600] [--speed 168] [--commands 1000]

The agent runs as ``ttcs-agent run`` with ``LD_PRELOAD`` of libfaketime plus
``scripts/faketime_semwait.c`` (built here with ``cc``; libfaketime 0.9.10 does not wrap the
``sem_clockwait`` under every timed wait of CPython 3.11). The broker is outside the fake
clock, so the agent's keepalive is the largest allowed (1,200 s of fake time) and commands are
signed in the agent's fake time (read from its status). Prints RSS, fds, threads and play-log
entries per sample, tagged with the agent's simulated day.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from agent.control_socket import AgentNotRunning  # noqa: E402
from controlplane.keys import SigningKey, make_document  # noqa: E402
from protocol import Topics, parse_time  # noqa: E402
from tests.helpers import PREFIX, Broker, Listener, program, provision, request  # noqa: E402

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
START = "2026-12-07 05:00:00"  # UTC: Monday 12:00 in Asia/Ho_Chi_Minh
DEV = "q10-p12-bang-01"


def build_shim(out: Path) -> Path:
    so = out / "faketime_semwait.so"
    src = ROOT / "scripts" / "faketime_semwait.c"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(so), str(src), "-ldl"], check=True)
    return so


def proc_figures(pid: int) -> tuple[float, int, int]:
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def text(ident: str, words: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "title": words,
        "screen": {"kind": "text", "text": words, "duration_ms": 15000},
        **extra,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wall-s", type=float, default=float(os.environ.get("SOAK_WALL_S", 3600)))
    parser.add_argument("--speed", type=int, default=168)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--sample-s", type=float, default=10.0)
    args = parser.parse_args()
    if not LIBFAKETIME.exists():
        print(f"error: {LIBFAKETIME} missing (apt-get install libfaketime)", file=sys.stderr)
        return 2
    key = SigningKey.generate("hcm-2026")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ttcs-week-") as t:
        tmp = Path(t)
        shim = build_shim(tmp)
        broker = Broker(tmp / "broker").start()
        dev = provision(
            tmp,
            broker,
            key,
            screen='enabled = true\ndriver = "headless"\nwidth = 320\nheight = 180',
        )
        cfg = dev.config.read_text().replace("keepalive_s = 10", "keepalive_s = 1200")
        dev.config.write_text(cfg.replace("status_interval_s = 5", "status_interval_s = 600"))
        env = {
            **os.environ,
            "LD_PRELOAD": f"{LIBFAKETIME}:{shim}",
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME": f"@{START} x{args.speed}",
            "PYTHONPATH": str(ROOT),
        }
        subs = [f"{PREFIX}/dev/{DEV}/ack", f"{PREFIX}/dev/{DEV}/playlog"]
        rows: list[str] = []
        expected: set[str] = set()
        print("wall s sim d  RSS MB  fds threads entries sent screen")
        with Listener(broker, subs, persistent=True, client_id="soak-week") as listener:
            bulletins = [
                text("rot-a", "Lịch tiếp dân"),
                text("rot-b", "Tiêm chủng"),
                text(
                    "sch",
                    "Nhắc giờ họp",
                    schedule={"weekdays": [1, 2, 3, 4, 5, 6, 7], "times": ["07:00", "17:00"]},
                ),
            ]
            topic, payload, _ = program(
                key, 1, bulletins, screen_hours={"on": "06:00", "off": "22:00"}
            )
            listener.publish(topic, payload, retain=True)
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(dev.config)],
                env=env,
                cwd=ROOT,
                stdout=(tmp / "agent.out").open("wb"),
                stderr=subprocess.STDOUT,
            )
            started = time.monotonic()
            start_at = parse_time(START.replace(" ", "T") + "Z")
            sent = 0
            next_sample = started
            online: float | None = None
            st: dict[str, Any] = {}
            try:
                while time.monotonic() - started < args.wall_s:
                    time.sleep(0.2)
                    elapsed = time.monotonic() - started
                    fake_now = start_at + timedelta(seconds=elapsed * args.speed)
                    if online is None and st.get("link", {}).get("connected"):
                        online = elapsed
                    if online is not None and sent < args.commands * (elapsed - online) / (
                        args.wall_s - online
                    ):
                        sent += 1
                        b = text(f"pn-{sent:04d}", f"Thông báo số {sent}")
                        doc = make_document(
                            key,
                            "play.now",
                            f"dev:{DEV}",
                            {"bulletin": b},
                            now=fake_now - timedelta(seconds=60),
                        )
                        expected.add(b["id"])
                        listener.publish(
                            Topics(PREFIX).dev(DEV, "cmd"),
                            json.dumps(doc, ensure_ascii=False).encode(),
                        )
                    if online is None or time.monotonic() >= next_sample:
                        next_sample = time.monotonic() + args.sample_s
                        rss, fds, threads = proc_figures(proc.pid)
                        try:
                            st = request(dev.socket, "status").get("status", {})
                        except (OSError, AgentNotRunning):
                            st = {}
                        at = parse_time(st["at"]) if st.get("at") else fake_now
                        day = (at - start_at).total_seconds() / 86400
                        shown = Counter(
                            e["bulletin"]
                            for b in listener.json_on("/playlog")
                            for e in b["entries"]
                        )
                        if online is None:
                            continue
                        rows.append(
                            f"{elapsed:6.0f} {day:6.2f} {rss:8.1f} {fds:4d} {threads:7d} "
                            f"{sum(shown.values()):7d} {sent:5d} "
                            f"{(st.get('now') or {}).get('screen')}"
                        )
                        print(rows[-1], flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
                broker.stop()
            shown = Counter(
                e["bulletin"]
                for b in listener.json_on("/playlog")
                for e in b["entries"]
                if e["channel"] == "screen"
            )
            missing = [b for b in expected if shown[b] == 0]
            if missing:
                problems.append(f"{len(missing)} of {len(expected)} play.now never shown")
            print(
                f"play.now shown: {len(expected) - len(missing)} of {len(expected)}; "
                f"scheduled 'sch': {shown['sch']}; problems: {'; '.join(problems) or 'none'}"
            )
            print((tmp / "agent.out").read_text()[-1500:])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
