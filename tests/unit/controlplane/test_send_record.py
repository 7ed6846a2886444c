"""Sent commands are kept in the store before they are published; a store that cannot take them
stops the send (nothing published)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane.cli import main
from controlplane.keys import SigningKey
from controlplane.store import Store
from tests.helpers import Broker, Listener, wait_for

DEV = "q10-p12-loa-01"


def test_a_sent_command_is_in_the_store_as_published(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> None:
    key = tmp_path / "control.key"
    signing_key.save(key)
    db = f"sqlite:{tmp_path / 'control.db'}"
    with Listener(broker, [f"ttcs/v1/dev/{DEV}/cmd"]) as listener:
        argv = ["send", f"dev:{DEV}", "volume.set", "--body", '{"percent": 40}', "--wait", "0"]
        assert main([*argv, "--broker", broker.url, "--key", str(key), "--db", db]) == 4
        wait_for(lambda: listener.drain(), 10, "the published command")
    published = json.loads(listener.received[0][1])
    with Store.open(db) as store, store.db.transaction() as tx:
        rows = tx.rows("SELECT id, type, target, topic, document FROM commands")
    assert [r[:4] for r in rows] == [
        (published["id"], "volume.set", f"dev:{DEV}", f"ttcs/v1/dev/{DEV}/cmd")
    ]
    assert json.loads(rows[0][4]) == published


def test_a_store_that_cannot_record_stops_the_send(
    tmp_path: Path, broker: Broker, signing_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "control.key"
    signing_key.save(key)
    with Listener(broker, [f"ttcs/v1/dev/{DEV}/cmd"]) as listener:
        argv = ["send", f"dev:{DEV}", "ping", "--wait", "0", "--db", "mysql://nowhere/x"]
        assert main([*argv, "--broker", broker.url, "--key", str(key)]) == 2
        assert "the store" in capsys.readouterr().err
        # A ping to the same topic afterwards arrives: the first one was never published.
        assert main(["send", f"dev:{DEV}", "ping", "--wait", "0", "--broker", broker.url,
                     "--key", str(key)]) == 4  # fmt: skip
        wait_for(lambda: listener.drain(), 10, "the later ping")
    assert len(listener.received) == 1
