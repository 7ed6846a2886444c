"""The layers run one way: ``protocol`` imports none of the packages above it, the players
never import the agent or the control plane, and the control plane never imports the device
side (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "protocol": {"agent", "player", "controlplane"},
    "player": {"agent", "controlplane"},
    "controlplane": {"agent", "player"},
}
MODULES = [
    (package, path) for package in FORBIDDEN for path in sorted((ROOT / package).rglob("*.py"))
]


def imported(path: Path) -> set[str]:
    """The top-level package of every module that ``path`` imports (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "path"), MODULES, ids=[str(p.relative_to(ROOT)) for _, p in MODULES]
)
def test_no_module_imports_a_layer_above_its_own(package: str, path: Path) -> None:
    assert not imported(path) & FORBIDDEN[package]


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import json\ndef f():\n    from agent.verify import Verifier\n")
    assert imported(module) & FORBIDDEN["player"] == {"agent"}
