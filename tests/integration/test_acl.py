"""config/mosquitto-acl-clientid.example on a real Mosquitto with passwords and
use_username_as_clientid: each device reads only its own and its groups' commands and writes
only its own reports; the collectors read those reports through shared subscriptions."""

from __future__ import annotations

import queue
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from controlplane.collect import subscriptions
from protocol.link import LinkHandler, LinkSettings, MqttLink
from tests.helpers import PREFIX, ROOT, Broker

ACL = ROOT / "config" / "mosquitto-acl-clientid.example"
USERS = ("q10-p12-bang-01", "q10-p12-loa-01", "ttcs-control", "ttcs-collector-1")
PASSWORD = "pw-for-tests"


class _Inbox(LinkHandler):
    def __init__(self) -> None:
        self.items: queue.Queue[str] = queue.Queue()

    def message(self, topic: str, payload: bytes, token: Any, retained: bool) -> None:
        self.items.put(topic)


@contextmanager
def client(
    broker: Broker, user: str, subs: list[str], client_id: str
) -> Iterator[tuple[MqttLink, _Inbox]]:
    inbox = _Inbox()
    link = MqttLink(
        LinkSettings(
            host="127.0.0.1",
            port=broker.port,
            client_id=client_id,
            username=user,
            password=PASSWORD,
            persistent=False,
            subscriptions=subs,
            reconnect_min_s=0.2,
            reconnect_max_s=1.0,
        ),
        inbox,
    )
    link.start()
    try:
        assert link.wait_connected(10), f"{user} could not connect"
        yield link, inbox
    finally:
        link.stop()


def received(inbox: _Inbox, until: str, timeout: float = 10) -> list[str]:
    """Topics received up to and including the topic ``until`` (a marker published last)."""
    seen: list[str] = []
    while until not in seen:
        seen.append(inbox.items.get(timeout=timeout))
    return seen


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Broker]:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    passwords = tmp_path / "passwd"
    for n, user in enumerate(USERS):
        args = [tool, "-b", *(["-c"] if n == 0 else []), str(passwords), user, PASSWORD]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
    extra = (
        f"allow_anonymous false\npassword_file {passwords}\nacl_file {ACL}\n"
        "use_username_as_clientid true\n"
    )
    broker = Broker(tmp_path / "broker", extra=extra).start()
    yield broker
    broker.stop()


def test_devices_and_collectors_see_only_what_the_acl_allows(secured: Broker) -> None:
    board, speaker = "q10-p12-bang-01", "q10-p12-loa-01"
    snoop = [f"{PREFIX}/dev/+/cmd", f"{PREFIX}/grp/+/cmd", f"{PREFIX}/dev/+/playlog"]
    with (
        # The client id asked for is ignored: the broker makes it the user name.
        client(secured, board, snoop, client_id="pretending-to-be-someone") as (dev, dev_inbox),
        client(secured, speaker, [f"{PREFIX}/dev/+/cmd"], client_id=speaker) as (_, speaker_inbox),
        client(secured, "ttcs-collector-1", subscriptions(PREFIX, "g"), "c1") as (_, collected),
        client(secured, "ttcs-control", [], "ops") as (ops, _),
    ):
        for topic in (
            f"{PREFIX}/dev/{speaker}/cmd",  # another device's: not readable by the board
            f"{PREFIX}/grp/q10-p13/cmd",  # a group it is not in
            f"{PREFIX}/grp/q10-p12/cmd",  # its ward
            f"{PREFIX}/dev/{board}/cmd",  # its own, published last
        ):
            ops.publish(topic, b"{}")
        assert received(dev_inbox, f"{PREFIX}/dev/{board}/cmd") == [
            f"{PREFIX}/grp/q10-p12/cmd",
            f"{PREFIX}/dev/{board}/cmd",
        ]
        assert received(speaker_inbox, f"{PREFIX}/dev/{speaker}/cmd") == [
            f"{PREFIX}/dev/{speaker}/cmd"
        ]

        # The board may not command the loudspeaker, nor report in its name.
        dev.publish(f"{PREFIX}/dev/{speaker}/cmd", b"{}")
        dev.publish(f"{PREFIX}/dev/{speaker}/playlog", b"{}")
        dev.publish(f"{PREFIX}/dev/{board}/playlog", b"{}")  # its own: allowed, published last
        assert received(collected, f"{PREFIX}/dev/{board}/playlog") == [
            f"{PREFIX}/dev/{board}/playlog"
        ]
        ops.publish(f"{PREFIX}/dev/{speaker}/cmd", b"{}")  # a marker for the loudspeaker
        assert received(speaker_inbox, f"{PREFIX}/dev/{speaker}/cmd") == [
            f"{PREFIX}/dev/{speaker}/cmd"
        ]
