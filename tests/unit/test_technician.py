"""agent.technician: ``volume``, ``say`` and ``ask`` with the agent running (a real control
socket, answered by a director thread) and without it (the setting written where the agent
reads it; speech played on the configured output, a WAV capture here: no sound card needed).
"""

from __future__ import annotations

import socket
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.control_socket import AgentNotRunning, ControlServer
from agent.events import Request
from agent.stage import VOLUME_SETTING, saved_volume
from agent.store import Store
from agent.technician import ask, set_volume, speak
from tests.unit.fakes import DirectorThread, Signer, agent_config, answering, echo


def config_for(tmp_path: Path, **speaker: Any) -> AgentConfig:
    speaker = {"output": f"file:{tmp_path / 'capture.wav'}", **speaker}
    return agent_config(tmp_path, Signer(), speaker=speaker)


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    return config_for(tmp_path)


class Agent:
    """A running agent as the technician's commands see it: a real ControlServer on the
    configured socket, its requests answered on a director thread."""

    def __init__(self, config: AgentConfig, answer: Any = echo) -> None:
        self.director = DirectorThread(answering(answer))
        self.server = ControlServer(config.paths.socket_path, self.director.post)
        self.server.start()

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r.action, r.args) for r in self.director.posted if isinstance(r, Request)]

    def stop(self) -> None:
        self.server.stop()
        self.director.stop()


@pytest.fixture
def running(config: AgentConfig) -> Iterator[Agent]:
    agent = Agent(config)
    yield agent
    agent.stop()


def stored_volume(config: AgentConfig) -> int:
    store = Store(config.paths.state_dir / "agent.db")
    try:
        return saved_volume(store, config.speaker.default_volume)
    finally:
        store.close()


# --------------------------------------------------------------------------- volume


def test_volume_without_the_agent_is_saved_for_its_next_start(config: AgentConfig) -> None:
    assert not config.paths.socket_path.exists()
    message = set_volume(config, 45)
    assert message == "volume 45% (the agent is not running: applied at its next start)"
    store = Store(config.paths.state_dir / "agent.db")
    try:
        assert store.get_setting(VOLUME_SETTING) == "45"
    finally:
        store.close()
    assert stored_volume(config) == 45  # what the agent's speaker opens with


def test_volume_with_a_stale_socket_is_saved_too(config: AgentConfig) -> None:
    path = config.paths.socket_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening: an agent that died
    set_volume(config, 20)
    assert stored_volume(config) == 20


def test_volume_with_the_agent_running_goes_through_its_socket(
    config: AgentConfig, running: Agent
) -> None:
    assert set_volume(config, 55) == "volume 55% (applied now)"
    assert running.requests() == [("volume", {"percent": 55})]
    # The agent saves it itself: nothing is written behind its back.
    assert not (config.paths.state_dir / "agent.db").exists()


def test_a_refused_volume_raises_and_writes_nothing(config: AgentConfig) -> None:
    agent = Agent(config, lambda req: {"ok": False, "error": "percent: 0 to 100"})
    try:
        with pytest.raises(AgentNotRunning, match=r"the agent refused: percent: 0 to 100"):
            set_volume(config, 55)
    finally:
        agent.stop()
    assert not (config.paths.state_dir / "agent.db").exists()


# --------------------------------------------------------------------------- ask


def test_ask_returns_the_agents_answer(config: AgentConfig, running: Agent) -> None:
    answer = ask(config, "status", verbose=True)
    assert answer == {"ok": True, "action": "status", "args": {"verbose": True}}


def test_ask_raises_with_the_agents_refusal(config: AgentConfig) -> None:
    agent = Agent(config, lambda req: {"ok": False, "error": f"unknown action {req.action!r}"})
    try:
        with pytest.raises(AgentNotRunning) as raised:
            ask(config, "dance")
    finally:
        agent.stop()
    assert str(raised.value) == "the agent refused: unknown action 'dance'"
    assert agent.requests() == [("dance", {})]


def test_ask_without_the_agent_says_it_is_not_running(config: AgentConfig) -> None:
    with pytest.raises(AgentNotRunning, match="the agent is not running"):
        ask(config, "status")


# --------------------------------------------------------------------------- say


def test_say_with_the_agent_running_is_played_by_the_agent(config: AgentConfig) -> None:
    agent = Agent(config, lambda req: {"ok": True, "detail": "spoken by the agent"})
    try:
        assert speak(config, "Thử loa.", "vi-south", chime=True) == "spoken by the agent"
    finally:
        agent.stop()
    assert agent.requests() == [("say", {"text": "Thử loa.", "voice": "vi-south", "chime": True})]
    assert not (config.paths.state_dir.parent / "capture.wav").exists()  # not played here


def test_say_refused_by_busy_loudspeakers_is_not_played_here(config: AgentConfig) -> None:
    busy = "the loudspeakers are playing tb-2026-1126-01"
    agent = Agent(config, lambda req: {"ok": False, "error": busy})
    try:
        with pytest.raises(AgentNotRunning, match=busy):
            speak(config, "Thử loa.", None)
    finally:
        agent.stop()
    assert not (config.paths.state_dir.parent / "capture.wav").exists()


def test_say_without_the_agent_plays_on_the_configured_output(tmp_path: Path) -> None:
    config = config_for(tmp_path, amplifier_warmup_s=0.0, amplifier_hold_s=0.0)
    set_volume(config, 40)  # saved: the speaker opens at this volume
    message = speak(config, "Một, hai.", None)
    capture = tmp_path / "capture.wav"
    assert message.startswith("spoken in ")
    # No Piper voice is configured: espeak-ng speaks, and the message says so.
    assert "at volume 40% (tts_fallback: " in message
    assert message.endswith(f", on file:{capture}")
    with wave.open(str(capture), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        frames = wav.readframes(wav.getnframes())
    assert wav.getnframes() > 22050 // 4  # a quarter of a second of speech at least
    assert any(frames[i : i + 2] != b"\x00\x00" for i in range(0, len(frames), 2))
