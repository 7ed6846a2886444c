"""The director: verifies what arrives, routes it, and answers.

Everything else (the MQTT link, the control socket, signal handlers, timers, the players) puts
typed events (``agent.events``) into its inbox; it verifies documents, has each command
carried out exactly once (playback by the conductor, the rest here), writes acks and events to
the outbox, and publishes status. Only its own thread touches its state.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from agent import __version__
from agent.cache_fill import ContentResult
from agent.config import AgentConfig, ConfigError, load_config
from agent.courier import Courier, Publisher
from agent.events import (
    Delivered,
    Event,
    Inbound,
    Inbox,
    LinkDown,
    LinkReset,
    LinkUp,
    Reload,
    Request,
    Stop,
    Tick,
    Trouble,
)
from agent.local_requests import answer
from agent.logs import tail
from agent.outbox import Outbox, Seen
from agent.playback import Playback
from agent.store import Store
from agent.update import Updater
from agent.verify import Accepted, Rejection, Verifier
from player.base import PlayEnded, PlayStarted
from protocol import (
    Ack,
    DeviceStatus,
    Envelope,
    LinkStats,
    LogsUploadBody,
    Status,
    Topics,
    format_time,
    parse_time,
)
from protocol.link import Token
from protocol.signing import public_key_from_b64

log = logging.getLogger(__name__)

PROGRAM_MEMORY_S = 400 * 86400  # programs are also guarded by their version (check 11)
SECURITY_REASONS = {"unknown_key", "bad_signature", "wrong_target", "from_future"}
NEWLINE = b"\n"
# Removals of delivered outbox rows ride on the next transaction; after this long without an
# event they get a commit of their own.
IDLE_FLUSH_S = 0.05
# The status comparison after an event waits this long for the inbox to fall quiet, so the
# link thread writes the ack first (it needs the GIL the comparison would hold).
SHOWN_DELAY_S = 0.002
RELOADABLE = ("trust", "log")  # what SIGHUP applies; everything else needs a restart
CAPABILITIES = ("ping", "volume.set", "logs.upload", "agent.restart", "agent.update")
PLAYBACK_CAPABILITIES = (
    "program",
    "play.now",
    "emergency.start",
    "emergency.stop",
    "power.set",
    "screenshot",
    "stream.start",
    "stream.stop",
)


class LinkPort(Publisher, Protocol):
    """What the director needs of the MQTT link."""

    def ack(self, token: Token | None) -> None: ...


class RateLimiter:
    """A token bucket: ``burst`` at once, then ``rate`` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()
        self.suppressed = 0

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.suppressed += 1
        return False


class Director:
    """Consumes events from its inbox in its own thread (``run``)."""

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        verifier: Verifier,
        outbox: Outbox,
        conductor: Playback,
        inbox: Inbox | None = None,
        updater: Updater | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.verifier = verifier
        self.outbox = outbox
        self.ack = outbox.ack
        self.event = outbox.event
        self.redactor = outbox.redactor
        self.conductor = conductor
        self.inbox = inbox or Inbox()
        self.clock = clock
        self.monotonic = monotonic
        self.topics = Topics(config.mqtt.topic_prefix)
        self.started = monotonic()
        self.limiter = RateLimiter(rate=1.0, burst=10, clock=monotonic)
        self.link: LinkPort | None = None
        self.courier: Courier | None = None
        self.reconnects: Callable[[], int] = lambda: 0
        self.exit_reason: str | None = None
        self._reported: object = None
        self._flush_failed = False
        self._shown_due: float | None = None  # when the status comparison became due
        self._tickers: list[tuple[float, float, Callable[[], None]]] = []
        self.updater = updater  # agent.update (agent/update.py); None: not offered
        self._thread = threading.get_ident()  # the thread that handles events (see ``run``)

    # ------------------------------------------------------------------ wiring

    def attach(self, link: LinkPort, reconnects: Callable[[], int]) -> None:
        self.link = link
        self.courier = Courier(self.store, link)
        self.reconnects = reconnects
        self.outbox.after_ack = self._ack_written

    def _ack_written(self) -> None:
        """An ack is durable: hand it to the link now, when on the director's own thread (the
        courier is not thread-safe; elsewhere the director's next pass hands it over)."""
        if threading.get_ident() == self._thread:
            self.pump()

    def every(self, interval_s: float, action: Callable[[], None]) -> None:
        """Run ``action`` on the director's thread every ``interval_s`` seconds."""
        self._tickers.append((self.monotonic() + interval_s, interval_s, action))

    def post(self, event: Event) -> None:
        """Thread-safe: queue an event for the director."""
        self.inbox.post(event)

    def now_s(self) -> float:
        return self.clock().timestamp()

    # ------------------------------------------------------------------ loop

    def run(self) -> str:
        """Process events until asked to stop; return ``"stop"`` or ``"restart"``."""
        self._thread = threading.get_ident()
        self._boot()
        while self.exit_reason is None:
            timeout = self._due_tickers()
            if not self.store.unwritten_deliveries:
                self._flush_failed = False  # another transaction carried them
            elif not self._flush_failed:
                timeout = min(timeout, IDLE_FLUSH_S)
            if self._shown_due is not None:
                left = self._shown_due + SHOWN_DELAY_S - self.monotonic()
                if left <= 0:  # a busy inbox does not put the status off for long
                    self._report_due()
                else:
                    timeout = min(timeout, left)
            try:
                event = self.inbox.get(timeout=timeout)
            except queue.Empty:
                self._report_due()
                self._flush_deliveries()
                continue
            try:
                self.handle(event)
            except Exception:
                log.exception("director failed to handle %s", type(event).__name__)
            if not isinstance(event, Delivered) and self._shown_due is None:
                self._shown_due = self.monotonic()  # a removed outbox row changes nothing shown
            self.pump()
        self._report_due()
        self._flush_deliveries()
        return self.exit_reason

    def _flush_deliveries(self) -> None:
        """Write the removals of delivered outbox rows that no transaction carried yet. After a
        failure (a full disk) the next transaction carries them: no retry every 50 ms."""
        try:
            self.store.flush_delivered()
            self._flush_failed = False
        except sqlite3.Error:
            if not self._flush_failed:
                log.exception("removing delivered outbox rows failed; they are sent again")
            self._flush_failed = True

    def _report_due(self) -> None:
        if self._shown_due is None:
            return
        self._shown_due = None
        try:
            self.report_changes()
        except Exception:
            log.exception("status comparison failed")

    def report_changes(self) -> None:
        """Publish the status as soon as what plays, the live programs, the volume or the power
        modes change."""
        c = self.conductor
        shown = (c.now_playing(), c.versions(), c.volume, c.power_state())
        if shown != self._reported:
            self._reported = shown
            self.publish_status()

    def _due_tickers(self) -> float:
        now = self.monotonic()
        for index, (due, interval, action) in enumerate(self._tickers):
            if due <= now:
                self._tickers[index] = (now + interval, interval, action)
                try:
                    action()
                except Exception:
                    log.exception("periodic task failed")
        self.pump()
        if not self._tickers:
            return 1.0
        return max(0.0, min(due for due, _, _ in self._tickers) - self.monotonic())

    def _boot(self) -> None:
        pending = self.store.get_setting("restart_ack")
        if pending:
            # The ack and the end of the pending restart in one transaction: never lost nor twice.
            self.ack(pending, Status.DONE, detail="agent restarted", settings={"restart_ack": None})

    def pump(self) -> None:
        """Hand waiting outbox rows to the link; a failure leaves them queued for the next try."""
        if self.courier is None:
            return
        try:
            self.courier.pump()
        except Exception:
            log.exception("handing the outbox to the link failed; it stays queued")

    def handle(self, event: Event) -> None:
        """Handle one event (also called directly by tests)."""
        match event:
            case Inbound():
                self.on_inbound(event)
            case Delivered(mid, ok, detail) if self.courier is not None:
                self.courier.delivered(mid, ok, detail)
            case LinkUp():
                log.info("connected to the broker")
                self.publish_status()
            case LinkDown(reason):
                log.warning("disconnected from the broker: %s", reason)
            case LinkReset() if self.courier is not None:
                self.courier.reset()
            case Request():
                self.on_request(event)
            case ContentResult():
                self.conductor.on_content(event)
            case PlayEnded():
                self.conductor.on_player(event)
            case PlayStarted():
                self.conductor.on_started(event)
            case Tick():
                self.conductor.reconcile()
            case Trouble(severity, code, detail):
                self.event(severity, code, detail)
            case Reload(path):
                self.reload(path)
            case Stop():
                self.exit_reason = "stop"

    def on_inbound(self, msg: Inbound) -> None:
        """A message from the broker; its PUBACK only once the outcome is durable."""
        try:
            self.on_message(msg.topic, msg.payload, msg.retained)
        except sqlite3.Error:
            # The store could not record the outcome (disk full, I/O error): no PUBACK, so
            # the broker delivers the message again after the next reconnect.
            log.exception("could not record the outcome of a message on %s", msg.topic)
            return
        except Exception:
            # Acknowledged all the same: one poisonous message must not come back forever.
            log.exception("failed to handle a message on %s", msg.topic)
        self.pump()  # the ack leaves before the PUBACK
        if self.link is not None:
            self.link.ack(msg.token)

    # ------------------------------------------------------------------ documents

    def on_message(
        self, topic: str, payload: bytes, retained: bool = False, limited: bool = True
    ) -> list[Ack]:
        """Verify one inbound document and act on it; return the acks it produced.

        ``limited`` False exempts a rejection from the rate limit (a technician's own request).
        """
        result = self.verifier.verify(topic, payload)
        if isinstance(result, Rejection):
            return self._refuse(topic, result, retained, limited)
        return self._execute(result)

    def report_suppressed(self) -> None:
        """Tell the server how many rejection acks the rate limit dropped since the last report."""
        if self.limiter.suppressed:
            self.event("warning", "acks_suppressed", f"{self.limiter.suppressed} rejection acks")
            self.limiter.suppressed = 0

    def _refuse(self, topic: str, rej: Rejection, retained: bool, limited: bool) -> list[Ack]:
        if rej.reason == "duplicate" and retained:
            # A retained program delivered again on resubscription: already acknowledged.
            log.debug("retained %s on %s already handled", rej.doc_id, topic)
            return []
        if limited and not self.limiter.allow():
            # A flood must not become a flood of acks, nor of log lines.
            log.debug("rejected %s on %s: %s (ack suppressed)", rej.doc_id, topic, rej.reason)
            return []
        log.warning("rejected %s on %s: %s (%s)", rej.doc_id, topic, rej.reason, rej.detail)
        self.report_suppressed()
        status = Status.DUPLICATE if rej.reason == "duplicate" else Status.REJECTED
        ack = self.ack(rej.doc_id, status, rej.reason, rej.detail, topic=topic)
        if rej.reason in SECURITY_REASONS:
            self.event("warning", f"rejected.{rej.reason}", f"{rej.doc_id} on {topic}")
        return [ack]

    def _execute(self, ok: Accepted) -> list[Ack]:
        env = ok.envelope
        log.info("accepted %s %s from %s", env.type, env.id, ok.topic)
        expires = parse_time(env.expires_at).timestamp() if env.expires_at else None
        remember = (env.id, expires or parse_time(env.issued_at).timestamp() + PROGRAM_MEMORY_S)
        try:
            acks = self.conductor.execute(env, ok.topic, remember)
            if acks is None:
                acks = self._command(env, remember)
        except sqlite3.Error:
            raise
        except Exception as exc:
            # A bug or an unexpected condition: the sender gets an answer, and the document is
            # not executed again when it is redelivered.
            log.exception("%s %s failed", env.type, env.id)
            return [self.ack(env.id, Status.FAILED, "internal_error", repr(exc), seen=remember)]
        return acks

    def _command(self, env: Envelope, seen: Seen) -> list[Ack]:
        """The commands that are not playback: ping, logs, restart (else ``not_supported``)."""
        match env.type:
            case "ping":
                return [self.ack(env.id, Status.DONE, seen=seen)]
            case "logs.upload":
                return self.cmd_logs_upload(env, seen)
            case "agent.restart":
                return self.cmd_agent_restart(env, seen)
            case "agent.update" if self.updater is not None:
                # agent.update lives in agent/update.py; its final ack comes from Updater.tick.
                outcome = self.updater.begin(env)
                return [self.ack(env.id, outcome.status, outcome.reason, outcome.detail, seen=seen)]
        detail = f"{env.type} is not supported by agent {__version__}"
        return [self.ack(env.id, Status.FAILED, "not_supported", detail, seen=seen)]

    # ------------------------------------------------------------------ commands

    def cmd_logs_upload(self, env: Envelope, seen: Seen) -> list[Ack]:
        body: LogsUploadBody = env.body
        lines = tail(self.config.paths.log_path, body.lines or 200, self.redactor)
        text = "".join(f"{line}\n" for line in lines).encode("utf-8")
        limit = 1 << 20  # what a broker normally accepts for one message
        if len(text) > limit:
            # Drop whole lines from the start: a cut inside a line may split a UTF-8 character.
            text = text[text.find(b"\n", len(text) - limit - 1) + 1 :]
        extra = [("logs", self.outbox.topic(f"logs/{env.id}"), text, 1)]
        detail = f"{text.count(NEWLINE)} lines"
        return [self.ack(env.id, Status.DONE, detail=detail, seen=seen, extra=extra)]

    def cmd_agent_restart(self, env: Envelope, seen: Seen) -> list[Ack]:
        # "done" is acked by the new process (see _boot), once it is up.
        settings: dict[str, str | None] = {"restart_ack": env.id}
        ack = self.ack(env.id, Status.ACCEPTED, detail="restarting", seen=seen, settings=settings)
        self.exit_reason = "restart"
        return [ack]

    # ------------------------------------------------------------------ status

    def status(self) -> DeviceStatus:
        connected = self.link.connected if self.link is not None else False
        c = self.conductor
        return DeviceStatus(
            at=format_time(self.clock()),
            uptime_s=int(self.monotonic() - self.started),
            programs=self.store.program_versions(),
            now=c.now_playing(),
            volume=c.volume,
            cache=c.cache_usage(),
            disk_free_bytes=c.disk_free_bytes(),
            temperature_c=_temperature(),
            link=LinkStats(reconnects=self.reconnects(), connected=connected),
            outbox=self.store.outbox_size(),
            power=c.power_state(),
        )

    def publish_status(self) -> None:
        """Publish the retained status now (best effort: the next interval tries again)."""
        if self.link is None or not self.link.connected:
            return
        topic = self.outbox.topic("status")
        try:
            self.link.publish(topic, self.status().payload(), qos=0, retain=True)
        except Exception:
            log.exception("status not published")

    def housekeeping(self) -> None:
        dropped = self.store.forget_seen_before(self.now_s())
        if dropped:
            log.info("forgot %d expired document ids", dropped)
        self.conductor.collect_garbage()
        self.conductor.repair()

    # ------------------------------------------------------------------ control socket

    def on_request(self, req: Request) -> None:
        try:
            reply = answer(self, req)
        except Exception as exc:  # a bad request must not stop the director
            log.exception("control request %s failed", req.action)
            reply = {"ok": False, "error": str(exc)}
        with contextlib.suppress(queue.Full):
            req.reply.put_nowait(reply)

    # ------------------------------------------------------------------ reload

    def reload(self, path: Path) -> None:
        """Re-read the configuration; apply what can change without a restart, name the rest."""
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            return
        fixed = [
            k
            for k in type(new).model_fields
            if k not in RELOADABLE and getattr(new, k) != getattr(self.config, k)
        ]
        if fixed:
            log.warning("reload: %s changed; restart the agent to apply", ", ".join(fixed))
        self.verifier.set_keys({k: public_key_from_b64(v) for k, v in new.trust.keys.items()})
        logging.getLogger().setLevel(new.log.level)
        self.config = self.config.model_copy(update={"trust": new.trust, "log": new.log})
        log.info("reloaded: %d trusted keys, log level %s", len(new.trust.keys), new.log.level)


def _temperature() -> int | None:
    try:
        raw = Path("/sys/class/thermal/thermal_zone0/temp").read_text().strip()
        return round(int(raw) / 1000)
    except (OSError, ValueError):
        return None
