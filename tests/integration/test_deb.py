"""The Debian package: built by ``scripts/build-deb`` (dpkg-buildpackage, then lintian), installed
with apt into a scratch Debian 12 root, then removed, installed again and purged there.

The root is a minimal Debian 12 made by mmdebstrap from the Debian mirror with the package's
dependencies (cached in build/deb-test/ by that list). It is entered with chroot, so the
maintainer scripts run as they do on a device, and the installed agent runs from
/opt/ttcs-agent/... with the absolute paths its virtual environment was made for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import __version__
from tests.helpers import ROOT

SLOT = f"/opt/ttcs-agent/releases/{__version__}"
CONFFILE = "/etc/ttcs-agent/agent.toml"
MARKER = "/etc/ttcs-agent/NOT-CONFIGURED"
UNIT = "/lib/systemd/system/ttcs-agent.service"
# Kept between runs (`make clean` removes it): the scratch roots' base, one per dependency list.
CACHE = ROOT / "build" / "deb-test"
MIRROR = os.environ.get("TTCS_DEBIAN_MIRROR", "http://deb.debian.org/debian")

pytestmark = [
    pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian system (no dpkg)"),
    pytest.mark.skipif(
        os.geteuid() != 0, reason="installing into a scratch root needs root (chroot, mount)"
    ),
    # The first run builds the package (~2 minutes on 2 cores, then reused while the source
    # is unchanged) and the base root (~30 s, then cached).
    pytest.mark.timeout(900),
]


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


class ScratchRoot:
    """A Debian 12 root unpacked into a temporary directory, entered with chroot."""

    def __init__(self, path: Path, base: Path) -> None:
        self.path = path
        path.mkdir()
        _run(["tar", "-xf", str(base), "-C", str(path)])

    def __truediv__(self, absolute: str) -> Path:
        return self.path / absolute.lstrip("/")

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the root, as root, with a clean environment and /proc mounted."""
        # A mount namespace of its own: /proc (apt, dpkg and Python read it) goes with it.
        enter = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
        env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C.UTF-8"]
        env.append("DEBIAN_FRONTEND=noninteractive")
        inside = ["env", "-i", *env, *argv]
        proc = subprocess.run(
            ["unshare", "--mount", "--fork", "sh", "-c", enter, str(self.path), *inside],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stderr}"
        return proc

    def apt_install(self, deb: Path) -> None:
        shutil.copy(deb, self / f"/tmp/{deb.name}")
        # Its dependencies are all in the base, and the base has no package lists (mmdebstrap
        # removes them): a dependency missing from the base would fail the install here.
        self.apt("install", f"/tmp/{deb.name}")

    def apt(self, *args: str) -> None:
        # No pseudo-terminal for dpkg's output: the root has no /dev/pts.
        self.run("apt-get", "--yes", "-o", "Dpkg::Use-Pty=0", *args)

    def status(self) -> str:
        """dpkg's status of the package: 'install ok installed', 'deinstall ok config-files' …"""
        proc = self.run("dpkg-query", "-W", "-f=${Status}", "ttcs-agent", check=False)
        return proc.stdout if proc.returncode == 0 else "not-installed"

    def user(self, name: str) -> list[str] | None:
        for line in (self / "/etc/passwd").read_text().splitlines():
            if line.split(":")[0] == name:
                return line.split(":")
        return None

    def members(self, group: str) -> list[str]:
        for line in (self / "/etc/group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == group:
                return [m for m in fields[3].split(",") if m]
        return []

    def gid(self, group: str) -> int:
        for line in (self / "/etc/group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == group:
                return int(fields[2])
        raise AssertionError(f"no group {group} in the root")


def _fields(deb: Path) -> dict[str, str]:
    """The package's control fields (the first line of each)."""
    out = _run(["dpkg-deb", "--field", str(deb)]).stdout
    return dict(re.findall(r"^([\w-]+): (.*)$", out, re.MULTILINE))


@pytest.fixture(scope="module")
def deb() -> Path:
    """The package from ``scripts/build-deb``: built and lintian-checked once per source tree."""
    proc = _run([str(ROOT / "scripts" / "build-deb")], timeout=1500)
    path = Path(proc.stdout.strip().splitlines()[-1])
    arch = _run(["dpkg", "--print-architecture"]).stdout.strip()
    assert path == ROOT / "dist" / f"ttcs-agent_{__version__}_{arch}.deb"
    return path


@pytest.fixture(scope="module")
def base(deb: Path) -> Path:
    """A tarball of a minimal Debian 12 with the package's dependencies, not the package."""
    # mmdebstrap and the chroot mount /proc in a mount namespace of their own: root alone is
    # not enough where namespaces are refused (an unprivileged container, for one).
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here ({probe.stderr.decode().strip()}): cannot chroot")
    depends = _fields(deb)["Depends"]
    # The first of each set of alternatives; versions are those of Debian 12 itself.
    packages = sorted({alt.split("|")[0].split("(")[0].strip() for alt in depends.split(",")})
    key = hashlib.sha256(f"{MIRROR} {packages}".encode()).hexdigest()[:16]
    tarball = CACHE / f"bookworm-{key}.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        part = CACHE / f"bookworm-{key}.part.tar"  # mmdebstrap picks the format by the suffix
        include = f"--include={','.join(packages)}"
        options = ["--variant=minbase", "--mode=root", "--quiet", include]
        _run(["mmdebstrap", *options, "bookworm", str(part), MIRROR])
        part.rename(tarball)
    return tarball


@pytest.fixture(scope="module")
def installed(
    deb: Path, base: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScratchRoot]:
    """One root with the package installed by apt, for the checks that only look (or put
    back what they change)."""
    root = ScratchRoot(tmp_path_factory.mktemp("deb") / "root", base)
    root.apt_install(deb)
    yield root
    shutil.rmtree(root.path)  # ~800 MB: not left for pytest's tmp_path retention


@pytest.fixture
def fresh(base: Path, tmp_path: Path) -> Iterator[ScratchRoot]:
    root = ScratchRoot(tmp_path / "root", base)
    yield root
    shutil.rmtree(root.path)


def test_the_package_is_named_and_versioned_after_the_agent(deb: Path) -> None:
    fields = _fields(deb)
    assert fields["Package"] == "ttcs-agent"
    assert fields["Version"] == __version__, "debian/changelog and agent.__version__ agree"
    # The venv links to Debian's interpreter by its exact name.
    minor = _run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[1])"]).stdout
    assert f"python3.{minor.strip()}" in re.split(r",\s*", fields["Depends"])
    conffiles = _run(["dpkg-deb", "--info", str(deb), "conffiles"]).stdout.split()
    assert conffiles == [CONFFILE]


def test_release_slot_current_link_and_command(installed: ScratchRoot) -> None:
    root = installed
    assert root.status() == "install ok installed"
    assert os.readlink(root / "/opt/ttcs-agent/current") == f"releases/{__version__}"
    assert os.readlink(root / "/usr/bin/ttcs-agent") == "/opt/ttcs-agent/current/bin/ttcs-agent"
    # A venv made for exactly its slot: scripts run the slot's Python, Debian's python3.X below.
    assert (root / f"{SLOT}/bin/ttcs-agent").read_text().startswith(f"#!{SLOT}/bin/python\n")
    assert os.readlink(root / f"{SLOT}/bin/python3").startswith("python3.")
    assert "home = /usr/bin" in (root / f"{SLOT}/pyvenv.cfg").read_text()
    leaked = subprocess.run(
        ["grep", "-rlIF", "debian/ttcs-agent/opt", str(root / SLOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert leaked.returncode == 1, f"the build's staging path is left in:\n{leaked.stdout}"
    assert "ttcs-agent==" in (root / f"{SLOT}/pip-freeze.txt").read_text().replace("_", "-")
    assert (root / f"{SLOT}/scripts/ttcs-agent-as-service").stat().st_mode & 0o111
    assert not (root / f"{SLOT}/bin/pip").exists(), "a release slot never changes: no installer"


def test_installed_agent_runs_from_its_slot(installed: ScratchRoot) -> None:
    root = installed
    assert root.run("ttcs-agent", "--version").stdout.strip() == f"ttcs-agent {__version__}"
    # Every heavy dependency loads against the root's own libraries (libVLC, PortAudio …),
    # and the modules come from the slot.
    probe = (
        "import sys, vlc, sounddevice, pygame, onnxruntime, piper, agent.daemon, player.screen;"
        "print(sys.prefix, agent.daemon.__file__)"
    )
    # (The last line: pygame greets on stdout when imported.)
    last = root.run(f"{SLOT}/bin/python", "-c", probe).stdout.splitlines()[-1]
    prefix, daemon = last.split()
    assert prefix == SLOT
    assert daemon.startswith(f"{SLOT}/lib/python3.") and daemon.endswith("/agent/daemon.py")
    # The service user reads the configuration (root:ttcs 0640), which parses; the example's CA
    # file is, rightly, the one thing missing.
    check = root.run("runuser", "-u", "ttcs", "--", "ttcs-agent", "config", "check", check=False)
    assert check.returncode == 2, check
    assert "mqtt.ca_file" in check.stderr and "/etc/ttcs-agent/ca.crt" in check.stderr


def test_configuration_is_the_example_as_a_conffile(installed: ScratchRoot) -> None:
    root = installed
    assert (root / CONFFILE).read_bytes() == (ROOT / "config" / "agent.example.toml").read_bytes()
    ttcs = root.gid("ttcs")
    for path, mode in ((CONFFILE, 0o640), ("/etc/ttcs-agent", 0o750)):
        st = (root / path).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, ttcs, mode), path
    # Kept through upgrades by dpkg itself.
    overrides = root.run("dpkg-statoverride", "--list").stdout.splitlines()
    assert f"root ttcs 640 {CONFFILE}" in overrides
    assert "root ttcs 750 /etc/ttcs-agent" in overrides
    assert (root / "/usr/share/doc/ttcs-agent/examples/agent.example.toml").exists()


def test_service_user_groups_and_directories(installed: ScratchRoot) -> None:
    root = installed
    user = root.user("ttcs")
    assert user is not None
    assert user[5:] == ["/var/lib/ttcs-agent", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000, "a system user"
    for group in ("audio", "video", "render"):
        assert "ttcs" in root.members(group), group
    for path in ("/var/lib/ttcs-agent", "/var/cache/ttcs-agent"):
        st = (root / path).stat()
        assert (st.st_uid, st.st_mode & 0o7777) == (int(user[2]), 0o750), path
    assert (root / "/usr/lib/sysusers.d/ttcs-agent.conf").read_bytes() == (
        ROOT / "systemd" / "ttcs-agent.sysusers.conf"
    ).read_bytes()


def test_unit_is_enabled_verified_and_waits_for_configuration(installed: ScratchRoot) -> None:
    root = installed
    assert (root / UNIT).read_bytes() == (ROOT / "systemd" / "ttcs-agent.service").read_bytes()
    wants = root / "/etc/systemd/system/multi-user.target.wants/ttcs-agent.service"
    assert os.readlink(wants) == UNIT
    unit = (root / UNIT).read_text()
    assert f"ConditionPathExists=!{MARKER}\n" in unit
    assert "ExecStart=/opt/ttcs-agent/current/bin/ttcs-agent run --config " + CONFFILE in unit
    assert "start" in (root / MARKER).read_text()
    # systemd's own check, against the root: every program the unit runs exists there, and
    # every directive is known.
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root.path}", "ttcs-agent.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr


def test_remove_keeps_configuration_and_state_and_purge_removes_them(
    fresh: ScratchRoot, deb: Path
) -> None:
    root = fresh
    root.apt_install(deb)
    # What a technician and the agent leave: a configured device, its database and content,
    # and a release slot that agent.update unpacked beside the package's.
    (root / MARKER).unlink()
    configured = (root / CONFFILE).read_text().replace("q10-p12-bang-01", "q10-p12-bang-02")
    (root / CONFFILE).write_text(configured)
    (root / "/var/lib/ttcs-agent/agent.db").write_bytes(b"state")
    (root / "/var/cache/ttcs-agent/ab").mkdir()
    (root / "/opt/ttcs-agent/releases/9.9.9/bin").mkdir(parents=True)

    root.apt("remove", "ttcs-agent")
    assert root.status() == "deinstall ok config-files"
    assert (root / CONFFILE).read_text() == configured
    assert (root / "/var/lib/ttcs-agent/agent.db").read_bytes() == b"state"
    assert (root / "/var/cache/ttcs-agent/ab").is_dir()
    assert not (root / "/opt/ttcs-agent/releases").exists(), "every slot is the program"
    assert not (root / "/usr/bin/ttcs-agent").is_symlink()
    assert not (root / UNIT).exists()

    # Installed again: the configuration is the technician's, and the device starts.
    root.apt_install(deb)
    assert (root / CONFFILE).read_text() == configured
    assert not (root / MARKER).exists(), "a configured device does not become unconfigured"
    assert (root / CONFFILE).stat().st_mode & 0o7777 == 0o640

    root.apt("purge", "ttcs-agent")
    assert root.status() == "not-installed"
    for gone in ("/etc/ttcs-agent", "/var/lib/ttcs-agent", "/var/cache/ttcs-agent"):
        assert not (root / gone).exists(), gone
    assert not (root / "/opt/ttcs-agent").exists(), "nor the voices"
    assert "ttcs-agent" not in root.run("dpkg-statoverride", "--list", check=False).stdout
    assert not (root / "/etc/systemd/system/multi-user.target.wants/ttcs-agent.service").exists()
    # Debian keeps system users: files the uid owned elsewhere must not pass to a new user.
    assert root.user("ttcs") is not None

    # After a purge the device is new again: the marker is back.
    root.apt_install(deb)
    assert (root / MARKER).exists()


def test_gpio_group_is_joined_where_it_exists(fresh: ScratchRoot, deb: Path) -> None:
    """Raspberry Pi OS has a gpio group (for /dev/gpiochip*); plain Debian has none."""
    root = fresh
    root.run("groupadd", "--system", "gpio")
    root.apt_install(deb)
    assert "ttcs" in root.members("gpio")


def test_no_gpio_group_is_made_up(installed: ScratchRoot) -> None:
    assert installed.members("gpio") == []
    assert "gpio:" not in (installed / "/etc/group").read_text()


SLOTS_UNITS = ("ttcs-agent-slots.path", "ttcs-agent-slots.service")


def test_slot_installer_is_installed_enabled_and_answers(installed: ScratchRoot, deb: Path) -> None:
    """The root side of agent.update: its units, its request folder, and the real command,
    which refuses what it must and leaves the package's slot alone; an install of the package
    points current at the package's slot again."""
    root = installed
    for name in SLOTS_UNITS:
        unit = root / f"/lib/systemd/system/{name}"
        assert unit.read_bytes() == (ROOT / "systemd" / name).read_bytes(), name
    wants = root / "/etc/systemd/system/multi-user.target.wants/ttcs-agent-slots.path"
    assert os.readlink(wants) == "/lib/systemd/system/ttcs-agent-slots.path"
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root.path}", *SLOTS_UNITS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    ttcs = root.user("ttcs")
    assert ttcs is not None
    folder = root / "/var/lib/ttcs-agent/slots"
    st = folder.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (int(ttcs[2]), 0o750)

    def ask(request: dict[str, str]) -> dict[str, object]:
        path = folder / "request.json"
        path.write_text(json.dumps(request))
        os.chown(path, int(ttcs[2]), int(ttcs[3]))  # written by the agent
        root.run("ttcs-agent", "slots-apply", "--config", CONFFILE)
        result = folder / "result.json"
        assert result.stat().st_uid == int(ttcs[2]), "the agent may read and remove it"
        answer: dict[str, object] = json.loads(result.read_text())
        result.unlink()
        return answer

    assert root.run("ttcs-agent", "slots-apply", "--config", CONFFILE).stdout == ""  # none
    refused = ask({"id": "1", "op": "remove", "version": __version__})
    assert (refused["ok"], refused["reason"]) == (False, "in_use")
    # What an agent.update leaves: another slot, current on it (as its commit does).
    other = root / "/opt/ttcs-agent/releases/9.9.9"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "ttcs-agent").symlink_to(f"{SLOT}/bin/ttcs-agent")
    assert ask({"id": "2", "op": "commit", "version": "9.9.9"})["ok"] is True
    assert os.readlink(root / "/opt/ttcs-agent/current") == "releases/9.9.9"
    refused = ask({"id": "3", "op": "remove", "version": __version__})
    assert (refused["ok"], refused["reason"]) == (False, "dpkg_slot")
    outside = ask({"id": "4", "op": "install", "version": "9.9.10", "artifact": CONFFILE})
    assert (outside["ok"], outside["reason"]) == (False, "outside_cache")
    # apt install of the package (here the same version again): current is the package's.
    root.apt("install", "--reinstall", f"/tmp/{deb.name}")
    assert os.readlink(root / "/opt/ttcs-agent/current") == f"releases/{__version__}"
    assert ask({"id": "5", "op": "remove", "version": "9.9.9"})["ok"] is True
    assert not other.exists()
