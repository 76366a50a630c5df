"""A real Dovecot IMAP server on loopback for the mail intake tests (docs/mail.md).

One dovecot (Debian's dovecot-imapd) started as a child process in the foreground (-F) on free
ports of 127.0.0.1: IMAPS (implicit TLS), and IMAP where login needs STARTTLS first, with a
throwaway CA and a server certificate for 127.0.0.1 (tests/support/listener_certificates.py);
one user with a password in a passwd-file, Maildir. Its own base_dir, state_dir and log file,
and no system configuration read (-c our file), so several instances run at once
(pytest-xdist workers). Readiness is the IMAP greeting over TLS, polled with a deadline; a
daemon that exits early fails with its log. Stopped with SIGTERM at the end of `running_dovecot`.

Its folder is its own (tempfile.mkdtemp, removed at stop), not the test's tmp_path: as root,
dovecot's login processes run as the Debian package's user `dovenull`, its other internal ones
as `dovecot` and the mail user's as `nobody` (dovecot refuses uid 0 for mail), and none of them
could traverse pytest's 0700 folders. Not as root, all of them run as the user running the
tests.
"""

from __future__ import annotations

import getpass
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support.listener_certificates import listener_tls

DOVECOT = Path("/usr/sbin/dovecot")
USER = "helpdesk"
PASSWORD = "intake-test-password"


def have_dovecot() -> bool:
    return DOVECOT.exists()


def dovecot_available_or_reason() -> str:
    if not have_dovecot():
        return "dovecot-imapd is not installed (apt-get install dovecot-imapd; .ci/run does)"
    return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Dovecot:
    folder: Path
    port: int  # IMAPS (implicit TLS)
    starttls_port: int  # IMAP, login only after STARTTLS
    ca_file: Path  # the CA that signed the server's certificate for 127.0.0.1
    process: subprocess.Popen[bytes]
    user: str = USER
    password: str = PASSWORD
    host: str = "127.0.0.1"
    inbox: str = "INBOX"  # where deliver() puts mail and flags_of_all() looks by default

    @property
    def maildir(self) -> Path:
        return self.folder / "home" / self.user / "Maildir"

    @property
    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def connect(self) -> imaplib.IMAP4_SSL:
        """A logged-in imaplib client (the test's own, to put mail in and look at flags)."""
        client = imaplib.IMAP4_SSL(
            self.host, self.port, ssl_context=self.client_context(), timeout=10
        )
        client.login(self.user, self.password)
        return client

    def deliver(self, raw: bytes, mailbox: str | None = None) -> None:
        """Put one message into `mailbox` (`inbox` by default) with IMAP APPEND, as a mail
        transfer agent would."""
        mailbox = mailbox or self.inbox
        client = self.connect()
        try:
            status, reply = client.append(mailbox, "", None, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND refused: {reply!r}")
        finally:
            with suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def flags_of_all(self, mailbox: str | None = None) -> dict[int, bytes]:
        """Each message's UID and its FLAGS list as the server reports it."""
        mailbox = mailbox or self.inbox
        client = self.connect()
        try:
            client.select(mailbox)
            _, data = client.uid("FETCH", "1:*", "(FLAGS)")
            result: dict[int, bytes] = {}
            for item in data:
                if not isinstance(item, bytes) or b"UID " not in item:
                    continue
                uid = int(item.split(b"UID ")[1].split()[0].rstrip(b")"))
                result[uid] = item
            return result
        finally:
            with suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


def _configuration(folder: Path, port: int, starttls_port: int, chain: Path) -> str:
    root = os.geteuid() == 0
    me = getpass.getuser()
    internal_user = "dovecot" if root else me
    login_user = "dovenull" if root else me
    mail_uid, mail_gid = _mail_ids()
    return f"""
base_dir = {folder}/run
state_dir = {folder}/state
instance_name = dovecot-test-{port}
log_path = {folder}/dovecot.log
info_log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{chain}
ssl_key = <{chain}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
# A refused login answers at once (its later ones from the same address still wait: anvil).
auth_failure_delay = 0
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={folder}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


def _mail_ids() -> tuple[int, int]:
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return nobody.pw_uid, nobody.pw_gid
    return os.geteuid(), os.getegid()


def _greets(port: int, ca_file: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            return tls.recv(256).startswith(b"* OK")
    except OSError:
        return False


def start_dovecot(*, port: int | None = None) -> Dovecot:
    """Start dovecot in a new folder of its own; the caller stops it (or use
    `running_dovecot`), which also removes the folder."""
    folder = Path(tempfile.mkdtemp(prefix="sonde-dovecot-"))
    folder.chmod(0o755)
    for sub in ("run", "state", "home"):
        (folder / sub).mkdir()
    mail_uid, mail_gid = _mail_ids()
    os.chown(folder / "home", mail_uid, mail_gid)
    tls = listener_tls(folder / "tls", ["127.0.0.1"], label="imap")
    chain = folder / "tls" / "imap-server.pem"
    (folder / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    (folder / "passwd").chmod(0o644)  # read by the auth process (user dovecot); a throwaway
    port = port or free_port()
    config = folder / "dovecot.conf"
    starttls_port = free_port()
    config.write_text(_configuration(folder, port, starttls_port, chain))
    process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(config)],
        stdout=(folder / "dovecot.stdout").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while not _greets(port, tls.ca_file):
        if process.poll() is not None:
            shutil.rmtree(folder, ignore_errors=True)
            out = (folder / "dovecot.stdout").read_text(errors="replace")
            log = (folder / "dovecot.log").read_text(errors="replace")
            raise RuntimeError(f"dovecot exited ({process.returncode}): {out}\n{log}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait(5)
            log = (folder / "dovecot.log").read_text(errors="replace")
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"dovecot gave no IMAP greeting in 15 s: {log}")
        time.sleep(0.05)
    return Dovecot(folder, port, starttls_port, tls.ca_file, process)


@contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    server = start_dovecot()
    try:
        yield server
    finally:
        server.stop()
