"""The table ``make fleet`` prints: one column per fleet size, one row per figure."""

from __future__ import annotations

from typing import Any

ROWS: list[tuple[str, str, str]] = [
    # (label, section, key)
    ("devices online after start (s)", "start", "all_online_s"),
    ("emergency.start → first done (s)", "emergency", "first_s"),
    ("emergency.start → p50 done (s)", "emergency", "p50_s"),
    ("emergency.start → p99 done (s)", "emergency", "p99_s"),
    ("emergency.start → last done (s)", "emergency", "last_s"),
    ("not acked after 10 s", "emergency", "missing"),
    ("floor: bare paho echo → p50 (s)", "floor", "p50_s"),
    ("floor: bare paho echo → last (s)", "floor", "last_s"),
    ("floor: not echoed after 10 s", "floor", "missing"),
    ("replayed emergency refused (duplicate)", "refusals", "replay_refused"),
    ("forged emergency refused (bad_signature)", "refusals", "forged_refused"),
    ("forged emergency executed", "refusals", "forged_executed"),
    ("program: 20 files, bytes", "program", "program_bytes"),
    ("program: devices' fetch_jitter_s", "program", "jitter_s"),
    ("program: first live (s)", "program", "first_live_s"),
    ("program: all live (s)", "program", "all_live_s"),
    ("program: p50 live (s)", "program", "p50_live_s"),
    ("program: live / failed", "program", "live_failed"),
    ("program: bytes served ÷ (N × program)", "program", "served_ratio"),
    ("program: peak concurrent downloads", "program", "peak_concurrent"),
    ("broker restart: outage (s)", "restart", "outage_s"),
    ("broker restart: p50 back online (s)", "restart", "p50_back_s"),
    ("broker restart: all back online (s)", "restart", "all_back_s"),
    ("broker restart: peak reconnects per s", "restart", "peak_reconnects_per_s"),
    ("broker restart: devices online when the 2nd command left", "restart", "online_when_sent"),
    ("broker restart: commands lost (2 commands × N)", "restart", "lost"),
    ("threads per process", "resources", "threads_per_process"),
    ("resident memory per process (MiB)", "resources", "rss_mib_per_process"),
    ("resident memory per device (KiB)", "resources", "rss_kib_per_device"),
]


def ratios(row: dict[str, Any]) -> dict[str, Any]:
    """Device figures over the floor's: how far the agent is from a bare echo."""
    e, f = row.get("emergency", {}), row.get("floor", {})
    out: dict[str, Any] = {}
    for key in ("p50_s", "last_s"):
        if e.get(key) and f.get(key):
            out[key] = round(e[key] / f[key], 1)
    return out


def _cell(row: dict[str, Any], section: str, key: str) -> str:
    part = row.get(section, {})
    if key == "live_failed":
        return f"{part.get('live', '—')} / {part.get('failed', '—')}"
    value = part.get(key)
    return "—" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, sizes as columns."""
    head = "| figure | " + " | ".join(f"N = {r['devices']:,}" for r in rows) + " |"
    lines = [head, "|---|" + "---:|" * len(rows)]
    for label, section, key in ROWS:
        cells = " | ".join(_cell(r, section, key) for r in rows)
        lines.append(f"| {label} | {cells} |")
    for key, label in (("p50_s", "p50"), ("last_s", "last")):
        cells = " | ".join(str(ratios(r).get(key, "—")) for r in rows)
        lines.append(f"| emergency ÷ floor, {label} | {cells} |")
    return "\n".join(lines)
