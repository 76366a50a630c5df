"""The SSH host keys the server trusts: added only by a technician, checked on every login.

`trust` reads the keys the host offers (no login) and stores the one whose SHA256
fingerprint is the one the technician read out of band (the machine's console, inventory);
nothing is ever trusted on first use. `forget` removes a host's keys (and its WinRM
settings, winrm_hosts.py), so a reinstalled machine can be trusted again. Both are audited
in the change's transaction (`hosts.trust`, `hosts.forget`); a login refused over its host
key is audited as a refusal of `remote.host_key`, with the fingerprint offered and the one
trusted.
"""

from __future__ import annotations

import asyncio
import builtins
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection

from sonde.server.domain.audit_rows import DetailValue
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Principal
from sonde.server.domain.winrm_hosts import WinRMHostSettings, explicit_port, forget_settings
from sonde.server.errors import (
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    SondeError,
    Unavailable,
)
from sonde.server.remote.addresses import BadAddress, host_and_port
from sonde.server.remote.host_keys import (
    HostKey,
    HostKeyRefused,
    TrustedHostKey,
    host_address,
    offered_host_keys,
)
from sonde.server.remote.shell import RemoteError, RemoteErrorKind, RemoteTarget
from sonde.server.storage.db import Database
from sonde.server.storage.tables import trusted_host_keys
from sonde.server.storage.types import AnyRow

_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
OfferedKeys = Callable[[str, int], Sequence[HostKey]]

_COLUMNS = trusted_host_keys.c
_ALL = select(trusted_host_keys).order_by(_COLUMNS.host, _COLUMNS.port, _COLUMNS.key_type)
_FOR_ADDRESS = (
    select(trusted_host_keys)
    .where(_COLUMNS.host == bindparam("at_host"), _COLUMNS.port == bindparam("at_port"))
    .order_by(_COLUMNS.key_type)
)
_FORGET = delete(trusted_host_keys).where(
    _COLUMNS.host == bindparam("at_host"), _COLUMNS.port == bindparam("at_port")
)


@dataclass(frozen=True)
class ForgottenHost:
    """What `sonde hosts forget` removed: trusted SSH keys and stored WinRM settings."""

    keys: builtins.list[TrustedHostKey]
    winrm: builtins.list[WinRMHostSettings]


class HostKeyNotTrusted(Conflict):
    """A login refused because the host's key is unknown or changed (the RemoteError's words)."""


class RemoteRefused(Conflict):
    """A login or command the machine refused (credentials, protocol): the message says why."""


def sonde_error_of(error: RemoteError) -> SondeError:
    """A remote failure as the console reports it: each kind to the status that fits."""
    if error.kind is RemoteErrorKind.UNREACHABLE:
        return Unavailable(error.message)
    if error.kind is RemoteErrorKind.TIMEOUT:
        return DeadlineExceeded(error.message)
    if error.kind is RemoteErrorKind.HOST_KEY:
        return HostKeyNotTrusted(error.message)
    return RemoteRefused(error.message)


def _record(row: AnyRow) -> TrustedHostKey:
    return TrustedHostKey(
        host=row.host,
        port=row.port,
        key=HostKey(row.key_type, row.key_base64),
        trusted_by=row.trusted_by,
        trusted_at=row.trusted_at,
    )


def parsed_address(address: str) -> tuple[str, int]:
    try:
        return host_and_port(address, 22)
    except BadAddress as bad:
        raise InvalidArgument(str(bad)) from None


class TrustedHosts:
    def __init__(
        self,
        db: Database,
        audited: AuditedWrites,
        clock: Clock = utc_now,
        *,
        offered: OfferedKeys = offered_host_keys,
    ) -> None:
        self._db = db
        self._audited = audited
        self._clock = clock
        self._offered = offered

    async def trust(self, principal: Principal, address: str, fingerprint: str) -> TrustedHostKey:
        """Trust the key `address` (HOST[:PORT]) offers whose fingerprint is `fingerprint`."""
        detail: dict[str, DetailValue] = {
            "address": address.strip()[:100],
            "fingerprint": fingerprint.strip()[:80],
        }
        try:
            host, port = parsed_address(address)
            given = fingerprint.strip()
            if not _FINGERPRINT.fullmatch(given):
                raise InvalidArgument(
                    f"{given[:80]!r} is not an SSH fingerprint: expected SHA256: and 43 "
                    "characters, as ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub prints it "
                    "on the machine's console"
                )
            try:
                offered = await asyncio.to_thread(self._offered, host, port)
            except RemoteError as error:
                raise sonde_error_of(error) from None
        except SondeError as error:
            await self._audited.refused(
                principal.name,
                "hosts.trust",
                error,
                entry=AuditEntry(detail=detail),
                peer=principal.peer,
            )
            raise
        now = self._clock()

        def unit(connection: Connection, entry: AuditEntry) -> TrustedHostKey:
            match = next((key for key in offered if key.fingerprint == given), None)
            if match is None:
                seen = ", ".join(f"{key.key_type} {key.fingerprint}" for key in offered)
                raise InvalidArgument(
                    f"{host_address(host, port)} offers no key with the fingerprint {given} "
                    f"(it offers {seen or 'none'}): nothing was trusted. Read the fingerprint "
                    "again on the machine's console; if it differs, someone may be in the middle"
                )
            entry.detail |= {"key_type": match.key_type}
            for row in connection.execute(_FOR_ADDRESS, {"at_host": host, "at_port": port}):
                was = _record(row)
                if was.key.key_type != match.key_type:
                    continue
                if was.key == match:
                    return was  # already trusted: the audit row says it was confirmed again
                raise Conflict(
                    f"another {match.key_type} key of {was.address} is trusted since "
                    f"{was.trusted_at:%Y-%m-%d %H:%M} UTC ({was.key.fingerprint}, by "
                    f"{was.trusted_by}): run sonde hosts forget {was.address} first if the "
                    "machine was reinstalled"
                )
            record = TrustedHostKey(host, port, match, principal.name, now)
            connection.execute(
                trusted_host_keys.insert(),
                {
                    "host": host,
                    "port": port,
                    "key_type": match.key_type,
                    "key_base64": match.key_base64,
                    "fingerprint": match.fingerprint,
                    "trusted_by": principal.name,
                    "trusted_at": now,
                },
            )
            return record

        return await self._audited.run(
            principal.name, "hosts.trust", unit, detail=detail, peer=principal.peer
        )

    async def list(self) -> builtins.list[TrustedHostKey]:
        rows = await self._db.read(lambda connection: connection.execute(_ALL).all())
        return [_record(row) for row in rows]

    async def for_address(self, host: str, port: int) -> builtins.list[TrustedHostKey]:
        rows = await self._db.read(
            lambda connection: connection.execute(
                _FOR_ADDRESS, {"at_host": host.lower(), "at_port": port}
            ).all()
        )
        return [_record(row) for row in rows]

    async def forget(self, principal: Principal, address: str) -> ForgottenHost:
        """Stop trusting every key of `address` and drop its WinRM settings (without a port:
        the keys of 22, the settings of 5986 and 5985); NotFound (audited) when it had none."""

        def unit(connection: Connection, entry: AuditEntry) -> ForgottenHost:
            host, port = parsed_address(address)
            binds = {"at_host": host, "at_port": port}
            gone = [_record(row) for row in connection.execute(_FOR_ADDRESS, binds)]
            winrm = forget_settings(connection, host, port if explicit_port(address) else None)
            if not gone and not winrm:
                raise NotFound(
                    f"no host key of {host_address(host, port)} is trusted and no WinRM "
                    "settings are stored for it"
                )
            if gone:
                connection.execute(_FORGET, binds)
                entry.detail["fingerprints"] = ", ".join(key.key.fingerprint for key in gone)
            if winrm:
                entry.detail["winrm"] = ", ".join(settings.address for settings in winrm)
            return ForgottenHost(gone, winrm)

        return await self._audited.run(
            principal.name,
            "hosts.forget",
            unit,
            detail={"address": address.strip()[:100]},
            peer=principal.peer,
        )

    async def refused_login(
        self, principal: Principal, target: RemoteTarget, refused: HostKeyRefused
    ) -> HostKeyNotTrusted:
        """Audit a login refused over its host key; the error to raise in its place."""
        error = HostKeyNotTrusted(refused.message)
        detail: dict[str, DetailValue] = {
            "target": target.label,
            "offered": f"{refused.offered.key_type} {refused.offered.fingerprint}",
            "trusted": refused.trusted.key.fingerprint if refused.trusted else "none",
        }
        if refused.trusted is not None:
            detail["trusted_at"] = refused.trusted.trusted_at.isoformat()
        await self._audited.refused(
            principal.name,
            "remote.host_key",
            error,
            entry=AuditEntry(detail=detail),
            peer=principal.peer,
        )
        return error
