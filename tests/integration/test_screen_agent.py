"""The real screen in a real agent: screenshots over MQTT and locally, power, the test card.

The agent runs pygame with SDL's dummy video driver (``[screen] driver = "headless"``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pygame
import pytest

from controlplane.keys import SigningKey
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

W, H = 640, 360
HEADER_ROWS = 40  # the header (with its clock) is at most this tall at 640x360
SCREEN = f'enabled = true\ndriver = "headless"\nwidth = {W}\nheight = {H}\nward_name = "Phường 12"'
NOTICE = {
    "bulletin": {
        "id": "tiem-chung",
        "title": "Thông báo lịch tiêm chủng",
        "screen": {
            "kind": "text",
            "text": "Trạm Y tế phường tiêm chủng cho trẻ dưới 5 tuổi sáng thứ Bảy.",
            "duration_ms": 600000,
        },
    }
}


@pytest.fixture
def screen_device(tmp_path: Path, broker: Broker, signing_key: SigningKey) -> Device:
    hook = tmp_path / "hook"
    hook.mkdir()
    return provision(
        tmp_path,
        broker,
        signing_key,
        screen=f'{SCREEN}\npower_on = ["touch", "{hook}/on"]\npower_off = ["touch", "{hook}/off"]',
    )


@pytest.fixture
def screen_agent(screen_device: Device) -> Iterator[AgentProcess]:
    proc = AgentProcess(screen_device).start(wait_online=True)
    yield proc
    proc.stop()


def rgb(surface: pygame.Surface, pos: tuple[int, int]) -> tuple[int, int, int]:
    r, g, b, _ = surface.get_at(pos)
    return (r, g, b)


def _image(png: bytes) -> pygame.Surface:
    return pygame.image.load(io.BytesIO(png), "shot.png")


def _status(device: Device) -> dict[str, object]:
    out = agent_cli("status", "--json", "--config", str(device.config))
    assert out.returncode == 0, out.stderr
    status: dict[str, object] = json.loads(out.stdout)
    return status


def _play_notice(listener: Listener, key: SigningKey, device: Device) -> None:
    topic, payload, doc = command(key, "play.now", body=NOTICE)
    listener.publish(topic, payload)
    listener.wait_ack(doc["id"], "done", timeout=15)
    wait_for(
        lambda: _status(device)["now"] == {"screen": "tiem-chung", "speaker": None},
        15,
        "the notice on screen",
    )


def _same_below_header(a: pygame.Surface, b: pygame.Surface) -> float:
    """The share of pixels below the header (the clock ticks) that differ."""
    w, h = a.get_size()
    region = pygame.Rect(0, HEADER_ROWS, w, h - HEADER_ROWS)
    pa = pygame.image.tobytes(a.subsurface(region), "RGB")
    pb = pygame.image.tobytes(b.subsurface(region), "RGB")
    differ = sum(1 for i in range(0, len(pa), 3) if pa[i : i + 3] != pb[i : i + 3])
    return differ / (len(pa) // 3)


def test_screenshot_over_mqtt_matches_the_local_frame(
    screen_agent: AgentProcess, screen_device: Device, broker: Broker, signing_key: SigningKey
) -> None:
    dev = screen_device.device_id
    with Listener(
        broker, [f"{PREFIX}/dev/{dev}/ack", f"{PREFIX}/dev/{dev}/screenshot/#"]
    ) as listener:
        _play_notice(listener, signing_key, screen_device)
        topic, payload, doc = command(signing_key, "screenshot", body={})
        listener.publish(topic, payload)
        listener.wait_ack(doc["id"], "done", timeout=15)
        shot_topic = f"{PREFIX}/dev/{dev}/screenshot/{doc['id']}"
        remote = wait_for(
            lambda: next((p for t, p, _ in listener.drain() if t == shot_topic), None),
            10,
            "the screenshot",
        )
        local_file = screen_device.state_dir.parent / "local.png"
        out = agent_cli("screenshot", str(local_file), "--config", str(screen_device.config))
        assert out.returncode == 0, out.stderr
        assert f"{W}x{H} PNG" in out.stdout

        # A smaller one, scaled to max_width.
        topic, payload, small_doc = command(signing_key, "screenshot", body={"max_width": 320})
        listener.publish(topic, payload)
        listener.wait_ack(small_doc["id"], "done", timeout=15)
        small_topic = f"{PREFIX}/dev/{dev}/screenshot/{small_doc['id']}"
        small = wait_for(
            lambda: next((p for t, p, _ in listener.drain() if t == small_topic), None),
            10,
            "the small screenshot",
        )

    remote_image, local_image = _image(remote), _image(local_file.read_bytes())
    assert remote_image.get_size() == (W, H)
    assert _image(small).get_size() == (320, 180)
    # The same frame: only the header's clock may have ticked in between.
    assert _same_below_header(remote_image, local_image) == 0.0
    # And it is the notice: the main zone is inked, not a blank or black frame.
    main = pygame.image.tobytes(remote_image.subsurface((0, 60, W, 200)), "RGB")
    background = bytes(rgb(remote_image, (W - 2, H // 2)))
    inked = sum(1 for i in range(0, len(main), 3) if main[i : i + 3] != background)
    assert inked > 0.02 * len(main) // 3


def test_power_set_runs_the_hook_blanks_the_frame_and_is_reported(
    screen_agent: AgentProcess, screen_device: Device, broker: Broker, signing_key: SigningKey
) -> None:
    hook = screen_device.state_dir.parent.parent / "hook"
    dev = screen_device.device_id
    with Listener(broker, [f"{PREFIX}/dev/{dev}/ack"]) as listener:
        _play_notice(listener, signing_key, screen_device)
        topic, payload, doc = command(signing_key, "power.set", body={"screen": "off"})
        listener.publish(topic, payload)
        ack = listener.wait_ack(doc["id"], "done", timeout=15)
        assert ack["detail"] == "screen off"
        wait_for(lambda: (hook / "off").exists(), 10, "the power-off hook")
        status = _status(screen_device)
        assert status["power"] == {"screen": "off", "screen_mode": "off", "amplifier_mode": "auto"}
        assert status["now"] == {"screen": None, "speaker": None}  # off proves no play

        def black() -> bool:
            out = agent_cli(
                "screenshot", str(hook / "off.png"), "--config", str(screen_device.config)
            )
            assert out.returncode == 0, out.stderr
            image = _image((hook / "off.png").read_bytes())
            return tuple(pygame.transform.average_color(image))[:3] == (0, 0, 0)

        wait_for(black, 10, "a black frame")

        topic, payload, doc = command(signing_key, "power.set", body={"screen": "auto"})
        listener.publish(topic, payload)
        listener.wait_ack(doc["id"], "done", timeout=15)
        wait_for(lambda: (hook / "on").exists(), 10, "the power-on hook")
        wait_for(
            lambda: _status(screen_device)["now"] == {"screen": "tiem-chung", "speaker": None},
            10,
            "the notice back on screen",
        )


def test_screenshot_without_a_screen_fails_with_a_reason(
    agent: AgentProcess, device: Device, broker: Broker, signing_key: SigningKey
) -> None:
    with Listener(broker, [f"{PREFIX}/dev/{device.device_id}/ack"]) as listener:
        topic, payload, doc = command(signing_key, "screenshot", body={"max_width": 320})
        listener.publish(topic, payload)
        ack = listener.wait_ack(doc["id"], "failed", timeout=15)
    assert ack["reason"] == "no_screen"


def test_test_screen_on_the_running_agent_and_without_one(
    screen_agent: AgentProcess, screen_device: Device, tmp_path: Path
) -> None:
    card = tmp_path / "card.png"
    args = ("--config", str(screen_device.config))
    out = agent_cli("test-screen", "--seconds", "2", "--out", str(card), *args)
    assert out.returncode == 0, out.stderr
    assert f"frame     {W}x{H}" in out.stdout
    assert "frame rate" in out.stdout
    image = _image(card.read_bytes())
    assert rgb(image, (2, 2)) == (255, 255, 255)  # the first colour bar
    assert rgb(image, (W - 3, 2)) == (0, 0, 0)  # the last

    screen_agent.stop()
    alone = tmp_path / "alone.png"
    out = agent_cli("test-screen", "--seconds", "1", "--out", str(alone), *args)
    assert out.returncode == 0, out.stderr
    assert _image(alone.read_bytes()).get_size() == (W, H)
