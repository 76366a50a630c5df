"""The SSH RemoteShell, on paramiko: the server logs in to a machine that has no agent.

Only the credential given is offered (no SSH agent, no ~/.ssh keys), only host keys trusted
for this host and port are accepted (host_keys.py), and every step is bounded in time:
connect, banner, authentication, each command. paramiko blocks, so each call runs on a
worker thread. Commands are argument lists quoted for POSIX sh (shlex); environment values
travel on stdin to a fixed bootstrap (ssh_environment.py), never on a command line, which
other users of the host can read.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import select
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import paramiko

from sonde.server.remote.credentials import Credential
from sonde.server.remote.host_keys import (
    HostKey,
    RefuseUnknownHostKey,
    TrustedHostKey,
    changed_key,
    host_address,
    known_hosts_name,
)
from sonde.server.remote.shell import (
    CommandResult,
    RemoteError,
    RemoteErrorKind,
    RemoteTarget,
    Transport,
)
from sonde.server.remote.ssh_environment import (
    BOOTSTRAP_NAME,
    ENV_BOOTSTRAP,
    check_environment,
    environment_block,
)

_READ_CHUNK = 64 * 1024
_SFTP_CHUNK = 32 * 1024  # paramiko's own request size
_KEY_KINDS: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
    paramiko.RSAKey,
)
# sha256sum on Linux, shasum on macOS and the BSDs; the path is "$1", data to sh.
_SHA256 = 'sha256sum -- "$1" 2>/dev/null || shasum -a 256 -- "$1"'


@dataclass(frozen=True)
class SshTimeouts:
    connect_s: float = 10.0  # TCP connect
    banner_s: float = 10.0  # the server's SSH banner after connecting
    auth_s: float = 15.0  # the whole authentication


def remote_command(
    argv: Sequence[str], environment: dict[str, str] | None = None, *, clean: bool = False
) -> str:
    """The one line sh runs: argv quoted; with an environment, under the fixed bootstrap that
    reads the values from stdin (ssh_environment.py), so no value is on the command line.
    `clean`: the command gets only that environment (`env -i`), as a script on the agent."""
    if not argv:
        raise ValueError("a remote command needs at least the program to run")
    if environment is None and not clean:
        return shlex.join(argv)
    check_environment(environment or {})
    if "=" in argv[0]:
        raise ValueError(f"{argv[0]!r}: env would read a program name with '=' as a variable")
    start = ["env", "-i", "sh"] if clean else ["sh"]
    return shlex.join([*start, "-c", ENV_BOOTSTRAP, BOOTSTRAP_NAME, *argv])


def _private_key(credential: Credential) -> paramiko.PKey:
    try:
        text = credential.private_key.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    failure: Exception | None = None
    for kind in _KEY_KINDS:  # PKey itself cannot read a key: each kind tries its own form
        try:
            return kind.from_private_key(io.StringIO(text), password=credential.passphrase or None)
        except paramiko.PasswordRequiredException as error:
            failure = error
            break
        except (paramiko.SSHException, ValueError) as error:
            failure = error
    raise RemoteError(
        RemoteErrorKind.AUTHENTICATION,
        f"the private key of {credential.described} could not be read "
        f"({failure or 'it is not text'}): store it again in OpenSSH or PEM form, with its "
        "passphrase if it has one",
    )


def _connect(
    target: RemoteTarget,
    credential: Credential,
    trusted: Sequence[TrustedHostKey],
    timeouts: SshTimeouts,
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    name = known_hosts_name(target.host, target.port)
    mine = [key for key in trusted if (key.host, key.port) == (target.host, target.port)]
    for key in mine:
        client.get_host_keys().add(name, key.key.key_type, key.key.as_paramiko())
    client.set_missing_host_key_policy(RefuseUnknownHostKey())
    address = host_address(target.host, target.port)
    who = f"{target.user}@{target.host}"
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            password=credential.password or None,
            pkey=_private_key(credential) if credential.private_key else None,
            allow_agent=False,
            look_for_keys=False,
            timeout=timeouts.connect_s,
            banner_timeout=timeouts.banner_s,
            auth_timeout=timeouts.auth_s,
        )
    except RemoteError:
        client.close()
        raise
    except paramiko.BadHostKeyException as error:
        client.close()
        offered = HostKey.of(error.key)
        was = next((key for key in mine if key.key.key_type == offered.key_type), mine[0])
        raise changed_key(was, offered) from error
    except paramiko.AuthenticationException as error:
        client.close()
        raise RemoteError(
            RemoteErrorKind.AUTHENTICATION,
            f"wrong user or key for {who}: {credential.described} was refused ({error}); "
            "check the user name and that its public key is in that user's authorized_keys",
        ) from error
    except TimeoutError as error:
        client.close()
        raise RemoteError(
            RemoteErrorKind.TIMEOUT,
            f"{address} did not complete an SSH login within its time limit "
            f"(connect {timeouts.connect_s:g} s, banner {timeouts.banner_s:g} s): {error}",
        ) from error
    except (paramiko.ssh_exception.NoValidConnectionsError, OSError) as error:
        client.close()
        raise RemoteError(
            RemoteErrorKind.UNREACHABLE,
            f"could not reach {address}: {error}; check the address, that sshd runs there and "
            "that the firewall lets the server through",
        ) from error
    except (paramiko.SSHException, EOFError) as error:
        client.close()
        # paramiko says "Error reading SSH protocol banner" when the banner timed out.
        kind = RemoteErrorKind.TIMEOUT if "banner" in str(error) else RemoteErrorKind.PROTOCOL
        raise RemoteError(
            kind, f"the SSH login to {address} failed: {error or 'the connection closed'}"
        ) from error
    return client


class _Capped:
    """Bytes kept up to a cap; the rest counted and dropped, so the remote never blocks."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)


# Called on the worker thread with each piece of output as it comes: ("stdout" or "stderr",
# the bytes kept of it). What the caller does with it must not block.
OnOutput = Callable[[str, bytes], None]


def _take(capped: _Capped, data: bytes, stream: str, on_output: OnOutput | None) -> None:
    kept = len(capped.kept)
    capped.add(data)
    if on_output is not None and len(capped.kept) > kept:
        on_output(stream, bytes(capped.kept[kept:]))


def _run(
    client: paramiko.SSHClient,
    target: RemoteTarget,
    command: str,
    *,
    stdin: bytes,
    timeout_s: float,
    max_output: int,
    on_output: OnOutput | None = None,
) -> CommandResult:
    started = time.monotonic()
    deadline = started + timeout_s
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise RemoteError(RemoteErrorKind.UNREACHABLE, f"the SSH session to {target.label} ended")
    stdout, stderr = _Capped(max_output), _Capped(max_output)
    try:
        channel = transport.open_session(timeout=timeout_s)
    except paramiko.SSHException as error:
        raise RemoteError(
            RemoteErrorKind.PROTOCOL, f"{target.label} refused a new command channel: {error}"
        ) from error
    try:
        channel.settimeout(timeout_s)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        while True:
            while channel.recv_ready():
                _take(stdout, channel.recv(_READ_CHUNK), "stdout", on_output)
            while channel.recv_stderr_ready():
                _take(stderr, channel.recv_stderr(_READ_CHUNK), "stderr", on_output)
            ended = channel.exit_status_ready() and channel.eof_received
            if ended and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if not transport.is_active():
                raise RemoteError(
                    RemoteErrorKind.UNREACHABLE,
                    f"the SSH connection to {target.label} closed while the command ran",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteError(
                    RemoteErrorKind.TIMEOUT,
                    f"the command on {target.label} did not finish within {timeout_s:g} s; "
                    "its channel was closed",
                )
            select.select([channel], [], [], min(remaining, 1.0))
        exit_code = channel.recv_exit_status()
    except TimeoutError as error:
        raise RemoteError(
            RemoteErrorKind.TIMEOUT,
            f"the command on {target.label} did not finish within {timeout_s:g} s",
        ) from error
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise RemoteError(
            RemoteErrorKind.UNREACHABLE,
            f"the SSH connection to {target.label} failed while the command ran: {error}",
        ) from error
    finally:
        channel.close()
    return CommandResult(
        exit_code=exit_code,
        stdout=bytes(stdout.kept),
        stderr=bytes(stderr.kept),
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
        duration_ms=round((time.monotonic() - started) * 1000),
    )


def _upload(client: paramiko.SSHClient, target: RemoteTarget, data: bytes, path: str) -> None:
    try:
        sftp = client.open_sftp()
    except (paramiko.SSHException, OSError) as error:
        raise RemoteError(
            RemoteErrorKind.PROTOCOL, f"{target.label} offers no SFTP subsystem: {error}"
        ) from error
    try:
        with sftp.open(path, "wb") as remote:
            remote.chmod(0o600)  # before a byte is written
            # Pipelined: without it each 32 KiB write waits for its reply (about 1 MB/s).
            remote.set_pipelined(True)
            for start in range(0, len(data), _SFTP_CHUNK):
                remote.write(data[start : start + _SFTP_CHUNK])
    except OSError as error:
        raise RemoteError(
            RemoteErrorKind.PROTOCOL, f"could not write {path} on {target.label}: {error}"
        ) from error
    finally:
        sftp.close()


class SshShell:
    """An open SSH connection to one machine (RemoteShell)."""

    def __init__(self, target: RemoteTarget, client: paramiko.SSHClient) -> None:
        self.target = target
        self._client = client

    @classmethod
    async def open(
        cls,
        target: RemoteTarget,
        credential: Credential,
        trusted: Sequence[TrustedHostKey],
        *,
        timeouts: SshTimeouts | None = None,
    ) -> SshShell:
        """Log in; RemoteError (HostKeyRefused for an untrusted key) when it cannot."""
        if target.transport is not Transport.SSH:
            raise ValueError(f"{target.label} is not an SSH target")
        client = await asyncio.to_thread(
            _connect, target, credential, trusted, timeouts or SshTimeouts()
        )
        return cls(target, client)

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        environment: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        max_output: int = 1024 * 1024,
        clean_environment: bool = False,
        on_output: OnOutput | None = None,
    ) -> CommandResult:
        """`environment` travels on stdin, never on the command line; `clean_environment`:
        the command gets only `environment`, nothing of the login's own. `on_output`: each
        piece of output kept, as it comes (on the worker thread)."""
        command = remote_command(argv, environment, clean=clean_environment)
        if environment is not None or clean_environment:
            stdin = environment_block(environment or {}) + stdin
        return await asyncio.to_thread(
            partial(
                _run, stdin=stdin, timeout_s=timeout_s, max_output=max_output, on_output=on_output
            ),
            self._client,
            self.target,
            command,
        )

    async def upload(self, data: bytes, remote_path: str, *, timeout_s: float = 120.0) -> None:
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.to_thread(_upload, self._client, self.target, data, remote_path), timeout_s
        )
        left = max(1.0, timeout_s - (time.monotonic() - started))
        check = await self.run(["sh", "-c", _SHA256, "sh", remote_path], timeout_s=left)
        expected = hashlib.sha256(data).hexdigest()
        got = check.stdout.decode("ascii", "replace").split(maxsplit=1)[:1]
        if check.exit_code != 0 or got != [expected]:
            raise RemoteError(
                RemoteErrorKind.PROTOCOL,
                f"{remote_path} on {self.target.label} does not hold what was sent "
                f"(SHA-256 {got[0] if got else 'unreadable'}, sent {expected})",
            )

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
