"""WinRM: a RemoteShell on a Windows machine without an agent, over pywinrm's WinRS protocol.

Secure by default, as the host's own settings allow (docs/agentless.md, WinRM):
- HTTPS (5986) with the certificate checked, against the host's CA file when it has one;
- over plain HTTP (5985), NTLM or Kerberos with message encryption, never without;
- Basic only when the host's settings allow it, and over plain HTTP only when they also
  allow unencrypted traffic, as the Windows side must (`AllowUnencrypted`): the password
  crosses the network readable otherwise.

Every command is one of two fixed PowerShell scripts (winrm_powershell.py) with what varies
on stdin, so no value is ever parsed by cmd.exe or PowerShell as code. pywinrm is blocking:
each shell has its own worker thread, every call is bounded in time, and a Receive that
times out on the host's side (WS-Management's OperationTimeout) is asked again until the
command's own deadline.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from sonde.server.remote import winrm_powershell as ps
from sonde.server.remote.credentials import Credential
from sonde.server.remote.shell import (
    CommandResult,
    RemoteError,
    RemoteErrorKind,
    RemoteTarget,
    Transport,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

HTTPS_PORT = 5986
HTTP_PORT = 5985
UPLOAD_CHUNK = 128 * 1024  # raw bytes a Send carries: under the host's 500 KB envelope once encoded
UTF8_CODEPAGE = 65001


class WinRMAuth(enum.StrEnum):
    NTLM = "ntlm"
    KERBEROS = "kerberos"
    BASIC = "basic"


@dataclass(frozen=True)
class WinRMHost:
    """A host's WinRM settings, kept with its credentials: how Sonde may talk to it."""

    target: RemoteTarget
    https: bool = True
    auth: WinRMAuth = WinRMAuth.NTLM
    ca_file: Path | None = None  # the CA that signed the listener's certificate
    allow_basic: bool = False  # Basic sends the password itself: only when allowed here
    allow_unencrypted: bool = False  # Basic over plain HTTP: the host's AllowUnencrypted too
    operation_timeout_s: int = 20  # how long the host holds one Receive before it times out

    @property
    def endpoint(self) -> str:
        host = self.target.host
        address = f"[{host}]" if ":" in host else host
        return f"{'https' if self.https else 'http'}://{address}:{self.target.port}/wsman"


def refusal(host: WinRMHost) -> str | None:
    """Why these settings are refused before connecting, or None."""
    where = host.target.label
    if host.target.transport is not Transport.WINRM:
        return f"{where} is not a WinRM target"
    if host.auth is WinRMAuth.BASIC and not host.allow_basic:
        return (
            f"Basic authentication to {where} is refused: it sends the password itself and "
            "works only for local accounts. Use NTLM or Kerberos, or allow Basic for this host "
            "in its WinRM settings if it is really needed"
        )
    if host.auth is WinRMAuth.BASIC and not host.https and not host.allow_unencrypted:
        return (
            f"Basic authentication over plain HTTP to {where} is refused: the password and "
            "every command would cross the network readable. Use HTTPS (port 5986), NTLM or "
            "Kerberos (encrypted over HTTP), or allow unencrypted traffic for this host"
        )
    if host.ca_file is not None and not host.https:
        return f"{where} has a CA file but uses plain HTTP: the CA file is for HTTPS (5986)"
    return None


class WinRMShell:
    """One WinRS shell on one host; commands run one at a time on its worker thread."""

    def __init__(self, host: WinRMHost, credential: Credential) -> None:
        self.host = host
        self.target = host.target
        self.credential = credential
        encrypted = not host.https and host.auth is not WinRMAuth.BASIC
        self._protocol = Protocol(
            endpoint=host.endpoint,
            transport=host.auth.value,
            username=credential.user or host.target.user,
            password=credential.password,
            server_cert_validation="validate",
            # None: requests' own CA bundle, never REQUESTS_CA_BUNDLE from the environment
            # (pywinrm documents None; its annotation forgot it).
            ca_trust_path=str(host.ca_file) if host.ca_file is not None else None,  # type: ignore[arg-type]
            read_timeout_sec=host.operation_timeout_s + 10,
            operation_timeout_sec=host.operation_timeout_s,
            message_encryption="always" if encrypted else "auto",
            # Not None ("no proxy"): pywinrm then names no_proxy='*', and requests sets and
            # deletes os.environ['no_proxy'] around every request naming one, which broke
            # other threads' reading of the environment. "" names the proxies empty (none from
            # the environment, no no_proxy); _without_environment then sets them: none.
            proxy="",
        )
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="winrm")
        self._shell_id: str | None = None

    def _without_environment(self) -> None:
        """The shell's requests session, made first: direct (no proxy), and nothing read from
        the environment by its requests, the encryption handshake included. requests reads
        proxies by setting and then deleting os.environ['no_proxy'] around a request that
        names one (its set_environ), and with shells on several threads one thread's delete
        broke another's reading of the environment (KeyError: 'no_proxy'): a push install
        failed a host at random. So the session is made naming no no_proxy (it reads the
        environment without changing it) and without its handshake; then trust_env is off
        (no proxy, netrc or CA bundle from the environment: the CA is the host's own,
        ca_trust_path), and only then is the message encryption's handshake sent."""
        transport = self._protocol.transport
        # "always" over HTTP with NTLM or Kerberos; "auto" is HTTPS or Basic, never encrypted.
        wanted = transport.message_encryption
        transport.message_encryption = "never"
        try:
            session = transport.build_session()
        finally:
            transport.message_encryption = wanted
        session.proxies = {}
        session.trust_env = False
        if wanted == "always":
            transport.setup_encryption(session)

    @classmethod
    async def open(
        cls, host: WinRMHost, credential: Credential, *, timeout_s: float = 30.0
    ) -> WinRMShell:
        """A shell opened on the host (WinRS Create); RemoteError saying why not."""
        refused = refusal(host)
        if refused is not None:
            raise RemoteError(RemoteErrorKind.AUTHENTICATION, refused)
        if not credential.password:
            raise RemoteError(
                RemoteErrorKind.AUTHENTICATION,
                f"{credential.described} has no password: WinRM logs in with one",
            )
        if host.ca_file is not None and not host.ca_file.is_file():
            raise RemoteError(
                RemoteErrorKind.HOST_KEY,
                f"the CA file {host.ca_file} of {host.target.label} is missing",
            )
        shell = cls(host, credential)
        await shell.call(shell._create, timeout_s)
        return shell

    def _create(self) -> None:
        self._without_environment()  # its handshake, for an encrypted transport, on this thread
        self._shell_id = self._protocol.open_shell(noprofile=True, codepage=UTF8_CODEPAGE)

    async def call(self, work: Callable[[], T], timeout_s: float) -> T:
        """`work` on this shell's thread, its pywinrm errors as RemoteError, within time."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._worker, self._translated, work)
        try:
            return await asyncio.wait_for(future, timeout_s + self.host.operation_timeout_s + 15)
        except TimeoutError:
            raise RemoteError(
                RemoteErrorKind.TIMEOUT,
                f"{self.target.label} did not answer within {timeout_s:.0f} s",
            ) from None

    def _translated(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except RemoteError:
            raise
        except Exception as error:
            raise remote_error(self.host, error) from error

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        environment: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        max_output: int = 1024 * 1024,
    ) -> CommandResult:
        """argv run by LAUNCHER, with argv, environment and stdin (UTF-8 text) as data."""
        document = ps.run_document(list(argv), environment=environment, stdin=stdin)
        return await self.run_document(document, timeout_s=timeout_s, max_output=max_output)

    async def run_document(
        self, document: bytes, *, timeout_s: float = 60.0, max_output: int = 1024 * 1024
    ) -> CommandResult:
        """LAUNCHER fed one run document (winrm_powershell.run_document)."""
        chunks = [(document, True)]
        return await self.call(
            lambda: self._command(ps.LAUNCHER, chunks, timeout_s, max_output), timeout_s
        )

    async def upload(self, data: bytes, remote_path: str, *, timeout_s: float = 120.0) -> None:
        """data streamed to RECEIVER in base64 lines, one Send each; the hash it saw checked."""
        digest = hashlib.sha256(data).hexdigest()
        lines = [ps.upload_header(remote_path, digest)]
        lines += [
            base64.b64encode(data[at : at + UPLOAD_CHUNK]) + b"\r\n"
            for at in range(0, len(data), UPLOAD_CHUNK)
        ]
        chunks = [(line, False) for line in lines] + [(b"\r\n", True)]
        result = await self.call(
            lambda: self._command(ps.RECEIVER, chunks, timeout_s, 64 * 1024), timeout_s
        )
        where = f"{remote_path} on {self.target.label}"
        try:
            answer = ps.read_upload_answer(result.stdout)
        except (ValueError, IndexError, UnicodeDecodeError):
            raise RemoteError(
                RemoteErrorKind.PROTOCOL,
                f"the upload of {where} gave no answer this server can read (exit code "
                f"{result.exit_code}): {result.stderr.decode('utf-8', 'replace')[:300]}",
            ) from None
        if answer.sha256 != digest or answer.length != len(data) or not answer.placed:
            raise RemoteError(
                RemoteErrorKind.PROTOCOL,
                f"the upload of {where} arrived corrupted ({answer.length} bytes, SHA-256 "
                f"{answer.sha256[:16]}..., expected {len(data)} bytes, {digest[:16]}...): "
                f"it was {'kept' if answer.placed else 'not kept'}; send it again",
            )

    def _command(
        self,
        script: str,
        chunks: list[tuple[bytes, bool]],
        timeout_s: float,
        max_output: int,
    ) -> CommandResult:
        """Command, Send each chunk, Receive until Done or the deadline, Signal."""
        if self._shell_id is None:
            raise RemoteError(RemoteErrorKind.PROTOCOL, f"{self.target.label}: the shell is closed")
        started = time.monotonic()
        deadline = started + timeout_s
        shell_id = self._shell_id
        command_id = self._protocol.run_command(shell_id, ps.encoded_command(script))
        try:
            for data, end in chunks:
                self._protocol.send_command_input(shell_id, command_id, data, end=end)
            stdout, stderr = _Capped(max_output), _Capped(max_output)
            while True:
                if time.monotonic() > deadline:
                    raise RemoteError(
                        RemoteErrorKind.TIMEOUT,
                        f"the command on {self.target.label} did not finish within "
                        f"{timeout_s:.0f} s; it was told to stop",
                    )
                try:
                    out, err, code, done = self._protocol.get_command_output_raw(
                        shell_id, command_id
                    )
                except WinRMOperationTimeoutError:
                    continue  # the host held the Receive its whole OperationTimeout: ask again
                stdout.take(out)
                stderr.take(err)
                if done:
                    break
        finally:
            self._protocol.cleanup_command(shell_id, command_id)
        return CommandResult(
            exit_code=code,
            stdout=stdout.data,
            stderr=stderr.data,
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    async def close(self) -> None:
        shell_id, self._shell_id = self._shell_id, None
        try:
            if shell_id is not None:
                await self.call(lambda: self._protocol.close_shell(shell_id), 10.0)
        finally:
            self._worker.shutdown(wait=False)


class _Capped:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    def take(self, data: bytes) -> None:
        room = self.limit - self.size
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        if data:
            self.parts.append(data)
            self.size += len(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def remote_error(host: WinRMHost, error: Exception) -> RemoteError:
    """A pywinrm or requests failure as what a technician can do about it."""
    where = host.target.label
    if isinstance(error, InvalidCredentialsError):
        return RemoteError(
            RemoteErrorKind.AUTHENTICATION,
            f"{where} refused the credentials of {host.target.user} ({host.auth.value}, HTTP "
            "401): check the user and password, that the account is an administrator or in "
            "Remote Management Users, and that the host accepts this authentication",
        )
    if isinstance(error, requests.exceptions.SSLError):
        return RemoteError(
            RemoteErrorKind.HOST_KEY,
            f"the certificate of {host.endpoint} is not trusted: {certificate_problem(error)}. "
            "Give this host's CA file in its WinRM settings, or fix its listener's "
            "certificate; Sonde does not connect without checking it",
        )
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return RemoteError(
            RemoteErrorKind.UNREACHABLE,
            f"{host.endpoint} did not answer the connection: check the address, that WinRM "
            "listens there (winrm quickconfig) and the firewall",
        )
    if isinstance(error, requests.exceptions.Timeout):
        return RemoteError(RemoteErrorKind.TIMEOUT, f"{where} stopped answering mid-command")
    if isinstance(error, requests.exceptions.ConnectionError):
        return RemoteError(
            RemoteErrorKind.UNREACHABLE,
            f"cannot connect to {host.endpoint} ({_root_cause(error)}): check the address, "
            "that WinRM listens on that port (winrm quickconfig) and the firewall",
        )
    if isinstance(error, WSManFaultError):
        return RemoteError(
            RemoteErrorKind.PROTOCOL,
            f"{where} answered a WS-Management fault {error.wsman_fault_code or ''}: "
            f"{(error.reason or '').strip()[:300]}",
        )
    if isinstance(error, WinRMTransportError):
        return RemoteError(
            RemoteErrorKind.PROTOCOL,
            f"{where} answered HTTP {error.code}: {error.response_text[:300]}",
        )
    if isinstance(error, WinRMError) and "is not installed" in str(error):
        return RemoteError(
            RemoteErrorKind.AUTHENTICATION,
            f"{host.auth.value} authentication to {where} cannot start: {error} on this "
            "server (pip install 'pywinrm[kerberos]', then a ticket from kinit)",
        )
    if isinstance(error, WinRMError):
        return RemoteError(RemoteErrorKind.PROTOCOL, f"WinRM to {where}: {error}")
    if isinstance(error, (StopIteration, AssertionError, ValueError, KeyError)):
        # pywinrm's own checks of an answer (a RelatesTo that does not match, a Done with no
        # ExitCode): the technician hears it in one line, the server's log keeps where.
        log.warning("WinRM answer from %s not understood: %r", where, error, exc_info=error)
        return RemoteError(
            RemoteErrorKind.PROTOCOL, f"{where} answered a message this client cannot use"
        )
    return RemoteError(RemoteErrorKind.PROTOCOL, f"WinRM to {where} failed: {error!r}"[:400])


def certificate_problem(error: BaseException) -> str:
    """What ssl said about the certificate, found down the requests/urllib3 chain."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or current)
        pending += [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return _root_cause(error)


def _root_cause(error: BaseException) -> str:
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "No route to host"):
        if marker in text:
            return marker.lower()
    return text[:200]
