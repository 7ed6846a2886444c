"""A store on each back end (SQLite, PostgreSQL) for every test that asks for ``store``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane.store import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened
