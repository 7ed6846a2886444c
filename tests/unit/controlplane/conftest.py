"""Fixtures of the control plane's tests: a store on each back end (SQLite, PostgreSQL) for every
test that asks for ``store``; for the CAP intake, the test area map, trusted senders, a ledger,
the clock."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controlplane.cap import CapSettings, Ledger, SenderPolicy, load_areas
from controlplane.store import Store
from protocol import Media

DATA = Path(__file__).resolve().parents[2] / "data" / "cap"
# 13:05 in Hồ Chí Minh City, five minutes after the flood alert was sent.
NOW = datetime(2026, 11, 26, 6, 5, tzinfo=UTC)
KTTV = "canhbao@kttv.gov.vn"
Q10 = "pctt@quan10.hochiminhcity.gov.vn"


def cap_file(name: str) -> bytes:
    """A CAP document of tests/data/cap."""
    return (DATA / name).read_bytes()


def make_settings(**changes: object) -> CapSettings:
    """The test settings: both senders trusted without signatures, the test area map."""
    base: dict[str, object] = {
        "senders": (SenderPolicy(sender=KTTV), SenderPolicy(sender=Q10)),
        "areas": load_areas(DATA / "areas.toml"),
        "repeat_every_s": 600,
    }
    return CapSettings.model_validate({**base, **changes})


@pytest.fixture
def settings() -> CapSettings:
    return make_settings()


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger.open(":memory:") as store:
        yield store


class MediaShelf:
    """An honest ``publish_media``: keeps each file by its sha256, as a media server would."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def __call__(self, data: bytes, mime: str) -> Media:
        digest = hashlib.sha256(data).hexdigest()
        self.files[digest] = data
        return Media(
            url=f"https://media.q10.example.vn/{digest}", sha256=digest, size=len(data), mime=mime
        )


@pytest.fixture
def shelf() -> MediaShelf:
    return MediaShelf()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened
