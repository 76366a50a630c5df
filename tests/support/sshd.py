"""A real OpenSSH sshd on loopback for the agentless tests (WINDOWS.md 3.2).

Throwaway ed25519 host and user keys made with cryptography, a 0700 folder, one sshd on a free
port of 127.0.0.1 that lets in only the user running the tests, with that user's key. Readiness
is the SSH banner, polled with a deadline; a daemon that exits early fails with its log.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sonde.server.remote.credentials import Credential
from sonde.server.remote.host_keys import HostKey
from sonde.server.remote.shell import RemoteTarget, Transport

SSHD = Path("/usr/sbin/sshd")


def have_sshd() -> bool:
    return SSHD.exists()


def ed25519_pair() -> tuple[bytes, str]:
    """A new key: its OpenSSH private form and its `ssh-ed25519 AAAA...` public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode("ascii")


def host_key_of(public_line: str) -> HostKey:
    key_type, blob = public_line.split()[:2]
    return HostKey(key_type, blob)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Sshd:
    folder: Path
    port: int
    host_key: HostKey
    user_key: bytes  # OpenSSH private key text of the only user let in
    process: subprocess.Popen[bytes]

    @property
    def user(self) -> str:
        return getpass.getuser()

    def target(self, user: str | None = None) -> RemoteTarget:
        return RemoteTarget(Transport.SSH, user or self.user, "127.0.0.1", self.port)

    def credential(self) -> Credential:
        return Credential(user=self.user, private_key=self.user_key, name="test-key")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_sshd(
    folder: Path,
    *,
    extra: tuple[str, ...] = (),
    port: int | None = None,
    path_first: Path | None = None,
    sftp: bool = True,
) -> Sshd:
    """Start sshd in `folder` (made 0700); the caller stops it. `port`: that one (a free one
    by default); `path_first`: a folder put first on its sessions' PATH (a test host's own
    programs, such as tests/support/systemctl_standin.py); `sftp=False`: no SFTP subsystem,
    as a hardened host may have."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    host_private, host_public = ed25519_pair()
    user_private, user_public = ed25519_pair()
    (folder / "host_key").write_bytes(host_private)
    (folder / "host_key").chmod(0o600)
    (folder / "authorized_keys").write_text(user_public + "\n")
    (folder / "authorized_keys").chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
    port = port or free_port()
    options = {
        "Port": str(port),
        "ListenAddress": "127.0.0.1",
        "HostKey": str(folder / "host_key"),
        "PidFile": str(folder / "sshd.pid"),
        "AuthorizedKeysFile": str(folder / "authorized_keys"),
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "UsePAM": "no",
        "StrictModes": "no",
        "PermitRootLogin": "prohibit-password",
        "Subsystem": "sftp internal-sftp",
        "MaxStartups": "100",
        "MaxSessions": "50",
    }
    if not sftp:
        del options["Subsystem"]
    if path_first is not None:
        options["SetEnv"] = f"PATH={path_first}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    argv = [str(SSHD), "-D", "-e", "-f", "/dev/null"]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    for option in extra:
        argv += ["-o", option]
    log = (folder / "sshd.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"sshd exited ({process.returncode}): {(folder / 'sshd.log').read_text()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(64).startswith(b"SSH-2.0"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"sshd gave no banner in 10 s: {(folder / 'sshd.log').read_text()}")
        time.sleep(0.05)
    return Sshd(folder, port, host_key_of(host_public), user_private, process)


def sshd_available_or_reason() -> str:
    if shutil.which("sshd") is None and not have_sshd():
        return "openssh-server is not installed (apt-get install openssh-server; .ci/run does)"
    return ""
