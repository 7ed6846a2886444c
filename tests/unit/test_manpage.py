"""The man page (docs/ttcs-agent.1, installed by the Debian package) names every command."""

from __future__ import annotations

import argparse
import re

from agent.cli import _parser
from tests.helpers import ROOT


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every command line that selects an action, e.g. 'status', 'cache verify'."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix}{name} ")
                found.extend(nested or [f"{prefix}{name}"])
    return found


def test_every_command_is_in_the_man_page() -> None:
    page = (ROOT / "docs" / "ttcs-agent.1").read_text()
    # The tags of the page's .TP paragraphs, without roff's macros, font escapes and quotes;
    # one tag may list several commands ("cache ls [--json], cache verify …").
    tags = re.findall(r"^\.TP\n(.+)$", page, re.MULTILINE)
    clean = (re.sub(r"^\.B[RI]? |\\f[BIR]|\\|\"", "", tag) for tag in tags)
    documented = [item.strip() for tag in clean for item in tag.split(", ")]
    commands = _commands(_parser())
    assert "cache verify" in commands and "run" in commands
    missing = [c for c in commands if not any(re.match(rf"{c}( |$)", d) for d in documented)]
    assert missing == [], f"add these to docs/ttcs-agent.1: {missing}"
