"""Machinery for the update tests: release slots made from this tree, artifacts served over
HTTP, and a supervisor that does what the unit's ``Restart=always`` does (start
``ROOT/current/bin/ttcs-agent`` again whenever it exits), since there is no systemd here."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.control_socket import AgentNotRunning, request
from agent.slots import Slots
from controlplane.keys import SigningKey
from controlplane.release import tree_slot
from protocol.release import pack_slot
from tests.helpers import ROOT, Broker, Device, Listener, MediaServer, command, provision, wait_for

A, B = "1.0.0", "1.1.0"


@dataclass
class Releases:
    """A releases root with slot ``A`` current, and artifacts made on demand."""

    tmp: Path
    key: SigningKey  # the release key
    root: Path = field(init=False)
    slots: Slots = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.tmp / "opt"
        self.slots = Slots(self.root)
        self.install(A)

    def install(self, version: str) -> None:
        """Put ``version``'s slot in place as it would be after a first installation."""
        tree_slot(ROOT, self.slots.path(version), version, Path(sys.executable))
        self.slots.switch(version)

    def artifact(
        self, version: str, patch: dict[str, tuple[str, str]] | None = None, key: Any = None
    ) -> Path:
        """A signed artifact of this tree as ``version``; ``patch`` maps a file of the slot's
        ``lib/`` to (old, new) text replaced in it (to make a broken release)."""
        build = self.tmp / f"build-{version}-{len(list(self.tmp.glob('build-*')))}"
        slot = tree_slot(ROOT, build / version, version, Path(sys.executable))
        for name, (old, new) in (patch or {}).items():
            path = slot / "lib" / name
            text = path.read_text()
            assert old in text, f"{old!r} not in {name}"
            path.write_text(text.replace(old, new, 1))
        signer = key or self.key
        out = build / f"{version}.release"
        pack_slot(slot, version, out, signer.key, signer.kid)
        return out


def update_section(release_key: SigningKey, root: Path, extra: str = "", health_s: int = 60) -> str:
    return (
        f'[update]\nroot = "{root}"\nhealth_timeout_s = {health_s}\nmax_starts = 2\n'
        f"min_free_mb = 1\n{extra}\n"
        f'[update.release_keys]\n{release_key.kid} = "{release_key.public_b64}"\n'
    )


def provision_updatable(
    tmp: Path,
    broker: Broker,
    key: SigningKey,
    release_key: SigningKey,
    root: Path,
    extra: str = "",
    health_s: int = 60,
) -> Device:
    """A device whose ``[update]`` trusts ``release_key`` and has its slots under ``root``."""
    return provision(tmp, broker, key, extra=update_section(release_key, root, extra, health_s))


class Supervisor:
    """Runs ``ROOT/current/bin/ttcs-agent run`` and starts it again whenever it exits."""

    def __init__(
        self, device: Device, root: Path, restart_s: float = 0.2, wrap: list[str] | None = None
    ) -> None:
        self.device, self.root, self.restart_s = device, root, restart_s
        self.wrap = wrap or []  # a command prefix, e.g. read_only_root(root)
        self.output = device.state_dir.parent / "agent.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def start(self) -> Supervisor:
        self.device.state_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        launcher = self.root / "current" / "bin" / "ttcs-agent"
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    return
                self.proc = subprocess.Popen(
                    [*self.wrap, str(launcher), "run", "--config", str(self.device.config)],
                    stdout=self.output.open("ab"),
                    stderr=subprocess.STDOUT,
                    cwd=self.device.state_dir.parent,
                    env=env,
                )
                self.starts += 1
            self.proc.wait()
            self._stop.wait(self.restart_s)

    def kill(self) -> None:
        """SIGKILL the agent now (the supervisor starts it again)."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        self._thread.join(20)


def read_only_root(root: Path) -> list[str]:
    """A prefix that runs a command as the unit's sandbox leaves the agent: ``root`` read-only
    (its own mount namespace, as ``ProtectSystem=strict``), no capabilities to undo that."""
    script = (
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && '
        'exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, str(root)]


class SlotInstaller:
    """What ``ttcs-agent-slots.path`` does: whenever the agent's request is there, run
    ``ROOT/current/bin/ttcs-agent slots-apply`` (as root, a process of its own)."""

    def __init__(self, device: Device, root: Path) -> None:
        self.device, self.root = device, root
        self.runs: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slot-installer", daemon=True)

    def __enter__(self) -> SlotInstaller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def apply(self) -> str:
        """Run the installer once; its output."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        launcher = self.root / "current" / "bin" / "ttcs-agent"
        argv = [str(launcher), "slots-apply", "--config", str(self.device.config)]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        self.runs.append(done.stdout.strip())
        return done.stdout

    def _run(self) -> None:
        request = self.device.state_dir / "slots" / "request.json"
        while not self._stop.wait(0.1):
            if request.exists():
                self.apply()


def running_version(device: Device) -> str | None:
    """The version that answers on the control socket, once it is connected."""
    try:
        answer = request(device.socket, "status", timeout=2)
    except (OSError, AgentNotRunning):
        return None
    if not answer.get("ok") or not answer["status"]["link"]["connected"]:
        return None
    return str(answer["agent_version"])


def send_update(
    listener: Listener, key: SigningKey, media: MediaServer, artifact: Path, **body: Any
) -> str:
    """Serve ``artifact`` and send the ``agent.update`` for it; return the command's id."""
    data = artifact.read_bytes()
    url = media.add(f"releases/{artifact.parent.name}/{artifact.name}", data)
    full = {
        "version": artifact.stem,
        "url": url,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        **body,
    }
    topic, payload, doc = command(key, "agent.update", body=full)
    listener.publish(topic, payload)
    return str(doc["id"])


def settled(device: Device, slots: Slots) -> str | None:
    """The version running once no update is under way, or None while one is."""
    if (device.state_dir / "update.json").exists():
        return None
    version = running_version(device)
    return version if version is not None and version == slots.current() else None


def wait_settled(device: Device, slots: Slots, timeout: float = 60) -> str:
    result: str = wait_for(lambda: settled(device, slots), timeout, "the update to settle")
    return result


def last_state_version(listener: Listener, device_id: str) -> str | None:
    births = [s for s in listener.json_on(f"/dev/{device_id}/state") if s.get("online") is True]
    return str(births[-1]["agent_version"]) if births else None
