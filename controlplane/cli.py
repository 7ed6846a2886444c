"""``ttcs-control``: the operators' command line (arguments here, each command in the module
of its concern)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from controlplane.cap_intake import cmd_cap_send, cmd_cap_watch
from controlplane.emergency import cmd_emergency_start, cmd_emergency_stop
from controlplane.errors import ControlError
from controlplane.fleet import cmd_fleet, cmd_watch
from controlplane.keys import cmd_keygen, cmd_provision
from controlplane.playlog_files import COLLECTOR_ID, cmd_collect, cmd_report
from controlplane.release import main as release_main
from controlplane.rollout import add_update_parser
from controlplane.send import cmd_program_push, cmd_send
from protocol import COMMAND_TYPES


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="ttcs-control",
        description="Control plane for ward screens and loudspeakers: sign and send.",
    )
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument(
        "--broker",
        default=env("TTCS_BROKER", "mqtt://127.0.0.1:1883"),
        help="broker URL (env TTCS_BROKER)",
    )
    conn.add_argument("--ca-file", type=Path, default=env("TTCS_CA_FILE"))
    conn.add_argument("--cert-file", type=Path, default=env("TTCS_CERT_FILE"))
    conn.add_argument("--key-file", type=Path, default=env("TTCS_KEY_FILE"))
    conn.add_argument(
        "--username",
        default=env("TTCS_USERNAME"),
        help="broker user; the password is read from env TTCS_PASSWORD",
    )
    conn.add_argument("--prefix", default=env("TTCS_PREFIX", "ttcs/v1"), help="topic prefix")
    signer = argparse.ArgumentParser(add_help=False)
    signer.add_argument(
        "--key",
        type=Path,
        default=Path(env("TTCS_SIGNING_KEY", "control.key")),
        help="signing key file from keygen (env TTCS_SIGNING_KEY)",
    )

    fan = argparse.ArgumentParser(add_help=False)
    fan.add_argument("--json", action="store_true", help="print the answers as one JSON document")
    fan.add_argument(
        "--db",
        default=env("TTCS_DB"),
        help="the control plane's store (sqlite:PATH, postgresql://…; env TTCS_DB): it also "
        "knows the groups of devices now offline",
    )

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("keygen", help="create an Ed25519 signing key")
    p.add_argument("--kid", required=True, help="key id, e.g. hcm-2026")
    p.add_argument("--out", type=Path, required=True, help="where to write the private key")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("provision", parents=[conn, signer], help="write a device configuration")
    p.add_argument("device", help="device id, e.g. q10-p12-bang-01")
    p.add_argument("--group", action="append", default=[], help="a group (repeatable)")
    p.add_argument("--state-dir", default="/var/lib/ttcs-agent")
    p.add_argument("--cache-dir", default="/var/cache/ttcs-agent")
    p.add_argument("--out", type=Path, help="file to write (default: stdout)")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser(
        "send", parents=[conn, signer, fan], help="send a signed command, follow the acks"
    )
    p.add_argument("target", nargs="?", help="dev:DEVICE or grp:GROUP (or --to)")
    p.add_argument("type", choices=COMMAND_TYPES)
    p.add_argument("--to", help="the target, as for program push and emergency")
    p.add_argument("--body", help="the body as JSON (default {})")
    p.add_argument("--body-file", help="read the body from a JSON file")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for acks")
    p.add_argument("--expect", type=int, help="final acks to wait for (default 1 for dev:)")
    p.add_argument(
        "--sync-wait",
        type=float,
        help="play.now with play_at: seconds after play_at to wait for each device's start "
        "(default: the speech's estimated length + 20 s)",
    )
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("program", help="programs")
    psub = p.add_subparsers(dest="program_command", required=True, metavar="ACTION")
    p = psub.add_parser("push", parents=[conn, signer, fan], help="sign and publish a program")
    p.add_argument("file", help="program body as JSON ({version, bulletins, ticker, ...})")
    p.add_argument("--to", dest="target", required=True, help="dev:DEVICE or grp:GROUP")
    p.add_argument("--version", type=int, help="override the body's version")
    p.add_argument("--ttl", type=int, default=None, help="seconds until it expires (optional)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the ack")
    p.set_defaults(func=cmd_program_push)

    p = sub.add_parser("emergency", help="start or stop an emergency")
    esub = p.add_subparsers(dest="emergency_command", required=True, metavar="ACTION")
    p = esub.add_parser("start", parents=[conn, signer, fan], help="start an emergency")
    p.add_argument("--to", dest="target", required=True, help="dev:DEVICE or grp:GROUP")
    p.add_argument("--bulletin-file", help="the emergency's bulletin as JSON")
    p.add_argument("--title", help="the title (with --text: a bulletin shown and spoken)")
    p.add_argument("--text", help="what is shown and spoken")
    p.add_argument("--id", help="the bulletin's id (default: a new one)")
    p.add_argument("--voice", help="a voice configured on the devices (default: theirs)")
    p.add_argument("--repeat-every", type=int, help="repeat the announcement every N seconds")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it ends by itself")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for acks")
    p.add_argument("--expect", type=int, help="final acks to wait for (default: every member)")
    p.set_defaults(func=cmd_emergency_start)
    p = esub.add_parser("stop", parents=[conn, signer, fan], help="end an emergency")
    p.add_argument("--to", dest="target", required=True, help="dev:DEVICE or grp:GROUP")
    p.add_argument("--ref", help="the emergency.start command's id (default: all)")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for acks")
    p.add_argument("--expect", type=int, help="final acks to wait for (default: every member)")
    p.set_defaults(func=cmd_emergency_stop)

    p = sub.add_parser("cap", help="CAP 1.2 alerts: send one, or watch a feed or folder")
    csub = p.add_subparsers(dest="cap_command", required=True, metavar="ACTION")
    capconf = argparse.ArgumentParser(add_help=False)
    capconf.add_argument(
        "--config",
        type=Path,
        default=Path(env("TTCS_CAP_CONFIG", "/etc/ttcs-control/control.toml")),
        help="the file with [cap] (config/cap.example.toml; env TTCS_CAP_CONFIG)",
    )
    capconf.add_argument(
        "--dry-run", action="store_true", help="print what would be sent to whom; send nothing"
    )
    capconf.add_argument("--wait", type=float, default=30.0, help="seconds to wait for acks")
    p = csub.add_parser("send", parents=[conn, signer, fan, capconf], help="act on one alert")
    p.add_argument("file", type=Path, help="a CAP 1.2 document")
    p.set_defaults(func=cmd_cap_send, expect=None)
    p = csub.add_parser(
        "watch", parents=[conn, signer, fan, capconf], help="act on every new alert of a feed"
    )
    p.add_argument("source", help="an Atom or RSS feed's http(s) URL, or a folder of .xml files")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between looks")
    p.add_argument("--duration", type=float, default=0.0, help="stop after N seconds")
    p.set_defaults(func=cmd_cap_watch, expect=None)

    # agent.update: a staged rollout (controlplane/rollout.py) and release artifacts.
    add_update_parser(sub, [conn, signer])
    p = sub.add_parser("release", help="release artifacts: keygen, build, sign, show")
    p.add_argument("release_args", nargs=argparse.REMAINDER, help="see `ttcs-release --help`")
    p.set_defaults(func=lambda args: release_main(args.release_args))

    p = sub.add_parser("fleet", parents=[conn], help="a table of every device's state")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--db",
        default=env("TTCS_DB"),
        help="read the store instead of the broker (sqlite:PATH, postgresql://…; env TTCS_DB)",
    )
    p.set_defaults(func=cmd_fleet)

    p = sub.add_parser("watch", parents=[conn], help="print acks, events and playlogs")
    p.add_argument("--duration", type=float, default=0.0, help="stop after N seconds")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser(
        "collect", parents=[conn], help="collect what devices report: into --db, or --out FILE"
    )
    p.add_argument("--out", type=Path, help="JSON-lines file to append the playlogs to")
    p.add_argument(
        "--db",
        default=env("TTCS_DB"),
        help="the control plane's store (sqlite:PATH, postgresql://…; env TTCS_DB): states, "
        "statuses, acks, events and playlogs, as python -m controlplane.collect",
    )
    p.add_argument(
        "--group", default="ttcs-collectors", help="with --db: shared-subscription group"
    )
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after N seconds (default: at Ctrl-C)"
    )
    p.add_argument(
        "--client-id",
        default=COLLECTOR_ID,
        help="client id of the persistent session that keeps messages between runs",
    )
    p.set_defaults(func=_collect)

    p = sub.add_parser("report", help="plays per ward, device, bulletin and day, as CSV")
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="files written by collect")
    p.add_argument(
        "--db", help="read the control plane's store instead (sqlite:PATH, postgresql://…)"
    )
    p.add_argument(
        "--kind",
        choices=("plays", "summary", "outcomes"),
        default="plays",
        help="with --db: plays (the CSV of files), summary (per ward and day: hours on air, "
        "emergencies) or outcomes (entries by outcome and reason)",
    )
    p.add_argument("--since", type=date.fromisoformat, help="with --db: first local day")
    p.add_argument("--until", type=date.fromisoformat, help="with --db: last local day")
    p.add_argument("--out", type=Path, help="CSV file to write (default: stdout)")
    p.add_argument("--tz", default="Asia/Ho_Chi_Minh", help="time zone of the days")
    p.set_defaults(func=cmd_report)
    return parser


def _collect(args: argparse.Namespace) -> int:
    """``collect``: ``--out FILE`` appends playlogs to a file as before; else ``--db`` (or env
    ``TTCS_DB``) runs the database collector (controlplane/collect.py)."""
    if args.out is None and args.db:
        from controlplane.collect import main as collect_main

        return collect_main(
            ["--db", args.db, "--broker", args.broker, "--prefix", args.prefix]
            + ["--group", args.group, "--duration", str(args.duration)]
            + (["--client-id", args.client_id] if args.client_id != COLLECTOR_ID else [])
            + [f"--{k.replace('_', '-')}={v}" for k, v in _conn_files(args)]
        )
    if args.out is None:
        raise ControlError("give --out FILE (JSON lines) or --db URL")
    return cmd_collect(args)


def _conn_files(args: argparse.Namespace) -> list[tuple[str, object]]:
    names = ("ca_file", "cert_file", "key_file", "username")
    return [(n, getattr(args, n)) for n in names if getattr(args, n) is not None]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ControlError as exc:
        print(f"ttcs-control: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
