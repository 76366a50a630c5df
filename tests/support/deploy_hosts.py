"""Test hosts for push install: real sshd instances on their own ports, each with its own
folders (the agent's venv, state and systemd units under one folder per host, named with
`{port}` in the deployment's paths) and its own stand-in systemctl (systemctl_standin.py).

The wheelhouse is built once per source tree (shared_wheelhouse): this repository's wheel
(built from a copy of the tree, so nothing is written in it) and its agent dependencies and
pip fetched through the machine's package index, as an admin builds one (docs/deploy.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sonde.server.domain.deployment_store import DeployOptions
from sonde.server.remote.host_keys import TrustedHostKey
from tests.support.sshd import Sshd, start_sshd
from tests.support.systemctl_standin import install_standin, stop_all

ROOT = Path(__file__).resolve().parents[2]
AGENT_DEPENDENCIES = ("grpcio", "protobuf", "psutil", "cryptography", "pip")
_NOT_COPIED = shutil.ignore_patterns(
    ".git", "build", "*.egg-info", ".*_cache", ".hypothesis", "__pycache__", "tests", "bench"
)


def _source_key() -> str:
    """A digest of what the agent's wheel is built from: a changed file builds a new one."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for top in ("agent", "server", "protos", "scripts"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path):
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def shared_wheelhouse() -> Path:
    """The wheelhouse of this source tree, built once and kept under the temporary folder
    (keyed by a digest of the sources), so pytest-xdist workers and later sessions share it."""
    folder = Path(tempfile.gettempdir()) / f"sonde-test-wheelhouse-{_source_key()}"
    with (folder.parent / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "complete").exists():
            building = folder.parent / f"{folder.name}.building"
            shutil.rmtree(building, ignore_errors=True)
            build_wheelhouse(building)
            (building / "complete").touch()
            shutil.rmtree(folder, ignore_errors=True)
            building.rename(folder)
    return folder


def build_wheelhouse(folder: Path) -> Path:
    """The agent's wheels and pip's in `folder` (about 20 s)."""
    source = folder.parent / f"{folder.name}-source"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(ROOT, source, ignore=_NOT_COPIED)
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(folder), str(source)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    subprocess.run(
        [*pip, "download", "--only-binary=:all:", "-d", str(folder), *AGENT_DEPENDENCIES],
        check=True,
        timeout=300,
        capture_output=True,
    )
    shutil.rmtree(source)
    return folder


def fleet_options(root: Path, **changes: object) -> DeployOptions:
    """Each host's folders under root/PORT; short limits, so a test ends in seconds."""
    values: dict[str, object] = {
        "prefix": f"{root}/{{port}}/opt/sonde-agent",
        "state_dir": f"{root}/{{port}}/var/lib/sonde-agent",
        "unit_dir": f"{root}/{{port}}/etc/systemd/system",
        "online_timeout_s": 30.0,
        "host_timeout_s": 120.0,
        "min_free_mb": 50,
    }
    values |= changes
    return DeployOptions(**values)  # type: ignore[arg-type]


@dataclass
class TestHost:
    """One machine of the test fleet: its sshd and the folders its "systemd" uses."""

    sshd: Sshd
    folder: Path  # root/PORT

    __test__ = False  # not a test class, for pytest

    @property
    def port(self) -> int:
        return self.sshd.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def prefix(self) -> Path:
        return self.folder / "opt" / "sonde-agent"

    @property
    def unit_file(self) -> Path:
        return self.folder / "etc" / "systemd" / "system" / "sonde-agent.service"

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    def trusted(self) -> TrustedHostKey:
        return TrustedHostKey(
            "127.0.0.1", self.port, self.sshd.host_key, "admin", datetime.now(UTC)
        )

    def authorize(self, public_line: str) -> None:
        """Let a key in, as an admin adds the deployment's key to authorized_keys."""
        with (self.sshd.folder / "authorized_keys").open("a") as keys:
            keys.write(public_line + "\n")

    def logins(self) -> int:
        """How many logins this host's sshd let in so far (its log)."""
        return (self.sshd.folder / "sshd.log").read_text(errors="replace").count("Accepted ")

    def stop(self) -> None:
        stop_all(self.run_dir)
        self.sshd.stop()


def start_host(
    root: Path,
    *,
    port: int | None = None,
    systemd: bool = True,
    sftp: bool = True,
) -> TestHost:
    """A host at root/PORT; `systemd=False`: no stand-in, so the real systemctl answers as
    it does in a container ("not booted with systemd"); `sftp=False`: no SFTP subsystem."""
    from tests.support.sshd import free_port

    port = port or free_port()
    folder = root / str(port)
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if systemd:
        install_standin(bin_dir, folder / "etc" / "systemd" / "system", folder / "run")
    daemon = start_sshd(folder / "sshd", port=port, path_first=bin_dir, sftp=sftp)
    return TestHost(daemon, folder)


def build_agent_template(folder: Path, wheelhouse: Path) -> Path:
    """One venv with the agent installed from the wheelhouse (once per session); its
    site-packages, which provisioned hosts (provision_agent) reuse."""
    python3 = shutil.which("python3") or sys.executable
    subprocess.run([python3, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
    pip = next(wheelhouse.glob("pip-*.whl"))
    subprocess.run(
        [
            str(folder / "bin" / "python"),
            f"{pip}/pip",
            "install",
            "-q",
            "--no-index",
            "--no-compile",
            "--find-links",
            str(wheelhouse),
            "sonde-helpdesk",
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (site,) = folder.glob("lib/python3.*/site-packages")
    return site


def provision_agent(host: TestHost, template_site: Path) -> None:
    """The agent already installed at the host's prefix (as a machine image would ship it),
    neither enrolled nor started: a venv whose site-packages points at the template's."""
    python3 = shutil.which("python3") or sys.executable
    subprocess.run([python3, "-m", "venv", "--without-pip", str(host.prefix)], check=True)
    (site,) = host.prefix.glob("lib/python3.*/site-packages")
    (site / "sonde-template.pth").write_text(f"{template_site}\n")
    script = host.prefix / "bin" / "sonde-agent"
    script.write_text(
        f"#!{host.prefix}/bin/python\n"
        "import sys\nfrom sonde.agent.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
