"""The director: the single owner of the agent's state.

Everything else (the MQTT link, the control socket, signal handlers, timers) sends it events
through one queue; it verifies documents, executes commands exactly once, writes acks and
events to the outbox, and publishes status. Only its own thread touches its state.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from agent import __version__
from agent.conductor import Conductor
from agent.config import AgentConfig, ConfigError, load_config
from agent.courier import Courier, Publisher
from agent.logs import Redactor, tail
from agent.stage import AMPLIFIER_MODE_SETTING, SCREEN_MODE_SETTING
from agent.store import Store
from agent.verify import Accepted, Rejection, Verifier
from protocol import (
    Ack,
    CacheUsage,
    DeviceStatus,
    Envelope,
    Event,
    LinkStats,
    LogsUploadBody,
    NowPlaying,
    PowerSetBody,
    PowerState,
    ScreenshotBody,
    Status,
    StreamStartBody,
    Topics,
    VolumeSetBody,
    format_time,
    parse_time,
)
from protocol.signing import public_key_from_b64

log = logging.getLogger(__name__)

DEFAULT_VOLUME = 70
PROGRAM_MEMORY_S = 400 * 86400  # programs are also guarded by their version (check 11)
SECURITY_REASONS = {"unknown_key", "bad_signature", "wrong_target", "from_future"}
NEWLINE = b"\n"
RELOADABLE = ("trust", "log")  # what SIGHUP applies; everything else needs a restart
CAPABILITIES = ("ping", "volume.set", "logs.upload", "agent.restart")
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
SCREENSHOT_TIMEOUT_S = 5.0
Seen = tuple[str, float]


@runtime_checkable
class TechnicianScreen(Protocol):
    """A real screen also shows the technician's test card."""

    def show_test_card(self, seconds: float) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class LinkPort(Publisher, Protocol):
    """What the director needs of the MQTT link."""

    def ack(self, token: Any) -> None: ...


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


@dataclass
class Request:
    """A request from the local control socket, answered through ``reply``."""

    action: str
    args: dict[str, Any]
    reply: queue.Queue[dict[str, Any]] = field(default_factory=lambda: queue.Queue(maxsize=1))


class Director:
    """Owns state; consumes events from ``self.events`` in its own thread (``run``)."""

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        verifier: Verifier,
        redactor: Redactor,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.verifier = verifier
        self.redactor = redactor
        self.clock = clock
        self.monotonic = monotonic
        self.topics = Topics(config.mqtt.topic_prefix)
        # SimpleQueue is re-entrant: a signal handler may put while the same thread is in get().
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.started = monotonic()
        self.limiter = RateLimiter(rate=1.0, burst=10, clock=monotonic)
        self.link: LinkPort | None = None
        self.courier: Courier | None = None
        self.reconnects: Callable[[], int] = lambda: 0
        self.exit_reason: str | None = None
        self.conductor: Conductor | None = None
        self._reported: object = None
        self._tickers: list[tuple[float, float, Callable[[], None]]] = []

    # ------------------------------------------------------------------ wiring

    def attach(self, link: LinkPort, reconnects: Callable[[], int]) -> None:
        self.link = link
        self.courier = Courier(self.store, link)
        self.reconnects = reconnects

    def every(self, interval_s: float, action: Callable[[], None]) -> None:
        """Run ``action`` on the director's thread every ``interval_s`` seconds."""
        self._tickers.append((self.monotonic() + interval_s, interval_s, action))

    def post(self, kind: str, payload: Any = None) -> None:
        """Thread-safe: queue an event for the director."""
        self.events.put((kind, payload))

    def now_s(self) -> float:
        return self.clock().timestamp()

    # ------------------------------------------------------------------ loop

    def run(self) -> str:
        """Process events until asked to stop; return ``"stop"`` or ``"restart"``."""
        self._boot()
        while self.exit_reason is None:
            timeout = self._due_tickers()
            try:
                kind, payload = self.events.get(timeout=timeout)
            except queue.Empty:
                continue
            try:
                self.handle(kind, payload)
            except Exception:
                log.exception("director failed to handle %s", kind)
            self.report_changes()
            self.pump()
        return self.exit_reason

    def report_changes(self) -> None:
        """Publish the status as soon as what plays or which programs are live changes."""
        if self.conductor is None:
            return
        shown = (self.conductor.stage.now_playing(), self.conductor.versions())
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

    def handle(self, kind: str, payload: Any) -> None:
        """Handle one event (also called directly by tests)."""
        if kind == "message":
            topic, body, token, retained = payload
            try:
                self.on_message(topic, body, retained)
            except sqlite3.Error:
                # The store could not record the outcome (disk full, I/O error): no PUBACK, so
                # the broker delivers the message again after the next reconnect.
                log.exception("could not record the outcome of a message on %s", topic)
                return
            except Exception:
                # Acknowledged all the same: one poisonous message must not come back forever.
                log.exception("failed to handle a message on %s", topic)
            self.pump()  # the ack leaves before the PUBACK
            if self.link is not None:
                self.link.ack(token)
        elif kind == "delivered" and self.courier is not None:
            self.courier.delivered(*payload)
        elif kind == "link_up":
            log.info("connected to the broker")
            self.publish_status()
        elif kind == "link_down":
            log.warning("disconnected from the broker: %s", payload)
        elif kind == "link_reset" and self.courier is not None:
            self.courier.reset()
        elif kind == "request":
            self.on_request(payload)
        elif kind in ("content", "player", "tick") and self.conductor is not None:
            if kind == "content":
                self.conductor.on_content(payload)
            elif kind == "player":
                self.conductor.on_player(payload)
            else:
                self.conductor.reconcile()
        elif kind == "player_started" and self.conductor is not None:
            self.conductor.stage.started(payload)
        elif kind == "event":
            severity, code, detail = payload
            self.event(severity, code, detail)
        elif kind == "reload":
            self.reload(payload)
        elif kind == "stop":
            self.exit_reason = "stop"

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
        handler = self._handler(env.type, ok.topic)
        if handler is None:
            return [
                self.ack(
                    env.id,
                    Status.FAILED,
                    "not_supported",
                    f"{env.type} is not supported by agent {__version__}",
                    seen=remember,
                )
            ]
        try:
            result: list[Ack] = handler(env, remember)
        except sqlite3.Error:
            raise
        except Exception as exc:
            # A bug or an unexpected condition: the sender gets an answer, and the document is
            # not executed again when it is redelivered.
            log.exception("%s %s failed", env.type, env.id)
            return [self.ack(env.id, Status.FAILED, "internal_error", repr(exc), seen=remember)]
        return result

    def _handler(self, doc_type: str, topic: str) -> Callable[[Envelope, Seen], list[Ack]] | None:
        """The method that executes ``doc_type``, if this agent supports it."""
        show = self.conductor
        if show is None and doc_type in PLAYBACK_CAPABILITIES:
            return None  # a director without players (tests, tools) executes none of these
        if show is not None:
            if doc_type == "program":
                return lambda env, seen: show.on_program(env, topic, seen)
            if doc_type in ("play.now", "emergency.start"):
                return lambda env, seen: show.on_override(env, topic, seen)
            if doc_type == "emergency.stop":
                return show.on_emergency_stop
        method: Callable[[Envelope, Seen], list[Ack]] | None = getattr(
            self, "cmd_" + doc_type.replace(".", "_"), None
        )
        return method

    def ack(
        self,
        doc_id: str | None,
        status: Status,
        reason: str | None = None,
        detail: str = "",
        *,
        topic: str | None = None,
        seen: tuple[str, float] | None = None,
        settings: dict[str, str | None] | None = None,
        extra: list[tuple[str, str, bytes, int]] | None = None,
        **changes: Any,
    ) -> Ack:
        """Write an ack (with any state change it reports) to the outbox in one transaction.

        ``changes`` are further ``Store.record`` arguments (programs going live, for example).
        """
        ack = Ack(
            cmd=doc_id,
            status=status,
            reason=reason,
            detail=detail[:500],
            at=format_time(self.clock()),
            topic=topic if doc_id is None else None,
        )
        dev_topic = self.topics.dev(self.config.device_id, "ack")
        messages = [*(extra or []), ("ack", dev_topic, ack.payload(), 1)]
        self.store.record(
            seen=seen, settings=settings, messages=messages, now=self.now_s(), **changes
        )
        return ack

    def event(self, severity: Literal["warning", "error"], code: str, detail: str) -> None:
        event = Event(
            at=format_time(self.clock()),
            severity=severity,
            code=code,
            detail=self.redactor(detail)[:1000],
        )
        topic = self.topics.dev(self.config.device_id, "event")
        self.store.enqueue("event", topic, event.payload(), 1, self.now_s())

    # ------------------------------------------------------------------ commands

    def cmd_ping(self, env: Envelope, seen: tuple[str, float]) -> list[Ack]:
        return [self.ack(env.id, Status.DONE, seen=seen)]

    def cmd_volume_set(self, env: Envelope, seen: tuple[str, float]) -> list[Ack]:
        body: VolumeSetBody = env.body
        log.info("volume set to %d%%", body.percent)
        if self.conductor is not None:
            self.conductor.stage.speaker.set_volume(body.percent)
        ack = self.ack(
            env.id,
            Status.DONE,
            detail=f"volume {body.percent}%",
            seen=seen,
            settings={"volume": str(body.percent)},
        )
        self.publish_status()  # the fleet sees the new volume now, not at the next interval
        return [ack]

    def cmd_logs_upload(self, env: Envelope, seen: tuple[str, float]) -> list[Ack]:
        body: LogsUploadBody = env.body
        lines = tail(self.config.paths.log_path, body.lines or 200, self.redactor)
        text = "".join(f"{line}\n" for line in lines).encode("utf-8")
        limit = 1 << 20  # what a broker normally accepts for one message
        if len(text) > limit:
            # Drop whole lines from the start: a cut inside a line may split a UTF-8 character.
            text = text[text.find(b"\n", len(text) - limit - 1) + 1 :]
        topic = self.topics.dev(self.config.device_id, f"logs/{env.id}")
        return [
            self.ack(
                env.id,
                Status.DONE,
                detail=f"{text.count(NEWLINE)} lines",
                seen=seen,
                extra=[("logs", topic, text, 1)],
            )
        ]

    def cmd_power_set(self, env: Envelope, seen: tuple[str, float]) -> list[Ack]:
        body: PowerSetBody = env.body
        assert self.conductor is not None  # see _handler
        if body.screen is None and body.amplifier is None:
            detail = "give screen and/or amplifier: on, off or auto"
            return [self.ack(env.id, Status.FAILED, "nothing_to_set", detail, seen=seen)]
        settings: dict[str, str | None] = {}
        parts = []
        if body.screen is not None:
            settings[SCREEN_MODE_SETTING] = None if body.screen == "auto" else body.screen
            parts.append(f"screen {body.screen}")
        if body.amplifier is not None:
            settings[AMPLIFIER_MODE_SETTING] = None if body.amplifier == "auto" else body.amplifier
            parts.append(f"amplifier {body.amplifier}")
        # The mode and its ack in one transaction; then the screen follows at once.
        ack = self.ack(env.id, Status.DONE, detail=", ".join(parts), seen=seen, settings=settings)
        self.conductor.stage.set_power(body.screen, body.amplifier)
        log.info("power set: %s", ", ".join(parts))
        self.conductor.reconcile()
        self.publish_status()
        return [ack]

    def cmd_stream_start(self, env: Envelope, seen: tuple[str, float]) -> list[Ack]:
        body: StreamStartBody = env.body
        assert self.conductor is not None  # see _handler
        if "speaker" not in body.channels:
            detail = "this agent relays streams to the loudspeakers only"
            return [self.ack(env.id, Status.FAILED, "not_supported", detail, seen=seen)]
        if not getattr(self.conductor.stage.speaker, "audible", True):
            detail = "no loudspeakers here ([speaker] enabled = false, or no sound output)"
            return [self.ack(env.id, Status.FAILED, "no_speaker", detail, seen=seen)]
        # Saved with the ack: a relay still wanted after a restart starts again.
        relay = json.dumps({"url": body.url, "level": body.level.value})
        detail = self.redactor(f"relaying {body.url}")
        ack = self.ack(env.id, Status.DONE, detail=detail, seen=seen, settings={"relay": relay})
        self.conductor.stage.relay(body.url, body.level)
        self.conductor.reconcile()
        return [ack]

    def cmd_stream_stop(self, env: Envelope, seen: tuple[str, float]) -> list[Ack]:
        assert self.conductor is not None  # see _handler
        settings: dict[str, str | None] = {"relay": None}
        ack = self.ack(env.id, Status.DONE, detail="relay stopped", seen=seen, settings=settings)
        self.conductor.stage.relay(None)
        self.conductor.reconcile()
        return [ack]

    def cmd_screenshot(self, env: Envelope, seen: tuple[str, float]) -> list[Ack]:
        body: ScreenshotBody = env.body
        try:
            png = self.screenshot(body.max_width)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return [self.ack(env.id, Status.FAILED, "screenshot_failed", detail, seen=seen)]
        if png is None:
            detail = "this device shows nothing on a screen ([screen] enabled = false?)"
            return [self.ack(env.id, Status.FAILED, "no_screen", detail, seen=seen)]
        topic = self.topics.dev(self.config.device_id, f"screenshot/{env.id}")
        return [
            self.ack(
                env.id,
                Status.DONE,
                detail=f"{len(png)} bytes PNG",
                seen=seen,
                extra=[("screenshot", topic, png, 1)],
            )
        ]

    def screenshot(self, max_width: int | None) -> bytes | None:
        """The screen's current frame as PNG (None: no screen to take it from)."""
        if self.conductor is None:
            return None
        return self.conductor.stage.screen.snapshot(max_width)

    def cmd_agent_restart(self, env: Envelope, seen: tuple[str, float]) -> list[Ack]:
        # "done" is acked by the new process (see _boot), once it is up.
        ack = self.ack(
            env.id,
            Status.ACCEPTED,
            detail="restarting",
            seen=seen,
            settings={"restart_ack": env.id},
        )
        self.exit_reason = "restart"
        return [ack]

    # ------------------------------------------------------------------ status

    @property
    def volume(self) -> int:
        return int(self.store.get_setting("volume", str(DEFAULT_VOLUME)) or DEFAULT_VOLUME)

    def status(self) -> DeviceStatus:
        connected = self.link.connected if self.link is not None else False
        now, usage, power = NowPlaying(), CacheUsage(), None
        if self.conductor is not None:
            stage = self.conductor.stage
            now = stage.now_playing()
            power = PowerState(
                screen=None if stage.screen_on is None else ("on" if stage.screen_on else "off"),
                screen_mode=stage.screen_mode,
                amplifier_mode=stage.amplifier_mode,
            )
            size, items = self.conductor.cache.usage()
            usage = CacheUsage(bytes=size, items=items)
            disk_free = self.conductor.cache.disk_free_bytes()
        else:
            disk_free = _disk_free(self.config.paths.cache_dir)
        return DeviceStatus(
            at=format_time(self.clock()),
            uptime_s=int(self.monotonic() - self.started),
            programs=self.store.program_versions(),
            now=now,
            volume=self.volume,
            cache=usage,
            disk_free_bytes=disk_free,
            temperature_c=_temperature(),
            link=LinkStats(reconnects=self.reconnects(), connected=connected),
            outbox=self.store.outbox_size(),
            power=power,
        )

    def publish_status(self) -> None:
        """Publish the retained status now (best effort: the next interval tries again)."""
        if self.link is None or not self.link.connected:
            return
        topic = self.topics.dev(self.config.device_id, "status")
        try:
            self.link.publish(topic, self.status().payload(), qos=0, retain=True)
        except Exception:
            log.exception("status not published")

    def housekeeping(self) -> None:
        dropped = self.store.forget_seen_before(self.now_s())
        if dropped:
            log.info("forgot %d expired document ids", dropped)
        self.collect_garbage()
        if self.conductor is not None:
            self.conductor.repair()

    def collect_garbage(self) -> list[str]:
        """Evict least-recently-used content over the quota, never what a program needs."""
        if self.conductor is None:
            return []
        evicted = self.conductor.cache.gc(self.conductor.keep())
        if evicted:
            log.info("cache: evicted %d items", len(evicted))
        return evicted

    # ------------------------------------------------------------------ control socket

    def on_request(self, req: Request) -> None:
        try:
            answer = self._answer(req)
        except Exception as exc:  # a bad request must not stop the director
            log.exception("control request %s failed", req.action)
            answer = {"ok": False, "error": str(exc)}
        with contextlib.suppress(queue.Full):
            req.reply.put_nowait(answer)

    def _answer(self, req: Request) -> dict[str, Any]:
        if req.action == "status":
            return {
                "ok": True,
                "status": self.status().model_dump(mode="json"),
                "device": self.config.device_id,
                "agent_version": __version__,
            }
        if req.action == "cache.gc" and self.conductor is not None:
            evicted = self.collect_garbage()
            size, items = self.conductor.cache.usage()
            return {"ok": True, "evicted": evicted, "bytes": size, "items": items}
        if req.action == "screenshot":
            max_width = req.args.get("max_width")
            png = self.screenshot(int(max_width) if max_width else None)
            if png is None:
                return {"ok": False, "error": "this agent has no screen ([screen] enabled?)"}
            return {"ok": True, "png": base64.b64encode(png).decode("ascii")}
        if req.action in ("test-screen", "screen") and self.conductor is not None:
            screen = self.conductor.stage.screen
            if not isinstance(screen, TechnicianScreen):
                return {"ok": False, "error": "this agent has no screen ([screen] enabled?)"}
            if req.action == "test-screen":
                screen.show_test_card(float(req.args.get("seconds", 10)))
            return {"ok": True, "screen": screen.describe()}
        if req.action == "say" and self.conductor is not None:
            voice = req.args.get("voice")
            why = self.conductor.stage.say(
                str(req.args.get("text", "")),
                None if voice is None else str(voice),
                bool(req.args.get("chime")),
            )
            if why is not None:
                return {"ok": False, "error": f"{why}; try later"}
            return {"ok": True, "detail": f"playing on the loudspeakers at volume {self.volume}%"}
        if req.action == "volume":
            percent = int(req.args["percent"])
            if not 0 <= percent <= 100:
                return {"ok": False, "error": "volume: 0 to 100"}
            self.store.record(settings={"volume": str(percent)}, now=self.now_s())
            if self.conductor is not None:
                self.conductor.stage.speaker.set_volume(percent)
            self.publish_status()
            return {"ok": True}
        if req.action == "logs":
            lines = int(req.args.get("lines", 100))
            return {"ok": True, "lines": tail(self.config.paths.log_path, lines, self.redactor)}
        if req.action == "inject":
            # A signed document brought by a technician (e.g. on a USB stick when the link is
            # down): it passes exactly the same checks, as if it came on its target's topic.
            doc = str(req.args.get("document", ""))
            topic = self._topic_for(doc)
            acks = self.on_message(topic, doc.encode("utf-8"), limited=False)
            return {"ok": True, "acks": [a.model_dump(mode="json") for a in acks]}
        return {"ok": False, "error": f"unknown action {req.action!r}"}

    def _topic_for(self, doc: str) -> str:
        try:
            data = json.loads(doc)
            target, leaf = (
                str(data["target"]),
                "program" if data.get("type") == "program" else "cmd",
            )
            return self.topics.for_target(target, leaf)
        except (ValueError, KeyError, TypeError):
            return self.topics.dev(self.config.device_id, "cmd")

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


def _disk_free(path: Path) -> int:
    try:
        return shutil.disk_usage(path if path.exists() else path.parent).free
    except OSError:
        return 0


def _temperature() -> int | None:
    try:
        raw = Path("/sys/class/thermal/thermal_zone0/temp").read_text().strip()
        return round(int(raw) / 1000)
    except (OSError, ValueError):
        return None
