"""One simulated device: the agent's own parts, wired as ``agent.daemon.run`` wires them.

``build_device`` is the only place that knows how the agent is put together; when the daemon's
construction changes, this function changes with it and nothing else in the simulator does.
What a device leaves out of the daemon: signal handlers, the systemd notifier and watchdog,
logging set-up (one per hosting process) and the technician's control socket (a local Unix
socket, no part of the protocol). Players are the null players, as on a box without a screen
or loudspeakers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from agent.cache import ContentCache, open_cache
from agent.cache_fill import CacheFiller
from agent.conductor import Conductor
from agent.config import AgentConfig
from agent.daemon import PLAYLOG_FLUSH_S, Wakeup, link_settings, speaker_policy
from agent.director import Director
from agent.logs import Redactor
from agent.playlog import PlaylogRecorder
from agent.programs import Ranks
from agent.stage import Stage
from agent.store import Store
from agent.verify import Verifier
from player.base import PlayEnded, PlayStarted
from player.null import NullScreen, NullSpeaker
from protocol import Topics, format_time
from protocol.link import LinkHandler, MqttLink, Will
from protocol.signing import public_key_from_b64

# Makes the wake-up function of one device from its director's ``post``: the daemon's
# ``Wakeup`` (a scheduler thread each) or a scheduler shared by the devices of a process.
WakeFactory = Callable[[Callable[[str, Any], None]], "WakeHandle"]


class WakeHandle(Protocol):
    """A device's wake-up function with its own start and stop (the daemon's ``Wakeup``)."""

    def __call__(self, when: datetime | None) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class SimDevice:
    """A running device: its parts, and the thread of its director's loop."""

    config: AgentConfig
    store: Store
    director: Director
    conductor: Conductor
    fetcher: CacheFiller
    wake: WakeHandle
    link: MqttLink
    offline: Will | None
    thread: threading.Thread | None = None

    @property
    def device_id(self) -> str:
        return self.config.device_id

    def start(self) -> None:
        """Offline first, as the daemon: decide from the cache, then fetch, then connect."""
        self.conductor.boot()
        self.fetcher.start()
        self.wake.start()
        self.link.start()
        self.thread = threading.Thread(
            target=self.director.run, name=f"director-{self.device_id}", daemon=True
        )
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """The daemon's shutdown order: the loop, then the parts in reverse, the link last."""
        self.director.post("stop")
        if self.thread is not None:
            self.thread.join(timeout)
        self.wake.stop()
        self.fetcher.stop()
        self.conductor.close()
        self.director.publish_status()
        self.fetcher.cache.close()
        self.director.pump()
        self.link.stop(offline=self.offline)
        self.store.close()


def build_device(config: AgentConfig, make_wake: WakeFactory) -> SimDevice:
    """Wire one device's parts as ``agent.daemon.run`` and ``build_conductor`` do."""
    redactor = Redactor(config.secrets())
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    config.paths.cache_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.paths.state_dir / "agent.db")
    topics = Topics(config.mqtt.topic_prefix)
    verifier = Verifier(
        config.device_id,
        config.groups,
        {kid: public_key_from_b64(k) for kid, k in config.trust.keys.items()},
        topics,
        store,
        clock=_utcnow,
        max_payload_bytes=config.max_payload_bytes,
    )
    director = Director(config, store, verifier, redactor)
    wake = make_wake(director.post)
    fetcher = CacheFiller(open_cache(config), director.post)
    recorder = PlaylogRecorder(store, config.device_id, topics, _utcnow)
    events = _PlayerEvents(director)
    stage = Stage(
        store,
        NullScreen(),
        NullSpeaker(events),
        recorder,
        _media_user(fetcher.cache),
        ZoneInfo(config.timezone),
        speaker_policy(config),
        director.event,
    )
    conductor = Conductor(
        store,
        fetcher.cache,
        fetcher,
        stage,
        recorder,
        Ranks(topics, config.device_id, config.groups),
        director.ack,
        director.event,
        wake,
        _utcnow,
    )
    director.conductor = conductor
    settings = link_settings(config, format_time(time.time()))
    link = MqttLink(settings, _ToDirector(director))
    director.attach(link, lambda: link.reconnects)
    director.every(config.status_interval_s, director.publish_status)
    director.every(3600, director.housekeeping)
    director.every(PLAYLOG_FLUSH_S, conductor.recorder.tick)
    director.every(30, conductor.retry_due)
    director.every(60, conductor.reconcile)
    director.every(10, director.report_suppressed)
    return SimDevice(config, store, director, conductor, fetcher, wake, link, settings.will)


def daemon_wakeup(post: Callable[[str, Any], None]) -> WakeHandle:
    """The daemon's own wake-up: an APScheduler scheduler (and its thread) per device."""
    return Wakeup(post)


class _ToDirector(LinkHandler):
    """Forwards link events to the director's queue (never blocks the network thread)."""

    def __init__(self, director: Director) -> None:
        self.director = director

    def link_up(self, session_present: bool) -> None:
        self.director.post("link_up", session_present)

    def link_down(self, reason: str) -> None:
        self.director.post("link_down", reason)

    def link_reset(self) -> None:
        self.director.post("link_reset")

    def message(self, topic: str, payload: bytes, token: Any, retained: bool) -> None:
        self.director.post("message", (topic, payload, token, retained))

    def delivered(self, mid: int, ok: bool, detail: str) -> None:
        self.director.post("delivered", (mid, ok, detail))


class _PlayerEvents:
    def __init__(self, director: Director) -> None:
        self.director = director

    def finished(self, report: PlayEnded) -> None:
        self.director.post("player", report)

    def started(self, report: PlayStarted) -> None:
        self.director.post("player_started", report)


def _media_user(cache: ContentCache) -> Callable[[str], Path]:
    def use(sha256: str) -> Path:
        cache.touch(sha256)
        return cache.path(sha256)

    return use


def _utcnow() -> datetime:
    return datetime.now(UTC)
