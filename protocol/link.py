"""The MQTT link: the only module that imports paho-mqtt.

One thread owns the paho client: it connects, runs the network loop and reconnects with
jittered exponential backoff. Callbacks only hand events to a ``LinkHandler``, which must not
block (the agent's director puts them on its queue). Publishing is safe from any thread.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)

# CONNACK codes with which a broker says it does not speak MQTT 5 (v5 code 132, v3 code 1).
_UNSUPPORTED_PROTOCOL = {132, 1}
# A connection must last this long before the reconnect backoff starts from the bottom again;
# otherwise a broker that accepts and then drops us (a duplicate client id) causes a storm.
_STABLE_S = 30.0

Token = tuple[int, int, int]  # (connection generation, message id, QoS) of an inbound message


class LinkError(Exception):
    """The link could not be set up (bad TLS files, for example)."""


@dataclass(frozen=True)
class Will:
    """A message the broker keeps (last will) or the link publishes on each connect (birth)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class LinkSettings:
    """Everything needed to reach the broker."""

    host: str
    port: int
    client_id: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    protocol: str = "auto"  # "auto" (5, falling back to 3.1.1), "5" or "3.1.1"
    keepalive_s: int = 60
    persistent: bool = True
    session_expiry_s: int = 7 * 86400
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    will: Will | None = None
    birth: Will | None = None
    subscriptions: Sequence[str] = field(default_factory=tuple)
    manual_ack: bool = False


class LinkHandler:
    """Receives link events. Every method runs on the network thread and must not block."""

    def link_up(self, session_present: bool) -> None:
        """Connected (and subscribed)."""

    def link_down(self, reason: str) -> None:
        """Disconnected; the link reconnects by itself."""

    def link_reset(self) -> None:
        """A new client replaced the old one: messages handed to the old one were dropped."""

    def message(self, topic: str, payload: bytes, token: Token | None, retained: bool) -> None:
        """A message arrived. With ``manual_ack``, pass ``token`` to ``MqttLink.ack`` when done."""

    def delivered(self, mid: int, ok: bool, detail: str) -> None:
        """The broker acknowledged publication ``mid`` (``ok`` False: it refused it)."""


def backoff_delays(minimum: float, maximum: float, rng: random.Random) -> Any:
    """Yield reconnect delays: exponential, capped, with full jitter over the upper half."""
    attempt = 0
    while True:
        ceiling = min(maximum, minimum * (2**attempt))
        yield rng.uniform(ceiling / 2, ceiling)
        attempt = min(attempt + 1, 32)


class MqttLink:
    """A standard MQTT client with its own reconnect loop."""

    def __init__(self, settings: LinkSettings, handler: LinkHandler) -> None:
        self.settings = settings
        self.handler = handler
        self._connects = 0
        self._connected = threading.Event()  # connected and subscribed
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._v5 = settings.protocol in ("auto", "5")
        self._refused_v5 = False
        self._session_present = False
        self._socket_error: str | None = None
        # Guards the connection generation against acks from the director thread: a PUBACK
        # queued while reconnect() is handshaking would go out before CONNECT (a protocol error),
        # and one for an older connection could acknowledge a different message.
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._handshaking = False
        self._connected_at: float | None = None
        self._client = self._make_client()

    # ------------------------------------------------------------------ public

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        """The link's thread is running (it reconnects by itself while it does)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def reconnects(self) -> int:
        return max(0, self._connects - 1)

    @property
    def protocol_name(self) -> str:
        return "5" if self._v5 else "3.1.1"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and the broker has answered the subscriptions."""
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Hand a message to the client; return its message id (0 for QoS 0)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise LinkError(f"publish to {topic} refused: {paho.error_string(info.rc)}")
        return int(info.mid)

    def ack(self, token: Token | None) -> None:
        """Acknowledge an inbound QoS 1 message after it has been handled durably.

        An ack for a connection that is gone is dropped: the broker redelivers the message and
        the seen-id store answers it as a duplicate.
        """
        if token is None or token[2] == 0:
            return
        generation, mid, qos = token
        with self._ack_lock:
            if self._handshaking or generation != self._generation:
                log.debug("PUBACK for message %d of an earlier connection dropped", mid)
                return
            self._client.ack(mid, qos)

    def stop(self, offline: Will | None = None, timeout: float = 5.0) -> None:
        """Publish ``offline`` (if connected), disconnect cleanly and end the thread."""
        # Stopping first: a SUBACK arriving now must not publish a birth after the offline state.
        self._stopping.set()
        if offline is not None and self._client.is_connected():
            info = self._client.publish(offline.topic, offline.payload, offline.qos, offline.retain)
            try:
                info.wait_for_publish(timeout=min(timeout, 3.0))
            except (RuntimeError, ValueError) as exc:
                log.warning("offline state not published: %s", exc)
        try:
            self._client.disconnect()
        except Exception:
            log.debug("disconnect failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("mqtt-link thread did not end within %.1f s", timeout)

    # ------------------------------------------------------------------ client

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._v5 else not s.persistent,
            manual_ack=s.manual_ack,
        )
        # The agent keeps its own outbox; paho's queue only holds what was handed to it.
        client.max_inflight_messages_set(64)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            try:
                client.tls_set(
                    ca_certs=str(s.ca_file) if s.ca_file else None,
                    certfile=str(s.cert_file) if s.cert_file else None,
                    keyfile=str(s.key_file) if s.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise LinkError(f"TLS setup failed: {exc}") from exc
        if s.will is not None:
            client.will_set(s.will.topic, s.will.payload, s.will.qos, s.will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_log = self._on_log
        client.on_socket_open = _no_delay
        # paho writes to the socket from whichever thread publishes, unless a loop thread of its
        # own or an external event loop is registered. Two threads writing (or one reading, one
        # writing) corrupt a TLS stream: the broker drops the client ("Protocol error") and a
        # SUBSCRIBE can be lost. With a write callback registered, paho only queues and wakes
        # our loop thread (through its socket pair), which then does all the writing.
        client.on_socket_register_write = _written_by_loop_thread
        return client

    def _connect_async(self) -> None:
        # Records where and how to connect; the loop thread's reconnect() does the connecting.
        s = self.settings
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if s.persistent:
                props.SessionExpiryInterval = s.session_expiry_s
            self._client.connect_async(
                s.host, s.port, s.keepalive_s, clean_start=not s.persistent, properties=props
            )
        else:
            self._client.connect_async(s.host, s.port, s.keepalive_s)

    def _run(self) -> None:
        rng = random.Random()
        delays = backoff_delays(self.settings.reconnect_min_s, self.settings.reconnect_max_s, rng)
        self._connect_async()
        while not self._stopping.is_set():
            try:
                self._session()
            except Exception:
                # Whatever went wrong (a callback, paho itself), the link must live on: a dead
                # link thread would leave a running agent that never reconnects.
                log.exception("MQTT link failed; starting a new client")
                with contextlib.suppress(Exception):
                    self._client.disconnect()
                self._client = self._make_client()
                self._connect_async()
                self.handler.link_reset()
            if self._stopping.is_set():
                break
            if self._refused_v5 and self.settings.protocol == "auto" and self._v5:
                log.warning("broker refused MQTT 5; falling back to MQTT 3.1.1")
                self._v5 = False
                self._client = self._make_client()
                self._connect_async()
                self.handler.link_reset()
                continue
            stable = self._connected_at and time.monotonic() - self._connected_at >= _STABLE_S
            if stable:
                # The connection worked for a while: start the backoff from the bottom again.
                delays = backoff_delays(
                    self.settings.reconnect_min_s, self.settings.reconnect_max_s, rng
                )
            self._stopping.wait(next(delays))

    def _session(self) -> None:
        """One connection: connect, run the network loop until it ends."""
        self._connected_at = None
        with self._ack_lock:
            self._handshaking = True
        try:
            self._client.reconnect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.info("broker %s:%d unreachable: %s", self.settings.host, self.settings.port, exc)
            return
        finally:
            with self._ack_lock:
                self._handshaking = False
        tick = min(1.0, self.settings.keepalive_s / 40)
        while not self._stopping.is_set():
            if self._client.loop(timeout=tick) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            if self._ping_overdue(self.settings.keepalive_s / 2 - 2 * tick):
                # paho waits a whole keepalive for the PINGRESP (2x keepalive in all); a
                # half-open link (3G gone, no FIN) is given up at 1.5x, as brokers do.
                log.warning("no answer to the keepalive ping: the connection is half-open")
                with contextlib.suppress(OSError, AttributeError):
                    self._client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        # Let the DISCONNECT that stop() queues go out; once written, paho closes the socket and
        # loop() stops returning success.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if self._client.loop(timeout=0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return

    def _ping_overdue(self, limit_s: float) -> bool:
        """Whether a PINGREQ has waited ``limit_s`` for its answer (paho's own bookkeeping:
        ``_ping_t`` is its monotonic time of the unanswered ping, 0 when none)."""
        ping_t = getattr(self._client, "_ping_t", 0)
        return (
            isinstance(ping_t, int | float) and ping_t > 0 and time.monotonic() - ping_t >= limit_s
        )

    # ------------------------------------------------------------------ callbacks

    def _on_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            code = int(reason.value)
            self._refused_v5 = self._v5 and code in _UNSUPPORTED_PROTOCOL
            log.warning("broker refused the connection: %s", reason)
            return
        self._connects += 1
        self._connected_at = time.monotonic()
        with self._ack_lock:
            self._generation += 1
        self._session_present = bool(getattr(flags, "session_present", False))
        s = self.settings
        if not s.subscriptions:
            self._ready(client)
        elif self._v5:
            # Retained programs are sent again only when a subscription is new.
            opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
            client.subscribe([(t, opts) for t in s.subscriptions])
        else:
            client.subscribe([(t, 1) for t in s.subscriptions])

    def _ready(self, client: paho.Client) -> None:
        # Online only once the subscriptions are granted: from the birth message on, a command
        # sent to this device is delivered to it.
        if self._stopping.is_set():
            return
        birth = self.settings.birth
        if birth is not None:
            client.publish(birth.topic, birth.payload, birth.qos, birth.retain)
        self._connected.set()
        self.handler.link_up(self._session_present)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        error, self._socket_error = self._socket_error, None
        if was:
            self.handler.link_down(str(reason))
        elif error and not self._stopping.is_set():
            # Dropped before the CONNACK, e.g. a TLS 1.3 server refusing the client certificate
            # after the handshake: without this line the link would retry in silence.
            log.warning(
                "broker %s:%d closed the connection before accepting it: %s",
                self.settings.host,
                self.settings.port,
                error,
            )

    def _on_log(self, _client: paho.Client, _userdata: Any, level: int, message: str) -> None:
        if level == paho.MQTT_LOG_ERR:
            self._socket_error = message

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        token = (self._generation, int(msg.mid), int(msg.qos)) if self.settings.manual_ack else None
        self.handler.message(msg.topic, bytes(msg.payload), token, bool(msg.retain))

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, reason: Any, _props: Any
    ) -> None:
        ok = not getattr(reason, "is_failure", False)
        self.handler.delivered(int(mid), ok, "" if ok else str(reason))

    def _on_subscribe(
        self, client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        refused = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.error("broker refused subscriptions (check its ACL): %s", ", ".join(refused))
        self._ready(client)


def _written_by_loop_thread(_client: paho.Client, _userdata: Any, _sock: Any) -> None:
    """Nothing to do: the link's own thread selects for writing whenever paho has output."""


def _no_delay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    # Acks and PUBACKs are tiny: with Nagle's algorithm on, an ack written right after a PUBACK
    # waits for the broker's delayed TCP ACK (~40 ms on Linux).
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
