"""``agent.update``: install a signed release beside the running one, try it, keep it or go back.

The steps, each leaving a whole state if the power goes (docs/update.md):

1. ``begin`` (director thread): checks that need no download; records ``staging``; a worker
   thread downloads the artifact into the content cache (resumable, size- and hash-checked),
   has it verified and unpacked into ``releases/VERSION`` (``agent/installer.py``: by the agent
   itself or by the package's root-side installer), records ``trial`` and stops: systemd
   (``Restart=always``) starts ``current`` again, which is still the old version.
2. ``on_boot`` (first thing at start, in whatever version ``current`` runs): on ``trial`` the
   old version counts the start and ``exec``s the new slot's ``bin/ttcs-agent``, until the new
   version has had ``max_starts`` starts or its deadline passed; then it stays, and acks
   ``failed``/``rolled_back`` with the new version's last log lines.
3. ``tick`` (director thread, twice a second) in the new version: once it is connected, its
   screen and speaker threads alive and its status published, it points ``current`` at itself
   (one rename), acks ``done`` and removes older slots. Not healthy in ``health_timeout_s``:
   it stops, and the old version takes over at the next start.

``current`` only ever names a complete slot, and moves only once the new version is proven.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent import __version__
from agent.cache import ContentCache
from agent.config import AgentConfig
from agent.download import DownloadError
from agent.installer import slot_writer
from agent.logs import Redactor, tail
from agent.slots import Slots, UpdateJournal, UpdateRecord
from protocol import AgentUpdateBody, Envelope, Media, Status, Topics
from protocol.release import ReleaseError, version_key

log = logging.getLogger(__name__)

MB = 1024 * 1024
# A slot takes about this many times its compressed artifact on disk.
UNPACKED_FACTOR = 4
TRIAL_LOG = "update-trial.log"
DB_BEFORE = "agent.db.before-update"
OUTPUT_FDS_ENV = "TTCS_UPDATE_OUTPUT_FDS"
LOG_LINES = 200


@dataclass(frozen=True)
class Outcome:
    """The immediate answer to ``begin``: the ack's status, reason and detail."""

    status: Status
    reason: str | None = None
    detail: str = ""


class AckSink(Protocol):
    """The director's ``ack`` (outbox, in one transaction)."""

    def __call__(
        self,
        doc_id: str | None,
        status: Status,
        reason: str | None = None,
        detail: str = "",
        *,
        extra: list[tuple[str, str, bytes, int]] | None = None,
    ) -> Any: ...


@dataclass
class UpdatePorts:
    """What the updater uses of the running agent, wired by the daemon."""

    ack: AckSink
    cache: ContentCache
    unhealthy: Callable[[], str | None]  # None when healthy, else what is missing
    publish_status: Callable[[], None]
    restart: Callable[[], None]  # stop; systemd starts ``current`` again


class _Link(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def alive(self) -> bool: ...


class _Players(Protocol):
    def dead_player(self) -> str | None: ...


def health_problem(link: _Link, players: _Players) -> str | None:
    """What keeps the agent from being healthy: link, screen or speaker thread; None if all well."""
    if not link.connected:
        return "not connected to the broker"
    if not link.alive:
        return "the MQTT link thread is gone"
    gone = players.dead_player()
    return None if gone is None else f"the {gone} thread is gone"


class Updater:
    """The one entry of ``agent.update``: ``on_boot``, ``begin`` and ``tick``."""

    def __init__(
        self,
        config: AgentConfig,
        config_path: Path,
        redactor: Redactor,
        clock: Callable[[], float] = time.time,
        execv: Callable[[str, list[str]], None] = os.execv,
    ) -> None:
        self.config, self.config_path, self.redactor = config, config_path, redactor
        self.settings = config.update
        self.slots = Slots(self.settings.root)
        self.writer = slot_writer(config)
        self.journal = UpdateJournal(config.paths.state_dir / "update.json")
        self.clock, self.execv = clock, execv
        self.topics = Topics(config.mqtt.topic_prefix)
        self.ports: UpdatePorts | None = None
        self._results: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._trial_until: float | None = None  # monotonic; set while this version is on trial

    def attach(self, ports: UpdatePorts) -> None:
        self.ports = ports

    # ------------------------------------------------------------------ boot

    def on_boot(self) -> None:
        """Continue an update under way. May replace this process by the new slot (``exec``)."""
        record = self.journal.read()
        if record is None or record.phase != "trial":
            return  # staging (interrupted), committed, rolled_back: ``tick`` acks them
        if __version__ == record.to_version:
            if self.slots.current() != record.to_version:
                self._trial_until = time.monotonic() + self.settings.health_timeout_s
                log.info("on trial: %s must prove healthy", record.to_version)
            return
        if __version__ != record.from_version:
            self.journal.write(record.but(phase="rolled_back", detail="superseded"))
            return
        now = self.clock()
        why = None
        if not self.slots.has(record.to_version):
            why = f"release slot {record.to_version} is gone"
        elif record.starts >= self.settings.max_starts:
            why = record.detail or f"it stopped {record.starts} times before it proved healthy"
        elif record.deadline is not None and now >= record.deadline:
            why = f"not healthy within {self.settings.health_timeout_s} s"
        if why is not None:
            self._roll_back(record, why)
            return
        if record.starts == 0:
            self._save_database()
        deadline = record.deadline or now + self.settings.health_timeout_s
        self.journal.write(record.but(starts=record.starts + 1, deadline=deadline))
        launcher = str(self.slots.launcher(record.to_version))
        log.info("starting %s on trial (start %d)", record.to_version, record.starts + 1)
        logging.shutdown()
        self._capture_output()
        try:
            self.execv(launcher, [launcher, "run", "--config", str(self.config_path)])
        except OSError as exc:  # not even started: no point in trying again
            self._roll_back(record, f"{launcher} cannot be started: {exc.strerror or exc}")

    def _roll_back(self, record: UpdateRecord, why: str) -> None:
        log.error("update to %s failed (%s); staying on %s", record.to_version, why, __version__)
        self._restore_database()
        self._release_output()
        self.journal.write(record.but(phase="rolled_back", detail=why))

    def _capture_output(self) -> None:
        """The new version's stdout and stderr (tracebacks at import too) go to the trial log;
        the old ones stay open (inherited) for it to take back once healthy."""
        state = self.config.paths.state_dir
        fd = os.open(state / TRIAL_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        if OUTPUT_FDS_ENV not in os.environ:
            saved = [os.dup(1), os.dup(2)]
            for kept in saved:
                os.set_inheritable(kept, True)
            os.environ[OUTPUT_FDS_ENV] = ",".join(map(str, saved))
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def _release_output(self) -> None:
        """Back to the output the agent was started with (the journal under systemd)."""
        saved = os.environ.pop(OUTPUT_FDS_ENV, None)
        if saved is None:
            return
        try:
            out, err = (int(x) for x in saved.split(","))
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.close(out)
            os.close(err)
        except (OSError, ValueError):
            log.warning("could not restore stdout and stderr (%s)", saved)

    def _save_database(self) -> None:
        """A copy of the store before the new version may change its schema."""
        db = self.config.paths.state_dir / "agent.db"
        if not db.exists():
            return
        copy = self.config.paths.state_dir / DB_BEFORE
        copy.unlink(missing_ok=True)
        src, dst = sqlite3.connect(db), sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()

    def _restore_database(self) -> None:
        copy = self.config.paths.state_dir / DB_BEFORE
        if copy.exists():
            db = self.config.paths.state_dir / "agent.db"
            for suffix in ("-wal", "-shm"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
            os.replace(copy, db)

    # ------------------------------------------------------------------ command

    def begin(self, env: Envelope) -> Outcome:
        """Check an ``agent.update`` and start it; the final ack comes from ``tick``."""
        body: AgentUpdateBody = env.body
        refused = self._refusal(body)
        if refused is not None:
            log.warning(
                "agent.update %s to %s refused: %s (%s)",
                env.id,
                body.version,
                refused.reason,
                refused.detail,
            )
            return refused
        if body.version == __version__:
            return Outcome(Status.DONE, detail=f"{__version__} is running already")
        record = UpdateRecord(env.id, __version__, body.version, "staging")
        self.journal.write(record)
        self._worker = threading.Thread(
            target=self._stage, args=(record, body), name="update", daemon=True
        )
        self._worker.start()
        return Outcome(Status.ACCEPTED, detail=f"fetching {body.version}")

    def _refusal(self, body: AgentUpdateBody) -> Outcome | None:
        def no(reason: str, detail: str) -> Outcome:
            return Outcome(Status.FAILED, reason, detail)

        if not self.settings.release_keys:
            return no("not_configured", "no [update] release_keys on this device")
        floor = self.settings.min_version
        if floor is not None and version_key(body.version) < version_key(floor):
            return no("below_floor", f"{body.version} is older than the floor {floor}")
        if self.ports is None:
            return no("not_ready", "the agent is still starting")
        if self.journal.read() is not None or (self._worker and self._worker.is_alive()):
            return no("update_in_progress", "another agent.update is under way")
        if self.writer.mode == "direct":
            if os.access(self.slots.root, os.W_OK):
                self.slots.releases.mkdir(exist_ok=True)
            if not os.access(self.slots.releases, os.W_OK):
                return no("not_writable", f"{self.slots.releases} is not writable by the agent")
        need = body.size * UNPACKED_FACTOR + self._min_free(body) * MB
        if self.slots.free_bytes() < need:
            free = self.slots.free_bytes() // MB
            return no("no_space", f"{free} MB free, {need // MB} MB needed")
        return None

    def _min_free(self, body: AgentUpdateBody) -> int:
        return body.min_free_mb if body.min_free_mb is not None else self.settings.min_free_mb

    def _stage(self, record: UpdateRecord, body: AgentUpdateBody) -> None:
        """Worker thread: download, verify, unpack. Posts (cmd, reason, detail) for ``tick``."""
        assert self.ports is not None  # begin checked it
        media = Media(url=body.url, sha256=body.sha256, size=body.size, mime="application/x-tar")
        try:
            self.ports.cache.ensure(media)
            artifact = self.ports.cache.path(body.sha256)
            kid = self.writer.install(artifact, body.version, self._min_free(body))
            self.journal.write(record.but(phase="trial"))
            log.info("release %s (signed by %s) unpacked (%s)", body.version, kid, self.writer.mode)
            self._results.put((record.cmd, "", ""))
        except (DownloadError, ReleaseError) as exc:
            self._results.put((record.cmd, exc.reason, exc.detail))
        except Exception as exc:
            log.exception("agent.update %s failed", record.cmd)
            self._results.put((record.cmd, "update_failed", f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------------ tick

    def tick(self) -> None:
        """Director thread, twice a second: finish what the worker, a boot or a trial left."""
        ports = self.ports
        if ports is None:
            return
        while not self._results.empty():
            cmd, reason, detail = self._results.get()
            if reason:
                log.warning("agent.update %s failed: %s (%s)", cmd, reason, detail)
                ports.ack(cmd, Status.FAILED, reason, self.redactor(detail))
                self.journal.clear()  # only once its ack is written
            else:
                log.info("agent.update %s: restarting into the new release", cmd)
                ports.restart()
                return
        if self._worker is not None and self._worker.is_alive():
            return
        record = self.journal.read()
        if record is None:
            return
        if self._trial_until is not None:
            self._trial(ports, record)
        elif record.phase == "staging":
            log.warning("agent.update %s interrupted (the agent stopped during it)", record.cmd)
            ports.ack(record.cmd, Status.FAILED, "interrupted", "the agent stopped during it")
            self.journal.clear()
        elif record.phase == "rolled_back":
            self._ack_rolled_back(ports, record)
        elif record.phase == "committed" or (
            record.phase == "trial" and self.slots.current() == __version__ == record.to_version
        ):
            self._finish(ports, record)

    def _trial(self, ports: UpdatePorts, record: UpdateRecord) -> None:
        problem = ports.unhealthy()
        if problem is None:
            ports.publish_status()
            problem = ports.unhealthy()
        if problem is None:
            try:
                self.writer.commit(__version__)
            except (OSError, ReleaseError) as exc:  # tried again at the next tick
                log.error("cannot point current at %s: %s", __version__, exc)
                return
            self._trial_until = None
            self.journal.write(record.but(phase="committed"))
            self._release_output()
            (self.config.paths.state_dir / DB_BEFORE).unlink(missing_ok=True)
            self._finish(ports, record)
        elif self._trial_until is not None and time.monotonic() >= self._trial_until:
            why = f"not healthy within {self.settings.health_timeout_s} s: {problem}"
            log.error("%s; stopping, the previous release takes over", why)
            self._trial_until = None
            self.journal.write(record.but(starts=self.settings.max_starts, detail=why))
            ports.restart()

    def _finish(self, ports: UpdatePorts, record: UpdateRecord) -> None:
        detail = f"{record.from_version} -> {record.to_version}"
        log.info("agent.update %s done: %s", record.cmd, detail)
        ports.ack(record.cmd, Status.DONE, detail=detail)
        self.journal.clear()
        (self.config.paths.state_dir / TRIAL_LOG).unlink(missing_ok=True)
        self._clean({__version__, record.from_version})

    def _ack_rolled_back(self, ports: UpdatePorts, record: UpdateRecord) -> None:
        trial_log = self.config.paths.state_dir / TRIAL_LOG
        lines = tail(trial_log, LOG_LINES, self.redactor)
        head = f"{record.to_version} rolled back to {record.from_version}: {record.detail}"[:300]
        text = "".join(f"\n{line}" for line in lines[-10:])
        room = 500 - len(head)
        detail = head + (text if len(text) <= room else "\n…" + text[len(text) - room + 2 :])
        topic = self.topics.dev(self.config.device_id, f"logs/{record.cmd}")
        body = "".join(f"{line}\n" for line in lines).encode("utf-8")
        ports.ack(
            record.cmd,
            Status.FAILED,
            "rolled_back",
            detail,
            extra=[("logs", topic, body, 1)],
        )
        self.journal.clear()
        trial_log.unlink(missing_ok=True)
        stale = (record.to_version,) if record.to_version != __version__ else ()
        self._clean({__version__}, stale)

    def _clean(self, keep: set[str], stale: tuple[str, ...] = ()) -> None:
        """Remove ``stale`` and the slots beyond ``keep_previous`` (never current's, dpkg's)."""
        if self.writer.mode == "direct":
            self.slots.clean_hidden()
        removed = []
        for version in [*stale, *self.slots.stale(keep, self.settings.keep_previous)]:
            try:
                if self.slots.path(version).exists():
                    self.writer.remove(version)
                    removed.append(version)
            except (OSError, ReleaseError) as exc:
                log.warning("release slot %s not removed: %s", version, exc)
        if removed:
            log.info("removed release slots: %s", ", ".join(removed))
