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
from typing import Protocol

from agent.cache import open_cache
from agent.cache_fill import CacheFiller
from agent.conductor import Conductor
from agent.config import AgentConfig
from agent.daemon import PLAYLOG_FLUSH_S, ToInbox, Wakeup, build_conductor, link_settings
from agent.director import Director
from agent.events import Event, Inbox, Stop
from agent.logs import Redactor
from agent.outbox import Outbox
from agent.store import Store
from agent.verify import Verifier
from protocol import Topics, format_time
from protocol.link import MqttLink, Will
from protocol.signing import public_key_from_b64

# Makes the wake-up function of one device from its director's ``post``: the daemon's
# ``Wakeup`` (a scheduler thread each) or a scheduler shared by the devices of a process.
WakeFactory = Callable[[Callable[[Event], None]], "WakeHandle"]


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
        self.director.post(Stop())
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
    inbox = Inbox()
    outbox = Outbox(store, topics, config.device_id, _utcnow, redactor)
    wake = make_wake(inbox.post)
    fetcher = CacheFiller(open_cache(config), inbox.post)
    # The daemon's own builder: with [screen] and [speaker] disabled, the null players.
    conductor = build_conductor(config, store, inbox, outbox, fetcher, wake)
    director = Director(config, store, verifier, outbox, conductor, inbox)
    settings = link_settings(config, format_time(time.time()))
    link = MqttLink(settings, ToInbox(inbox))
    director.attach(link, lambda: link.reconnects)
    director.every(config.status_interval_s, director.publish_status)
    director.every(3600, director.housekeeping)
    director.every(PLAYLOG_FLUSH_S, conductor.recorder.tick)
    director.every(30, conductor.retry_due)
    director.every(60, conductor.reconcile)
    director.every(10, director.report_suppressed)
    return SimDevice(config, store, director, conductor, fetcher, wake, link, settings.will)


def daemon_wakeup(post: Callable[[Event], None]) -> WakeHandle:
    """The daemon's own wake-up: an APScheduler scheduler (and its thread) per device."""
    return Wakeup(post)


def _utcnow() -> datetime:
    return datetime.now(UTC)
