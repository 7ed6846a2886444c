"""The updater's decisions at boot (agent/update.py): start the new release on trial, count its
starts, hand back to the previous release with the store as it was. The process boundary
(``execv``) is the one thing replaced: it records what would have run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent import __version__
from agent.config import AgentConfig, ConfigError, parse_config
from agent.logs import Redactor
from agent.slots import Slots, UpdateJournal, UpdateRecord
from agent.store import Store, StoreTooNew
from agent.update import DB_BEFORE, TRIAL_LOG, Updater, health_problem

RELEASE_KEY = "rDXFAltaSafdUDs32RhetpKAuiGqQdAJA7FnfUf9MSs="
COMMAND_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
NEW = "99.0.0"


class Exec:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, path: str, argv: list[str]) -> None:
        self.calls.append(argv)


def config(tmp_path: Path) -> AgentConfig:
    return parse_config(
        {
            "device_id": "q10-p12-bang-01",
            "trust": {"keys": {"hcm-2026": COMMAND_KEY}},
            "paths": {"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "c")},
            "update": {
                "root": str(tmp_path / "opt"),
                "release_keys": {"rel": RELEASE_KEY},
                "max_starts": 2,
                "health_timeout_s": 60,
            },
        }
    )


@pytest.fixture
def rig(tmp_path: Path) -> tuple[Updater, UpdateJournal, Exec, AgentConfig]:
    cfg = config(tmp_path)
    cfg.paths.state_dir.mkdir(parents=True)
    slots = Slots(cfg.update.root)
    for version in (__version__, NEW):
        launcher = slots.launcher(version)
        launcher.parent.mkdir(parents=True)
        launcher.write_text("#!/bin/false\n")
    slots.switch(__version__)
    db = sqlite3.connect(cfg.paths.state_dir / "agent.db")
    db.execute("create table settings (k text, v text)")
    db.execute("insert into settings values ('schema', 'old')")
    db.commit()
    db.close()
    execv = Exec()
    updater = Updater(cfg, tmp_path / "agent.toml", Redactor(), execv=execv)
    return updater, updater.journal, execv, cfg


def schema(cfg: AgentConfig) -> str:
    db = sqlite3.connect(cfg.paths.state_dir / "agent.db")
    try:
        return str(db.execute("select v from settings").fetchone()[0])
    finally:
        db.close()


def test_a_trial_starts_the_new_slot_until_its_starts_run_out(
    rig: tuple[Updater, UpdateJournal, Exec, AgentConfig],
) -> None:
    updater, journal, execv, cfg = rig
    journal.write(UpdateRecord("cmd-00000001", __version__, NEW, "trial"))
    try:
        updater.on_boot()
    finally:
        updater._release_output()  # the test process keeps its own stdout and stderr
    launcher = str(Slots(cfg.update.root).launcher(NEW))
    assert execv.calls == [[launcher, "run", "--config", str(updater.config_path)]]
    record = journal.read()
    assert record is not None and record.starts == 1 and record.deadline is not None
    assert (cfg.paths.state_dir / DB_BEFORE).exists()
    # The new version changes the store's schema, then dies; started again, then dies again.
    db = sqlite3.connect(cfg.paths.state_dir / "agent.db")
    db.execute("update settings set v = 'new'")
    db.commit()
    db.close()
    (cfg.paths.state_dir / TRIAL_LOG).write_text("Traceback: B is broken\n")
    journal.write(record.but(starts=2))
    updater.on_boot()
    assert len(execv.calls) == 1  # not started a third time
    record = journal.read()
    assert record is not None and record.phase == "rolled_back"
    assert "stopped 2 times" in record.detail
    assert schema(cfg) == "old"  # the store as the previous version left it
    assert Slots(cfg.update.root).current() == __version__


def test_past_its_deadline_the_new_version_is_not_started(
    rig: tuple[Updater, UpdateJournal, Exec, AgentConfig],
) -> None:
    updater, journal, execv, _ = rig
    journal.write(UpdateRecord("cmd-00000001", __version__, NEW, "trial", 1, deadline=1.0))
    updater.on_boot()
    record = journal.read()
    assert execv.calls == []
    assert record is not None and record.phase == "rolled_back"
    assert record.detail == "not healthy within 60 s"


def test_nothing_under_way_nothing_done(
    rig: tuple[Updater, UpdateJournal, Exec, AgentConfig],
) -> None:
    updater, journal, execv, _ = rig
    updater.on_boot()
    assert execv.calls == [] and journal.read() is None


def test_a_release_key_may_not_be_a_command_key(tmp_path: Path) -> None:
    data = {
        "device_id": "q10-p12-bang-01",
        "trust": {"keys": {"hcm-2026": COMMAND_KEY}},
        "update": {"release_keys": {"rel": COMMAND_KEY}},
    }
    with pytest.raises(ConfigError, match="must not also be a \\[trust\\] command key"):
        parse_config(data)
    with pytest.raises(ConfigError, match=r"'update\.min_version'"):
        parse_config({"device_id": "q10-p12-bang-01", "update": {"min_version": "1.0-rc1"}})


class _Stage:
    def __init__(self, screen: bool = True, speaker: bool = True) -> None:
        self.screen, self.speaker = screen, speaker

    def dead_player(self) -> str | None:
        return (
            None
            if self.screen and self.speaker
            else ("speaker" if self.screen else "screen's render")
        )


class _Link:
    def __init__(self, connected: bool = True, alive: bool = True) -> None:
        self.connected, self.alive = connected, alive


def test_health_needs_the_link_and_both_threads() -> None:
    assert health_problem(_Link(), _Stage()) is None
    assert health_problem(_Link(connected=False), _Stage()) == "not connected to the broker"
    assert health_problem(_Link(), _Stage(screen=False)) == "the screen's render thread is gone"
    assert health_problem(_Link(), _Stage(speaker=False)) == "the speaker thread is gone"


def test_a_rolled_back_schema_migration_leaves_the_old_schema(
    rig: tuple[Updater, UpdateJournal, Exec, AgentConfig],
) -> None:
    updater, journal, _, cfg = rig
    db_path = cfg.paths.state_dir / "agent.db"
    db_path.unlink()
    Store(db_path).close()  # the previous version's store: schema version 1
    journal.write(UpdateRecord("cmd-00000001", __version__, NEW, "trial"))
    try:
        updater.on_boot()  # copies the store aside, starts the new version
    finally:
        updater._release_output()
    # The new version migrates the store to version 2, then crashes before it is proven.
    newer = Store(db_path, migrations=("CREATE TABLE extra (k TEXT); ALTER TABLE seen ADD x",))
    newer.close()
    with pytest.raises(StoreTooNew, match="schema is version 2, this agent knows up to 1"):
        Store(db_path)
    record = journal.read()
    assert record is not None
    journal.write(record.but(starts=2))
    updater.on_boot()  # out of starts: back to the previous version, and its store
    record = journal.read()
    assert record is not None and record.phase == "rolled_back"
    Store(db_path).close()  # the previous version starts on its own schema
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall() == []
    finally:
        db.close()
