"""The server side stands on the shared protocol layer alone: no module of ``controlplane``
imports the device daemon (``agent``) or the players (``player``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "controlplane"
DEVICE_SIDE = ("agent", "player")


def imported(path: Path) -> set[str]:
    """The top-level package of every module that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_control_plane_module_imports_the_device_side(path: Path) -> None:
    assert not imported(path) & set(DEVICE_SIDE)


def test_the_check_sees_an_import_of_the_device_side(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import json\nfrom agent.verify import Verifier\n", encoding="utf-8")
    assert imported(module) & set(DEVICE_SIDE) == {"agent"}
