"""``ttcs-agent``: the daemon and the technician's commands (run over SSH on the box)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from agent import __version__, technician
from agent.cache import ContentCache, Progress
from agent.config import (
    DEFAULT_CONFIG_PATH,
    AgentConfig,
    ConfigError,
    check_files,
    load_config,
)
from agent.control_socket import AgentNotRunning, request
from protocol import format_time


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttcs-agent",
        description="Edge agent for ward screens and loudspeakers (thông tin cơ sở).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    config_help = f"configuration file (default: $TTCS_CONFIG or {DEFAULT_CONFIG_PATH})"
    default_config = Path(os.environ.get("TTCS_CONFIG", str(DEFAULT_CONFIG_PATH)))
    parser.add_argument("--config", type=Path, default=default_config, help=config_help)
    # Also accepted after any sub-command; SUPPRESS keeps a sub-parser from resetting a value
    # given earlier on the command line (`ttcs-agent config --config X check`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="run the agent in the foreground")
    sub.add_parser(
        "slots-apply", parents=[common], help="(root) do the agent's pending slot request"
    )
    status = sub.add_parser("status", parents=[common], help="what the running agent is doing")
    status.add_argument("--json", action="store_true", help="machine-readable status")
    cfg = sub.add_parser("config", parents=[common], help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cfg_sub.add_parser("check", parents=[common], help="validate the configuration file")
    logs = sub.add_parser("logs", parents=[common], help="the last lines of the agent's log")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many lines (default 50)")
    inject = sub.add_parser(
        "inject",
        parents=[common],
        help="hand a signed command or program file to the agent (e.g. from a USB stick)",
    )
    inject.add_argument("file", type=Path, help="signed JSON document")
    cache = sub.add_parser("cache", parents=[common], help="the content cache")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    ls = cache_sub.add_parser(
        "ls", parents=[common], help="the cached files, least recently used (evicted) first"
    )
    ls.add_argument("--json", action="store_true", help="machine-readable listing")
    verify = cache_sub.add_parser(
        "verify",
        parents=[common],
        help="hash every cached file again; remove and list the damaged ones (exit 1)",
    )
    verify.add_argument(
        "--progress", action="store_true", help="show the progress bar also when not on a terminal"
    )
    cache_sub.add_parser(
        "gc",
        parents=[common],
        help="have the running agent evict least recently used files over the quota",
    )
    shot = sub.add_parser(
        "screenshot", parents=[common], help="save the frame now on the screen as a PNG file"
    )
    shot.add_argument("file", type=Path, help="where to write the PNG")
    shot.add_argument("--max-width", type=int, default=None, help="scale down to this width")
    test = sub.add_parser(
        "test-screen",
        parents=[common],
        help="colour bars, a Vietnamese pangram, the resolution and the frame rate",
    )
    test.add_argument("--seconds", type=float, default=10.0, help="how long (default 10)")
    test.add_argument("--out", type=Path, default=None, help="also save the test card as PNG")
    say = sub.add_parser("say", parents=[common], help="speak a text on the loudspeakers")
    say.add_argument("text", help="Vietnamese text (numbers, dates and abbreviations are read out)")
    say.add_argument("--voice", default=None, help="a configured voice (default: [tts] default)")
    sub.add_parser(
        "test-speaker", parents=[common], help="the chime, then a Vietnamese sample sentence"
    )
    vol = sub.add_parser("volume", parents=[common], help="set the loudspeakers' volume")
    vol.add_argument("percent", type=int, choices=range(101), metavar="0-100")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command in ("run", "config"):
            check_files(config, str(args.config))
    except ConfigError as exc:
        print(f"ttcs-agent: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            from agent.daemon import run

            return run(config, args.config)
        if args.command == "config":
            print(
                f"{args.config}: OK (device {config.device_id}, "
                f"{len(config.trust.keys)} trusted keys, broker {config.mqtt.url})"
            )
            if not config.trust.keys:
                print(
                    "warning: [trust.keys] is empty: every command will be rejected",
                    file=sys.stderr,
                )
            return 0
        if args.command == "slots-apply":
            from agent.installer import apply_pending

            return apply_pending(config)
        if args.command == "status":
            return _status(config, args.json)
        if args.command == "logs":
            answer = _ask(config, "logs", lines=max(1, args.lines))
            print("\n".join(answer["lines"]))
            return 0
        if args.command == "inject":
            return _inject(config, args.file)
        if args.command == "cache":
            return _cache(config, args)
        if args.command == "screenshot":
            answer = _ask(config, "screenshot", max_width=args.max_width)
            return _write_png(args.file, base64.b64decode(answer["png"]))
        if args.command in ("say", "test-speaker"):
            text = args.text if args.command == "say" else technician.SAMPLE
            voice = args.voice if args.command == "say" else None
            print(technician.speak(config, text, voice, chime=args.command == "test-speaker"))
            return 0
        if args.command == "volume":
            print(technician.set_volume(config, args.percent))
            return 0
        if args.command == "test-screen":
            return _test_screen(config, max(1.0, args.seconds), args.out)
    except AgentNotRunning as exc:
        print(f"ttcs-agent: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        return 0
    return 2


def _ask(config: AgentConfig, action: str, **args: Any) -> dict[str, Any]:
    answer = request(config.paths.socket_path, action, **args)
    if not answer.get("ok"):
        raise AgentNotRunning(f"the agent refused: {answer.get('error')}")
    return answer


def _inject(config: AgentConfig, path: Path) -> int:
    try:
        # A byte-order mark (editors on Windows add one) is not part of the JSON document.
        document = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"ttcs-agent: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    answer = _ask(config, "inject", document=document)
    ok = True
    for ack in answer["acks"]:
        print(json.dumps(ack, ensure_ascii=False))
        ok = ok and ack["status"] in ("accepted", "done")
    return 0 if ok else 1


def _cache(config: AgentConfig, args: argparse.Namespace) -> int:
    # ls and verify work on the folder itself, with or without a running agent; gc needs the
    # agent, which alone knows what its live and pending programs refer to.
    if args.cache_command == "gc":
        answer = _ask(config, "cache.gc")
        evicted: list[str] = answer.get("evicted", [])
        for sha in evicted:
            print(f"evicted {sha}")
        print(
            f"{len(evicted)} files evicted; the cache holds {answer.get('items', '?')} files, "
            f"{_size(int(answer.get('bytes', 0)))} of the {_size(config.cache.quota_bytes)} quota"
        )
        return 0
    cache = ContentCache(config.paths.cache_dir, config.cache.quota_bytes)
    try:
        if args.cache_command == "ls":
            return _cache_ls(cache, args.json)
        return _cache_verify(cache, args.progress or sys.stderr.isatty())
    except PermissionError as exc:
        print(
            f"ttcs-agent: {exc.filename or cache.root}: permission denied: run as the service "
            "user or a member of its group",
            file=sys.stderr,
        )
        return 2


def _cache_ls(cache: ContentCache, as_json: bool) -> int:
    items = cache.items()
    total = sum(item.size for item in items)
    if as_json:
        listing = {
            "cache_dir": str(cache.root),
            "quota_bytes": cache.quota_bytes,
            "bytes": total,
            "items": len(items),
            "entries": [
                {"sha256": i.sha256, "size": i.size, "last_used": format_time(i.last_used)}
                for i in items
            ],
        }
        print(json.dumps(listing, indent=2))
        return 0
    for item in items:
        print(f"{item.sha256}  {_size(item.size):>9}  {format_time(item.last_used)}")
    print(
        f"{len(items)} files, {_size(total)} of the {_size(cache.quota_bytes)} quota "
        f"in {cache.root} (least recently used first)"
    )
    return 0


def _cache_verify(cache: ContentCache, show_progress: bool) -> int:
    bar = ProgressBar(sys.stderr) if show_progress else None
    try:
        bad = cache.verify(bar)
    finally:
        if bar is not None:
            bar.finish()
    for sha in bad:
        print(f"damaged, removed: {sha}")
    bytes_, items = cache.usage()
    if bad:
        print(
            f"{len(bad)} damaged files removed (the agent fetches a live program's files "
            "again at start and every hour)"
        )
        return 1
    print(f"all {items} files match their sha256 ({_size(bytes_)})")
    return 0


class ProgressBar:
    """A one-line textual progress bar, redrawn in place with a carriage return."""

    WIDTH = 30

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.drawn = False

    def __call__(self, p: Progress) -> None:
        if p.bytes_total:
            fraction = p.bytes_done / p.bytes_total
        else:
            fraction = p.files_done / p.files_total if p.files_total else 1.0
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(fraction * self.WIDTH)
        self.stream.write(
            f"\rverifying [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%} "
            f"{_size(p.bytes_done)} / {_size(p.bytes_total)}, "
            f"{p.files_done}/{p.files_total} files "
        )
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _status(config: AgentConfig, as_json: bool) -> int:
    answer = _ask(config, "status")
    status: dict[str, Any] = answer["status"]
    if as_json:
        print(json.dumps(status, ensure_ascii=False, indent=2))
        return 0
    link = status.get("link", {})
    now = status.get("now", {})
    programs = status.get("programs") or {}
    rows = [
        ("device", f"{answer['device']} (agent {answer['agent_version']})"),
        (
            "broker",
            f"{config.mqtt.url} — "
            f"{'connected' if link.get('connected') else 'NOT CONNECTED'}, "
            f"{link.get('reconnects', 0)} reconnects",
        ),
        ("uptime", _duration(int(status["uptime_s"]))),
        ("screen", now.get("screen") or "—"),
        ("speaker", now.get("speaker") or "—"),
        ("volume", f"{status['volume']}%"),
        ("programs", ", ".join(f"{t} v{v}" for t, v in programs.items()) or "none"),
        ("cache", f"{status['cache']['items']} items, {_size(status['cache']['bytes'])}"),
        ("disk free", _size(int(status["disk_free_bytes"]))),
        (
            "temperature",
            f"{status['temperature_c']} °C" if status.get("temperature_c") is not None else "—",
        ),
        ("outbox", f"{status.get('outbox', 0)} messages waiting for the broker"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _write_png(path: Path, png: bytes) -> int:
    try:
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(png)
        tmp.replace(path)
    except OSError as exc:
        print(f"ttcs-agent: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 2
    width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR
    print(f"{path}: {width}x{height} PNG, {_size(len(png))}")
    return 0


def _test_screen(config: AgentConfig, seconds: float, out: Path | None) -> int:
    """The test card on the running agent's screen, or, with no agent, on the display itself."""
    try:
        _ask(config, "test-screen", seconds=seconds)
    except AgentNotRunning as exc:
        if "not running" not in str(exc):
            raise
        return _test_screen_here(config, seconds, out)
    time.sleep(_settle(seconds))  # let the frame rate settle before reading it
    info = _ask(config, "screen")["screen"]
    if out is not None:
        _write_png(out, base64.b64decode(_ask(config, "screenshot")["png"]))
    _print_screen(info)
    return 0


def _test_screen_here(config: AgentConfig, seconds: float, out: Path | None) -> int:
    from zoneinfo import ZoneInfo

    from agent.players import screen_settings
    from player.screen import PygameScreen, ScreenError

    settings = screen_settings(config.screen, config.device_id, ZoneInfo(config.timezone))
    screen = PygameScreen(settings)
    try:
        screen.start()
    except ScreenError as exc:
        print(f"ttcs-agent: {exc}", file=sys.stderr)
        return 1
    try:
        screen.show_test_card(seconds)
        time.sleep(_settle(seconds))
        if out is not None:
            _write_png(out, screen.snapshot())
        info = screen.describe()
        time.sleep(max(0.0, seconds - _settle(seconds)))
    finally:
        screen.close()
    _print_screen(info)
    return 0


def _settle(seconds: float) -> float:
    """How long the test card runs before its figures are read (it must still be up)."""
    return max(0.5, min(seconds - 0.5, 3.0))


def _print_screen(info: dict[str, Any]) -> None:
    frame, region, canvas = info["frame"], info["region"], info["canvas"]
    print(f"frame     {frame[0]}x{frame[1]} ({info['driver']}, {info['profile']} profile)")
    print(f"region    {region[0]},{region[1]} {region[2]}x{region[3]}; rotation {info['rotation']}")
    print(f"canvas    {canvas[0]}x{canvas[1]}")
    print(f"frame rate {info['fps']:.1f} frames/s (full frames, test card)")
    print(f"fonts     {', '.join(info['fonts'])}")
    print(f"power     {info['power']}")


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
