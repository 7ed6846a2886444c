"""``ttcs-agent run``: wires the parts together, starts them in order and stops them in reverse."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from agent import __version__
from agent.cache import ContentCache, open_cache
from agent.cache_fill import CacheFiller
from agent.conductor import Conductor
from agent.config import AgentConfig
from agent.control_socket import ControlServer
from agent.director import CAPABILITIES, PLAYBACK_CAPABILITIES, Director
from agent.events import (
    Delivered,
    Event,
    Inbound,
    Inbox,
    LinkDown,
    LinkReset,
    LinkUp,
    Reload,
    Stop,
    Tick,
)
from agent.logs import Redactor, setup_logging
from agent.outbox import Outbox
from agent.players import open_screen, open_speaker
from agent.playlog import PlaylogRecorder
from agent.programs import Ranks
from agent.stage import Stage
from agent.store import Store
from agent.systemd import Notifier
from agent.turns import Policy
from agent.update import UpdatePorts, Updater, health_problem
from agent.verify import Verifier
from player.base import PlayEnded, PlayStarted
from protocol import DeviceState, Topics, format_time
from protocol.link import LinkHandler, LinkSettings, MqttLink, Token, Will
from protocol.signing import public_key_from_b64

log = logging.getLogger(__name__)
SHUTDOWN_FLUSH_S = 3.0
PLAYLOG_FLUSH_S = 10


class ToInbox(LinkHandler):
    """Forwards link events to the director's inbox (never blocks the network thread)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def link_up(self, session_present: bool) -> None:
        self.inbox.post(LinkUp(session_present))

    def link_down(self, reason: str) -> None:
        self.inbox.post(LinkDown(reason))

    def link_reset(self) -> None:
        self.inbox.post(LinkReset())

    def message(self, topic: str, payload: bytes, token: Token | None, retained: bool) -> None:
        self.inbox.post(Inbound(topic, payload, token, retained))

    def delivered(self, mid: int, ok: bool, detail: str) -> None:
        self.inbox.post(Delivered(mid, ok, detail))


def subscriptions(config: AgentConfig) -> list[str]:
    """The device's own and its groups' ``cmd`` and ``program`` topics."""
    topics = Topics(config.mqtt.topic_prefix)
    out = [topics.dev(config.device_id, leaf) for leaf in ("cmd", "program")]
    for group in config.groups:
        out += [topics.grp(group, leaf) for leaf in ("cmd", "program")]
    return out


def link_settings(config: AgentConfig, started_at: str) -> LinkSettings:
    topics = Topics(config.mqtt.topic_prefix)
    state = topics.dev(config.device_id, "state")
    m = config.mqtt
    birth = DeviceState(
        online=True,
        device=config.device_id,
        agent_version=__version__,
        groups=list(config.groups),
        capabilities=[*CAPABILITIES, *PLAYBACK_CAPABILITIES],
        since=started_at,
    )
    return LinkSettings(
        host=m.host,
        port=m.port,
        client_id=m.client_id or config.device_id,
        tls=m.tls,
        ca_file=m.ca_file,
        cert_file=m.cert_file,
        key_file=m.key_file,
        username=m.username,
        password=m.password.get_secret_value() if m.password else None,
        protocol=m.protocol,
        keepalive_s=m.keepalive_s,
        persistent=True,
        session_expiry_s=m.session_expiry_s,
        reconnect_min_s=m.reconnect_min_s,
        reconnect_max_s=m.reconnect_max_s,
        will=Will(state, DeviceState(online=False, device=config.device_id).payload()),
        birth=Will(state, birth.payload()),
        subscriptions=subscriptions(config),
        manual_ack=True,
    )


def run(config: AgentConfig, config_path: Path) -> int:
    """Run the agent in the foreground until SIGTERM/SIGINT; return the exit status."""
    redactor = Redactor(config.secrets())
    setup_logging(config.log.level, config.paths.log_path, redactor)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # dump every thread's stack
    log.info(
        "ttcs-agent %s starting as %s (groups: %s)",
        __version__,
        config.device_id,
        ", ".join(config.groups) or "none",
    )
    config.paths.state_dir.mkdir(parents=True, exist_ok=True)
    config.paths.cache_dir.mkdir(parents=True, exist_ok=True)
    # agent.update (agent/update.py): an update under way may exec the new release here.
    updater = Updater(config, config_path, redactor)
    updater.on_boot()
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
    wake = Wakeup(inbox.post)
    fetcher = CacheFiller(open_cache(config), inbox.post)
    conductor = build_conductor(config, store, inbox, outbox, fetcher, wake)
    director = Director(config, store, verifier, outbox, conductor, inbox, updater)
    settings = link_settings(config, format_time(time.time()))
    link = MqttLink(settings, ToInbox(inbox))
    director.attach(link, lambda: link.reconnects)
    control = ControlServer(config.paths.socket_path, inbox.post)
    # agent.update (agent/update.py): the command, and its health check and final ack.
    updater.attach(
        UpdatePorts(
            ack=outbox.ack,
            cache=fetcher.cache,
            unhealthy=lambda: health_problem(link, conductor),
            publish_status=director.publish_status,
            restart=lambda: inbox.post(Stop()),
        )
    )
    director.every(0.5, updater.tick)
    notifier = Notifier()
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            inbox.post(Reload(config_path))
        else:
            stop_requested.set()  # also cancels a restart already under way
            inbox.post(Stop())

    def watchdog() -> None:
        # Alive means the director loop runs (this is called from it), and the link thread and
        # the players' threads too: systemd restarts an agent whose board or loudspeakers froze.
        gone = "MQTT link" if not link.alive else conductor.dead_player()
        if gone is None:
            notifier.watchdog()
        else:
            log.error("the %s thread is gone; withholding the watchdog ping", gone)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    director.every(config.status_interval_s, director.publish_status)
    director.every(3600, director.housekeeping)
    director.every(PLAYLOG_FLUSH_S, conductor.recorder.tick)
    director.every(30, conductor.retry_due)
    # A safety net on the monotonic clock: a wake-up lost to a wall-clock step (NTP on a board
    # without an RTC) delays the next decision by at most a minute.
    director.every(60, conductor.reconcile)
    director.every(10, director.report_suppressed)
    if notifier.watchdog_interval_s:
        director.every(notifier.watchdog_interval_s, watchdog)

    # Offline first: what plays is decided from the cache before the network is tried.
    conductor.boot()
    fetcher.start()
    wake.start()
    control.start()
    link.start()
    notifier.ready()
    notifier.status(f"serving {config.device_id}")
    try:
        reason = director.run()
    finally:
        restarting = director.exit_reason == "restart" and not stop_requested.is_set()
        # A restart is the same process (execv): to systemd it is a reload that the new
        # process's READY=1 completes. STOPPING=1 would start the stop timeout and a SIGKILL.
        if restarting:
            notifier.reloading()
        else:
            notifier.stopping()
        control.stop()
        wake.stop()
        fetcher.stop()
        conductor.close()
        director.publish_status()  # the last word: nothing is playing any more
        fetcher.cache.close()
        _flush(director, link)
        link.stop(offline=settings.will)
        store.close()
        log.info("ttcs-agent stopped (%s)", director.exit_reason or "error")
    if reason == "restart" and not stop_requested.is_set():
        logging.shutdown()
        os.execv(  # noqa: S606 - re-executes this same agent, argv list, no shell
            sys.executable, [sys.executable, "-m", "agent", "run", "--config", str(config_path)]
        )
    return 0


class Wakeup:
    """Wakes the director at the next change that arbitration announced (APScheduler)."""

    def __init__(self, post: Callable[[Event], None]) -> None:
        self.post = post
        self.scheduler = BackgroundScheduler(timezone=UTC)

    def start(self) -> None:
        self.scheduler.start()

    def __call__(self, when: datetime | None) -> None:
        if when is None:
            with contextlib.suppress(JobLookupError):  # it may have just fired
                self.scheduler.remove_job("wake")
            return
        self.scheduler.add_job(
            self.post,
            "date",
            run_date=when,
            args=(Tick(),),
            id="wake",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def stop(self) -> None:
        if self.scheduler.running:
            # First, under the scheduler's job-store lock: a wake being processed at this very
            # moment finishes before the scheduler is stopped. (Stopped mid-processing, its
            # thread would look for the fired job among the pending ones and die of
            # JobLookupError.)
            self.scheduler.remove_all_jobs()
            self.scheduler.shutdown(wait=False)


def build_conductor(
    config: AgentConfig,
    store: Store,
    inbox: Inbox,
    outbox: Outbox,
    fetcher: CacheFiller,
    wake: Callable[[datetime | None], None],
) -> Conductor:
    """The programs, the stage and its players (null players where the real ones cannot open)."""
    topics = Topics(config.mqtt.topic_prefix)
    recorder = PlaylogRecorder(store, config.device_id, topics, _utcnow)
    events = _PlayerEvents(inbox)
    stage = Stage(
        store,
        open_screen(config, inbox, outbox, events),
        open_speaker(config, store, inbox, outbox, events),
        recorder,
        _media_user(fetcher.cache),
        ZoneInfo(config.timezone),
        speaker_policy(config),
        outbox.event,
    )
    ranks = Ranks(topics, config.device_id, config.groups)
    return Conductor(
        store,
        fetcher.cache,
        fetcher,
        stage,
        recorder,
        ranks,
        outbox,
        wake,
        _utcnow,
        config.speaker.default_volume,
        busy=inbox.waiting,  # decide after a burst of messages, not in its middle
    )


def speaker_policy(config: AgentConfig) -> Policy:
    """The rules' tunable parts from ``[speaker]``."""
    s = config.speaker
    return Policy(
        queue_max=s.queue_max,
        replay_levels=frozenset(level.rank for level in s.replay_levels),
        replay_within=timedelta(seconds=s.replay_within_s),
        tolerance=timedelta(milliseconds=s.sync_tolerance_ms),
        prepare=timedelta(seconds=s.prepare_s),
    )


def _media_user(cache: ContentCache) -> Callable[[str], Path]:
    def use(sha256: str) -> Path:
        cache.touch(sha256)  # played: most recently used
        return cache.path(sha256)

    return use


class _PlayerEvents:
    """The players' reports, into the director's inbox."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def finished(self, report: PlayEnded) -> None:
        self.inbox.post(report)

    def started(self, report: PlayStarted) -> None:
        self.inbox.post(report)


def _flush(director: Director, link: MqttLink) -> None:
    """Give the outbox a moment to drain; whatever is left is sent after the next start."""
    deadline = time.monotonic() + SHUTDOWN_FLUSH_S
    courier = director.courier
    while courier is not None and link.connected and time.monotonic() < deadline:
        director.pump()
        if courier.in_flight == 0 and director.store.outbox_size() == 0:
            return
        try:
            event = director.inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, Delivered):
            director.handle(event)


def _utcnow() -> datetime:
    return datetime.now(UTC)
