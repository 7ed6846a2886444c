"""The loudspeakers in real agents: a synchronized play_at across two devices, the technician's
``say`` and ``volume``, and the playlog's start error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane.keys import SigningKey
from player.speaker import rms, wav_pcm
from protocol import format_time
from tests.helpers import (
    PREFIX,
    AgentProcess,
    Broker,
    Device,
    Listener,
    agent_cli,
    command,
    provision,
    wait_for,
)

GROUP = "q10-p12"
TICK_S = 10  # the playlog is flushed every 10 s


def capture_of(device: Device) -> Path:
    return device.state_dir.parent.parent / f"{device.device_id}.wav"


def speaker_device(tmp: Path, broker: Broker, key: SigningKey, name: str) -> Device:
    capture = tmp / f"{name}.wav"
    return provision(
        tmp,
        broker,
        key,
        device_id=name,
        groups=(GROUP,),
        speaker=f'enabled = true\noutput = "file:{capture}"\namplifier_warmup_s = 0.0',
    )


@pytest.fixture
def street(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> Iterator[list[tuple[Device, AgentProcess]]]:
    devices = [speaker_device(tmp_path, broker, signing_key, f"q10-p12-loa-0{i}") for i in (1, 2)]
    agents = [AgentProcess(d).start(wait_online=True) for d in devices]
    yield list(zip(devices, agents, strict=True))
    for agent in agents:
        agent.stop()


def test_two_agents_start_a_play_at_together(
    street: list[tuple[Device, AgentProcess]], broker: Broker, signing_key: SigningKey
) -> None:
    play_at = datetime.now(UTC) + timedelta(seconds=6)
    body = {
        "bulletin": {
            "id": "bao-dong",
            "title": "Thông báo chung",
            "speaker": {
                "kind": "tts",
                "text": "Thông báo của phường. Một, hai, ba.",
                "chime": True,
            },
        },
        "play_at": format_time(play_at),
    }
    with Listener(broker, [f"{PREFIX}/dev/+/playlog", f"{PREFIX}/dev/+/ack"]) as listener:
        topic, payload, _ = command(signing_key, "play.now", target=f"grp:{GROUP}", body=body)
        listener.publish(topic, payload)

        def entries() -> dict[str, dict[str, object]]:
            found = {}
            for msg in listener.json_on("/playlog"):
                for entry in msg["entries"]:
                    if entry["bulletin"] == "bao-dong" and entry["channel"] == "speaker":
                        found[msg["device"]] = entry
            return found

        found = wait_for(lambda: len(entries()) == 2 and entries(), 40 + TICK_S, "both playlogs")
    errors = {device: int(entry["start_error_ms"]) for device, entry in found.items()}
    # Each started within a few milliseconds of play_at (so within a few of each other).
    print("start errors (ms):", errors)
    assert all(abs(e) <= 50 for e in errors.values()), errors
    for device, _ in street:
        assert found[device.device_id]["outcome"] == "completed"
        assert rms(wav_pcm(capture_of(device))) > 300


def test_say_and_volume_through_the_running_agent(
    street: list[tuple[Device, AgentProcess]],
) -> None:
    device, _ = street[0]
    args = ("--config", str(device.config))
    capture = capture_of(device)

    def say_at(volume: int) -> bytes:
        out = agent_cli("volume", str(volume), *args)
        assert out.returncode == 0, out.stderr
        assert json.loads(agent_cli("status", "--json", *args).stdout)["volume"] == volume
        before = len(wav_pcm(capture)) if capture.exists() else 0
        out = agent_cli("say", "Thử loa, một hai ba.", *args)
        assert out.returncode == 0, out.stderr

        def settled() -> int | None:
            size = len(wav_pcm(capture)) if capture.exists() else 0
            time.sleep(0.5)
            grown = len(wav_pcm(capture))
            return grown if grown == size > before + 22050 else None

        wait_for(settled, 20, "the speech to end")
        return wav_pcm(capture)[before:]

    loud, quiet = say_at(100), say_at(40)
    assert rms(loud) > 1000
    assert rms(quiet) / rms(loud) == pytest.approx(0.16, rel=0.1)


def test_say_without_a_running_agent(
    tmp_path: Path, broker: Broker, signing_key: SigningKey
) -> None:
    device = speaker_device(tmp_path, broker, signing_key, "q10-p12-loa-09")
    out = agent_cli("test-speaker", "--config", str(device.config), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "spoken in" in out.stdout
    assert rms(wav_pcm(tmp_path / "q10-p12-loa-09.wav")) > 300


def test_stream_start_relays_to_the_loudspeakers_until_stream_stop(
    street: list[tuple[Device, AgentProcess]], broker: Broker, signing_key: SigningKey
) -> None:
    from tests.integration.test_vlcaudio import ToneStation

    device, _ = street[0]
    capture = capture_of(device)
    station = ToneStation().start()
    target = f"dev:{device.device_id}"
    try:
        with Listener(broker, [f"{PREFIX}/dev/{device.device_id}/ack"]) as listener:
            body = {"url": station.url, "channels": ["speaker"]}
            topic, payload, doc = command(signing_key, "stream.start", target=target, body=body)
            listener.publish(topic, payload)
            ack = listener.wait_ack(doc["id"], "done", timeout=15)
            assert ack["detail"] == f"relaying {station.url}"
            wait_for(lambda: capture.exists() and len(wav_pcm(capture)) > 2 * 44100, 20, "relay")

            screen_only = {"url": station.url, "channels": ["screen"]}
            topic, payload, doc = command(
                signing_key, "stream.start", target=target, body=screen_only
            )
            listener.publish(topic, payload)
            assert listener.wait_ack(doc["id"], "failed", timeout=15)["reason"] == "not_supported"

            topic, payload, doc = command(signing_key, "stream.stop", target=target)
            listener.publish(topic, payload)
            listener.wait_ack(doc["id"], "done", timeout=15)
            time.sleep(1.0)
            size = len(wav_pcm(capture))
            time.sleep(1.5)
            assert len(wav_pcm(capture)) == size  # silent: the relay has stopped
    finally:
        station.stop()
