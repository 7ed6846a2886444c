"""The technician's loudspeaker commands: ``say``, ``test-speaker``, ``volume``.

With the agent running they go through its control socket (the agent owns the sound card); with
no agent running, ``say`` and ``test-speaker`` open the output themselves, and ``volume`` is
written where the agent reads it at its next start.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agent.config import AgentConfig
from agent.control_socket import AgentNotRunning, request
from agent.stage import VOLUME_SETTING, saved_volume, say_bulletin
from agent.store import Store
from player.base import PlayEnded, PlayStarted
from protocol import Outcome

SAMPLE = (
    "Đây là thử loa của Ủy ban nhân dân phường. Một, hai, ba, bốn, năm. Bà con nghe rõ không ạ?"
)


def ask(config: AgentConfig, action: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
    """A control request to the running agent (AgentNotRunning when there is none)."""
    answer = request(config.paths.socket_path, action, timeout=timeout, **args)
    if not answer.get("ok"):
        raise AgentNotRunning(f"the agent refused: {answer.get('error')}")
    return answer


def speak(config: AgentConfig, text: str, voice: str | None, chime: bool = False) -> str:
    """Play ``text`` (after the chime, a test of the tones, when ``chime``); say what was used."""
    try:
        answer = ask(config, "say", text=text, voice=voice, chime=chime)
    except AgentNotRunning as exc:
        if "not running" not in str(exc):
            raise
        return _speak_here(config, text, voice, chime)
    return str(answer["detail"])


def set_volume(config: AgentConfig, percent: int) -> str:
    try:
        ask(config, "volume", percent=percent)
        return f"volume {percent}% (applied now)"
    except AgentNotRunning as exc:
        if "not running" not in str(exc):
            raise
    store = Store(config.paths.state_dir / "agent.db")
    try:
        store.set_setting(VOLUME_SETTING, str(percent))
    finally:
        store.close()
    return f"volume {percent}% (the agent is not running: applied at its next start)"


class _Done:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.outcome: tuple[Outcome, str] = ("failed", "not played")
        self.error_ms: int | None = None

    def finished(self, report: PlayEnded) -> None:
        self.outcome = (report.outcome, report.detail)
        self.event.set()

    def started(self, report: PlayStarted) -> None:
        self.error_ms = report.start_error_ms


def _speak_here(config: AgentConfig, text: str, voice: str | None, chime: bool) -> str:
    from agent.players import build_speaker
    from player.base import PlayItem

    notes: list[str] = []
    done = _Done()
    volume = _saved_volume(config)

    def report(_severity: str, code: str, detail: str) -> None:
        notes.append(f"{code}: {detail}")

    # As the agent would: the configured output, amplifier (warm-up, hook or GPIO) and chime.
    speaker = build_speaker(config, done, report, volume)
    try:
        started = time.monotonic()
        item = PlayItem(say_bulletin(text, voice, chime), "speaker", "say", "technician")
        speaker.play(item)
        done.event.wait(600)
        took = time.monotonic() - started
    finally:
        speaker.close()  # and the voices, and the amplifier
    outcome, detail = done.outcome
    if outcome != "completed":
        raise RuntimeError(f"not played: {outcome} {detail}")
    used = "; ".join(notes) if notes else "Piper"
    return f"spoken in {took:.1f} s at volume {volume}% ({used}), on {config.speaker.output}"


def _saved_volume(config: AgentConfig) -> int:
    db = config.paths.state_dir / "agent.db"
    if not db.exists():
        return config.speaker.default_volume
    store = Store(db)
    try:
        return saved_volume(store, config.speaker.default_volume)
    finally:
        store.close()
