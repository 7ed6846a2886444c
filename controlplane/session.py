"""A short-lived MQTT session of the operators' commands, on the shared ``protocol.link``."""

from __future__ import annotations

import argparse
import json
import os
import queue
import uuid
from typing import Any

from pydantic import ValidationError

from controlplane.errors import ControlError
from protocol.broker import MqttConfig
from protocol.link import LinkHandler, LinkSettings, MqttLink, Token


def json_object(payload: bytes) -> dict[str, Any] | None:
    """A received payload as a JSON object, or None when it is not one."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class _Collector(LinkHandler):
    def __init__(self, keep_tokens: bool = False) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        # With manual acks, messages go here instead, with the token to acknowledge them by.
        self.inbound: queue.Queue[tuple[str, bytes, Token | None]] = queue.Queue()
        self._keep_tokens = keep_tokens

    def message(self, topic: str, payload: bytes, token: Any, retained: bool) -> None:
        if self._keep_tokens:
            self.inbound.put((topic, payload, token))
        else:
            self.messages.put((topic, payload))


def broker_link(args: argparse.Namespace, client_id: str, **link: Any) -> LinkSettings:
    """Link settings from the broker options every command takes (``--broker``, the TLS files,
    ``--username``, ``--prefix``; the password from ``TTCS_PASSWORD``) and ``link``'s own."""
    try:
        mqtt = MqttConfig(
            url=args.broker,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            username=args.username,
            topic_prefix=args.prefix,
        )
    except ValidationError as exc:
        raise ControlError(f"bad broker settings: {exc.errors()[0]['msg']}") from None
    return LinkSettings(
        host=mqtt.host,
        port=mqtt.port,
        client_id=client_id,
        tls=mqtt.tls,
        ca_file=mqtt.ca_file,
        cert_file=mqtt.cert_file,
        key_file=mqtt.key_file,
        username=args.username,
        password=os.environ.get("TTCS_PASSWORD"),
        **link,
    )


class Session:
    """A short-lived MQTT session of the control plane.

    By default a clean session with a random client id. ``collect`` uses a persistent one
    (fixed ``client_id``, ``persistent``) with ``manual_ack``: messages then arrive on
    ``next_inbound`` with a token for ``link.ack``, to be acknowledged once written to disk.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        subscriptions: list[str],
        *,
        client_id: str | None = None,
        persistent: bool = False,
        manual_ack: bool = False,
    ) -> None:
        self.collector = _Collector(keep_tokens=manual_ack)
        settings = broker_link(
            args,
            client_id or f"ttcs-control-{uuid.uuid4().hex[:12]}",
            persistent=persistent,
            subscriptions=subscriptions,
            reconnect_max_s=5.0,
            manual_ack=manual_ack,
        )
        self.link = MqttLink(settings, self.collector)

    def __enter__(self) -> Session:
        self.link.start()
        if not self.link.wait_connected(10.0):
            self.link.stop()
            raise ControlError(
                f"cannot reach the broker at {self.link.settings.host}:{self.link.settings.port}"
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        self.link.stop()

    def next(self, timeout: float) -> tuple[str, bytes] | None:
        try:
            return self.collector.messages.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def next_inbound(self, timeout: float) -> tuple[str, bytes, Token | None] | None:
        try:
            return self.collector.inbound.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
