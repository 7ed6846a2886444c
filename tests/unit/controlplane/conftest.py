"""Fixtures of the CAP intake tests: the documents of tests/data/cap and the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "cap"
# 13:05 in Hồ Chí Minh City, five minutes after the flood alert was sent.
NOW = datetime(2026, 11, 26, 6, 5, tzinfo=UTC)
KTTV = "canhbao@kttv.gov.vn"
Q10 = "pctt@quan10.hochiminhcity.gov.vn"


def cap_file(name: str) -> bytes:
    """A CAP document of tests/data/cap."""
    return (DATA / name).read_bytes()
