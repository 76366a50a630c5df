"""How the server may talk WinRM to each host, as a technician set it (`sonde hosts winrm`).

One row per host:port: HTTPS or plain HTTP, the method (NTLM, Kerberos, Basic), the CA file
that signed the listener's certificate (one of the files of the data folder's winrm-ca,
where whoever runs the server puts them), whether Basic and Basic over
HTTP are allowed, and how long the host holds a Receive. A host without a row gets the safe
defaults of WinRMHost: HTTPS on 5986, NTLM, the certificate checked against requests' bundle.
Settings that could never connect (winrm.refusal) are refused when they are set, not at the
first diagnostic. Setting and forgetting are audited in the change's transaction
(`hosts.winrm`; `hosts.forget` with the SSH keys, trusted_hosts.py).
"""

from __future__ import annotations

import builtins
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sonde.server.domain.audit_rows import DetailValue
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Principal
from sonde.server.errors import Conflict, InvalidArgument, SondeError
from sonde.server.remote.addresses import BadAddress, host_and_port, remote_target
from sonde.server.remote.host_keys import host_address
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.remote.winrm import HTTP_PORT, HTTPS_PORT, WinRMAuth, WinRMHost, refusal
from sonde.server.storage.db import Database
from sonde.server.storage.tables import winrm_hosts
from sonde.server.storage.types import AnyRow

DEFAULT_OPERATION_TIMEOUT_S = WinRMHost.operation_timeout_s  # 20, as pywinrm's own
MIN_OPERATION_TIMEOUT_S = 1
MAX_OPERATION_TIMEOUT_S = 300
MAX_CA_FILE_CHARS = 4096
MAX_CA_FILE_BYTES = 1024 * 1024  # a bundle of CAs, not something ssl would read for minutes
_C = winrm_hosts.c


@dataclass(frozen=True)
class WinRMChoices:
    """What a technician asks for one host; the port follows --http when not given."""

    https: bool = True
    auth: str = WinRMAuth.NTLM.value
    ca_file: str = ""
    allow_basic: bool = False
    allow_unencrypted: bool = False
    operation_timeout_s: int = DEFAULT_OPERATION_TIMEOUT_S


@dataclass(frozen=True)
class WinRMHostSettings:
    """A stored row: the settings of host:port, who set them and when."""

    host: str
    port: int
    https: bool
    auth: WinRMAuth
    ca_file: str
    allow_basic: bool
    allow_unencrypted: bool
    operation_timeout_s: int
    set_by: str
    set_at: datetime

    @property
    def address(self) -> str:
        return host_address(self.host, self.port)

    def host_for(self, target: RemoteTarget) -> WinRMHost:
        return WinRMHost(
            target,
            https=self.https,
            auth=self.auth,
            ca_file=Path(self.ca_file) if self.ca_file else None,
            allow_basic=self.allow_basic,
            allow_unencrypted=self.allow_unencrypted,
            operation_timeout_s=self.operation_timeout_s,
        )


def _settings(row: AnyRow) -> WinRMHostSettings:
    return WinRMHostSettings(
        host=row.host,
        port=row.port,
        https=bool(row.https),
        auth=WinRMAuth(row.auth),
        ca_file=row.ca_file,
        allow_basic=bool(row.allow_basic),
        allow_unencrypted=bool(row.allow_unencrypted),
        operation_timeout_s=row.operation_timeout_s,
        set_by=row.set_by,
        set_at=row.set_at,
    )


def _row_for(connection: Connection, host: str, port: int) -> WinRMHostSettings | None:
    row = connection.execute(select(winrm_hosts).where(_C.host == host, _C.port == port)).first()
    return _settings(row) if row is not None else None


def explicit_port(text: str) -> bool:
    """Whether HOST[:PORT] (or USER@HOST[:PORT]) names its port."""
    address = text.strip().rpartition("@")[2]
    try:
        return host_and_port(address, HTTPS_PORT)[1] == host_and_port(address, HTTP_PORT)[1]
    except BadAddress:
        return True  # the caller's own parse says what is wrong with it


def _checked_auth(auth: str) -> WinRMAuth:
    try:
        return WinRMAuth(auth.strip().lower())
    except ValueError:
        raise InvalidArgument(
            f"{auth[:40]!r} is not a WinRM authentication method: ntlm, kerberos or basic"
        ) from None


def _checked_ca_file(text: str, folder: Path | None) -> str:
    """A PEM file of CA certificates in the server's WinRM CA folder (`folder`), named by its
    file name or its full path; the resolved path. Only files whoever runs the server put
    there can be named: an l2 never makes the server read another of its files."""
    if not text:
        return ""
    if len(text) > MAX_CA_FILE_CHARS or any(c in text for c in "\x00\r\n"):
        raise InvalidArgument("the CA file must be one file name in the server's WinRM CA folder")
    if folder is None:
        raise InvalidArgument(
            f"the CA file {text[:200]!r} is refused: this server has no WinRM CA folder"
        )
    outside = InvalidArgument(
        f"the CA file {text[:200]!r} is not a file of the server's WinRM CA folder {folder}: "
        "whoever runs the server puts the CA files a technician may name there"
    )
    named = Path(text)
    if ".." in named.parts or (not named.is_absolute() and len(named.parts) != 1):
        raise outside
    # One answer for missing, unreadable, too big or not PEM: an l2 learns nothing else
    # about the folder's files from it.
    unusable = InvalidArgument(
        f"the CA file {text[:200]!r} is not a PEM file of CA certificates (at most "
        f"{MAX_CA_FILE_BYTES // 1024} KiB) that the server can read in {folder}"
    )
    try:
        path = (folder / named).resolve(strict=True)  # an absolute `named` stays itself
        if path.parent != folder.resolve(strict=True):  # a link out of the folder included
            raise outside
        if not path.is_file() or path.stat().st_size > MAX_CA_FILE_BYTES:
            raise unusable
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        if named.is_absolute() and named.parent != folder:
            raise outside from None
        raise unusable from None
    except (ssl.SSLError, OSError, ValueError, RuntimeError):
        raise unusable from None
    return str(path)


def _detail(choices: WinRMHostSettings) -> dict[str, DetailValue]:
    return {
        "https": int(choices.https),
        "auth": choices.auth.value,
        "ca_file": choices.ca_file[:200],
        "allow_basic": int(choices.allow_basic),
        "allow_unencrypted": int(choices.allow_unencrypted),
        "operation_timeout_s": choices.operation_timeout_s,
    }


def forget_settings(
    connection: Connection, host: str, port: int | None
) -> builtins.list[WinRMHostSettings]:
    """Remove host:port's settings (both WinRM ports when `port` is None); what was removed."""
    ports = (HTTPS_PORT, HTTP_PORT) if port is None else (port,)
    where = and_(_C.host == host, _C.port.in_(ports))
    gone = [_settings(row) for row in connection.execute(select(winrm_hosts).where(where))]
    if gone:
        connection.execute(delete(winrm_hosts).where(where))
    return sorted(gone, key=lambda settings: settings.port)


class WinRMHosts:
    """The stored WinRM settings: set (audited), list, and the WinRMHost for a target."""

    def __init__(
        self,
        db: Database,
        audited: AuditedWrites,
        clock: Clock = utc_now,
        *,
        ca_folder: Path | None = None,
    ) -> None:
        """`ca_folder`: the only folder CA files are named in (the data folder's winrm-ca;
        None: a CA file is refused)."""
        self._db = db
        self._audited = audited
        self._clock = clock
        self._ca_folder = ca_folder

    async def settings_for(self, target: RemoteTarget) -> WinRMHost:
        """How to talk to `target`: its stored settings, or the safe defaults."""
        host, port = target.host.lower(), target.port
        stored = await self._db.read(lambda connection: _row_for(connection, host, port))
        return stored.host_for(target) if stored is not None else WinRMHost(target)

    async def target_for(self, text: str) -> RemoteTarget:
        """USER@HOST[:PORT] for WinRM: without a port, 5986, or 5985 when only HTTP settings
        are stored for the host."""
        try:
            target = remote_target(text, Transport.WINRM)
        except BadAddress as bad:
            raise InvalidArgument(str(bad)) from None
        if explicit_port(text):
            return target

        def stored_ports(connection: Connection) -> Sequence[AnyRow]:
            near = or_(_C.port == HTTPS_PORT, _C.port == HTTP_PORT)
            return connection.execute(
                select(_C.port, _C.https).where(_C.host == target.host, near)
            ).all()

        ports = {row.port: bool(row.https) for row in await self._db.read(stored_ports)}
        if HTTPS_PORT not in ports and ports.get(HTTP_PORT) is False:
            return RemoteTarget(Transport.WINRM, target.user, target.host, HTTP_PORT)
        return target

    async def list(self) -> builtins.list[WinRMHostSettings]:
        rows = await self._db.read(
            lambda connection: connection.execute(
                select(winrm_hosts).order_by(_C.host, _C.port)
            ).all()
        )
        return [_settings(row) for row in rows]

    async def set(
        self, principal: Principal, address: str, choices: WinRMChoices
    ) -> WinRMHostSettings:
        """Store the settings of HOST[:PORT] (5986, or 5985 with plain HTTP), replacing any;
        refused, audited, when they could never connect."""
        detail: dict[str, DetailValue] = {"address": address.strip()[:100]}
        try:
            settings = self._checked(principal, address, choices)
        except SondeError as error:
            await self._audited.refused(
                principal.name,
                "hosts.winrm",
                error,
                entry=AuditEntry(detail=detail),
                peer=principal.peer,
            )
            raise

        def unit(connection: Connection, entry: AuditEntry) -> WinRMHostSettings:
            entry.detail |= {"address": settings.address} | _detail(settings)
            values = {
                "https": settings.https,
                "auth": settings.auth.value,
                "ca_file": settings.ca_file,
                "allow_basic": settings.allow_basic,
                "allow_unencrypted": settings.allow_unencrypted,
                "operation_timeout_s": settings.operation_timeout_s,
                "set_by": settings.set_by,
                "set_at": settings.set_at,
            }
            was = _row_for(connection, settings.host, settings.port)
            if was is not None:
                entry.detail["replaced"] = f"set by {was.set_by} at {was.set_at:%Y-%m-%d %H:%M}"
                connection.execute(
                    winrm_hosts.update()
                    .where(_C.host == settings.host, _C.port == settings.port)
                    .values(**values)
                )
                return settings
            try:
                connection.execute(
                    winrm_hosts.insert(), values | {"host": settings.host, "port": settings.port}
                )
            except IntegrityError:  # someone set this host at the same moment
                raise Conflict(
                    f"the WinRM settings of {settings.address} were set by someone else at the "
                    "same moment: look at sonde hosts list, then set them again"
                ) from None
            return settings

        return await self._audited.run(
            principal.name, "hosts.winrm", unit, detail=detail, peer=principal.peer
        )

    def _checked(
        self, principal: Principal, address: str, choices: WinRMChoices
    ) -> WinRMHostSettings:
        default_port = HTTPS_PORT if choices.https else HTTP_PORT
        try:
            host, port = host_and_port(address, default_port)
        except BadAddress as bad:
            raise InvalidArgument(str(bad)) from None
        timeout = choices.operation_timeout_s
        if not MIN_OPERATION_TIMEOUT_S <= timeout <= MAX_OPERATION_TIMEOUT_S:
            raise InvalidArgument(
                f"the operation timeout must be {MIN_OPERATION_TIMEOUT_S} to "
                f"{MAX_OPERATION_TIMEOUT_S} s, got {timeout}"
            )
        settings = WinRMHostSettings(
            host=host,
            port=port,
            https=choices.https,
            auth=_checked_auth(choices.auth),
            ca_file=_checked_ca_file(choices.ca_file.strip(), self._ca_folder),
            allow_basic=choices.allow_basic,
            allow_unencrypted=choices.allow_unencrypted,
            operation_timeout_s=timeout,
            set_by=principal.name,
            set_at=self._clock(),
        )
        target = RemoteTarget(Transport.WINRM, "any user", host, port)
        refused = refusal(settings.host_for(target))
        if refused is not None:
            where = f"winrm://any user@{host}:{port}"
            said = refused.replace(where, settings.address)
            raise InvalidArgument(
                f"{said} (--allow-basic, --allow-unencrypted); nothing was stored"
            )
        if choices.allow_unencrypted and choices.https:
            raise InvalidArgument(
                f"--allow-unencrypted is for plain HTTP, and {settings.address} uses HTTPS: "
                "nothing was stored"
            )
        return settings
