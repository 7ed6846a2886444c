"""``ttcs-release``: make release slots, pack them as signed artifacts, make release keys.

Three sources of a slot:

- ``--from-deb FILE.deb``: the slot inside a package built by ``make deb`` (a virtual
  environment made for ``/opt/ttcs-agent/releases/VERSION``; devices keep ``[update] root``
  at its default then);
- ``--from-slot DIR``: a release slot as the package build stages it (``…/releases/V``);
- ``--from-tree``: the packages of this checkout (agent, player, protocol) with a
  ``bin/ttcs-agent`` that runs them on an interpreter already holding the dependencies
  (``--python``; developers and tests).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from controlplane.errors import ControlError
from controlplane.keys import SigningKey
from protocol.release import Manifest, ReleaseError, pack_slot, read_manifest, resign, version_key

TREE_PACKAGES = ("agent", "player", "protocol")
LAUNCHER = '''#!{python}
"""ttcs-agent {version}: the agent of this release slot, on {python}."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))
from agent.cli import main  # noqa: E402

sys.exit(main())
'''


def tree_slot(tree: Path, dest: Path, version: str, python: Path) -> Path:
    """Make a slot at ``dest`` from the checkout ``tree``, as version ``version``."""
    version_key(version)
    for name in TREE_PACKAGES:
        shutil.copytree(
            tree / name, dest / "lib" / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    init = dest / "lib" / "agent" / "__init__.py"
    text, count = re.subn(
        r'(?m)^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text()
    )
    if count != 1:
        raise ControlError(f"{init}: no __version__ line to set")
    init.write_text(text)
    launcher = dest / "bin" / "ttcs-agent"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(LAUNCHER.format(python=python, version=version))
    launcher.chmod(0o755)
    return dest


def deb_slot(deb: Path, scratch: Path) -> tuple[Path, str]:
    """Unpack ``deb`` into ``scratch``; return its release slot and version."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True)  # noqa: S607
    slots = [p for p in (scratch / "opt/ttcs-agent/releases").iterdir() if p.is_dir()]
    if len(slots) != 1:
        raise ControlError(f"{deb}: expected one release slot, found {len(slots)}")
    return slots[0], slots[0].name


def build(args: argparse.Namespace) -> Manifest:
    key = SigningKey.load(args.key)
    out: Path = args.out
    with tempfile.TemporaryDirectory(prefix="ttcs-release-") as tmp:
        if args.from_deb:
            slot, version = deb_slot(args.from_deb, Path(tmp))
        elif args.from_slot:
            slot, version = args.from_slot, args.from_slot.name
        else:
            version = args.version or _tree_version(args.tree)
            slot = tree_slot(args.tree, Path(tmp) / version, version, args.python)
        if args.version and args.version != version:
            raise ControlError(f"the slot is version {version}, not {args.version}")
        out = out or Path(f"ttcs-agent-{version}.release")
        return pack_slot(slot, version, out, key.key, key.kid)


def _tree_version(tree: Path) -> str:
    found = re.search(r'(?m)^__version__ = "(.*)"$', (tree / "agent/__init__.py").read_text())
    if found is None:
        raise ControlError("agent/__init__.py has no __version__")
    return found.group(1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttcs-release", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    keygen = sub.add_parser("keygen", help="make a release key (a JSON file, mode 0600)")
    keygen.add_argument("--kid", required=True, help="key id, e.g. rel-2026")
    keygen.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("build", help="make a slot and pack it as a signed artifact")
    source = b.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-deb", type=Path, metavar="FILE.deb")
    source.add_argument("--from-slot", type=Path, metavar="DIR")
    source.add_argument("--from-tree", action="store_true")
    b.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    b.add_argument("--python", type=Path, default=Path(sys.executable), help="for --from-tree")
    b.add_argument("--version", help="the release's version (default: the slot's)")
    b.add_argument("--key", type=Path, required=True, help="release key file (keygen)")
    b.add_argument("--out", type=Path, help="default: ttcs-agent-VERSION.release")
    s = sub.add_parser("sign", help="sign an artifact (again) with a release key")
    s.add_argument("artifact", type=Path)
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--out", type=Path, help="default: in place")
    show = sub.add_parser("show", help="print an artifact's manifest (not verified)")
    show.add_argument("artifact", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "keygen":
            key = SigningKey.generate(args.kid)
            key.save(args.out)
            print(f'[update.release_keys]\n{key.kid} = "{key.public_b64}"')
            return 0
        if args.action == "show":
            print(json.dumps(read_manifest(args.artifact), indent=2, ensure_ascii=False))
            return 0
        if args.action == "sign":
            key = SigningKey.load(args.key)
            manifest = resign(args.artifact, args.out or args.artifact, key.key, key.kid)
        else:
            manifest = build(args)
    except (ControlError, ReleaseError, OSError, subprocess.CalledProcessError) as exc:
        print(f"ttcs-release: {exc}", file=sys.stderr)
        return 1
    out = args.out or (args.artifact if args.action == "sign" else None)
    path = Path(out or f"ttcs-agent-{manifest.version}.release")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"{path}: version {manifest.version}, signed by {manifest.kid}")
    print(f"sha256 {digest}  size {path.stat().st_size}")
    return 0
