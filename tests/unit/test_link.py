"""The MQTT link's own logic, on a real (unconnected) paho client."""

from __future__ import annotations

import random

from protocol.link import LinkHandler, LinkSettings, MqttLink, backoff_delays


def _link() -> MqttLink:
    return MqttLink(
        LinkSettings(host="127.0.0.1", port=1, client_id="q10-p12-bang-01", manual_ack=True),
        LinkHandler(),
    )


def _queued(link: MqttLink) -> int:
    return len(link._client._out_packet)


def test_puback_for_the_current_connection_is_queued() -> None:
    link = _link()
    link._generation = 3
    link.ack((3, 17, 1))
    assert _queued(link) == 1


def test_puback_for_an_earlier_connection_or_during_a_handshake_is_dropped() -> None:
    link = _link()
    link._generation = 3
    link.ack((2, 17, 1))  # the broker will redeliver; the seen-id store answers "duplicate"
    link._handshaking = True
    link.ack((3, 18, 1))  # would go out before CONNECT
    link.ack((3, 19, 0))  # QoS 0 has no PUBACK
    assert _queued(link) == 0


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    delays = backoff_delays(1.0, 60.0, random.Random(7))
    values = [next(delays) for _ in range(12)]
    assert 0.5 <= values[0] <= 1.0
    assert all(30.0 <= v <= 60.0 for v in values[7:])
    assert len(set(values)) == len(values)  # jittered: no two alike
