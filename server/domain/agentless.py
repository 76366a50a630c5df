"""Diagnostics of a machine without an agent: the server logs in, collects, stores.

`sonde diag HOST --ssh USER@HOST[:PORT]`: the server takes a credential for the target from
its credential source, logs in only to a host whose key a technician trusted
(trusted_hosts.py), collects with the agent's own collectors or the shell
(sonde.server.remote.remote_snapshot). `--winrm USER@HOST[:PORT]`: it connects as the host's
stored WinRM settings say (winrm_hosts.py) and runs the agent's collect.ps1
(sonde.server.remote.winrm_snapshot). Either way it evaluates the agent's checks itself and
stores the snapshot exactly as an agent's (diagnostics.store_snapshot, the ticket's timeline).

Such a machine is a row of `agents` marked `reached_by` (ssh or winrm) with the host:port it
is reached at, its id derived from them (agentless_id): the snapshots, commands and tickets
that name an agent by id work for it unchanged, it has no certificate (so nothing can
connect as it), and the same machine reached again is the same row. Each collection is a
COLLECT command row that is born final (succeeded), so `sonde commands` and the audit show
it like any diagnostic.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.agent.checks import CheckContext, evaluate
from sonde.server.domain.audit_rows import DetailValue
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.commands import (
    CommandKind,
    CommandRecord,
    CommandState,
    insert_command,
    new_command,
)
from sonde.server.domain.diagnostics import StoredSnapshotRecord, store_snapshot
from sonde.server.domain.reached_shells import ReachedShells, open_ssh, open_winrm
from sonde.server.domain.roles import Principal
from sonde.server.domain.text import sanitized
from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.domain.ticket_waiting import require_ticket_of
from sonde.server.domain.timeline import append_event
from sonde.server.domain.trusted_hosts import TrustedHosts, sonde_error_of
from sonde.server.domain.winrm_hosts import WinRMHosts
from sonde.server.errors import Conflict, InvalidArgument, SondeError
from sonde.server.remote.credentials import Credential, CredentialSource
from sonde.server.remote.host_keys import HostKeyRefused, TrustedHostKey, host_address
from sonde.server.remote.remote_snapshot import RemoteSnapshot, collect_remote_snapshot
from sonde.server.remote.shell import RemoteError, RemoteShell, RemoteTarget, Transport
from sonde.server.remote.winrm import WinRMHost, WinRMShell
from sonde.server.remote.winrm_snapshot import collect_windows_over_winrm
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents
from sonde.v1 import diagnostics_pb2

OpenShell = Callable[[RemoteTarget, Credential, Sequence[TrustedHostKey]], Awaitable[RemoteShell]]
OpenWinRM = Callable[[WinRMHost, Credential], Awaitable[WinRMShell]]


# A password a technician types for one connection: as long as any real one, bounded.
MAX_ONE_TIME_PASSWORD_CHARS = 1024


def agentless_id(target: RemoteTarget) -> str:
    """The machine's row id: 26 base32 characters, as an agent's, from transport, host, port."""
    seed = f"agentless:{target.transport.value}:{target.host.lower()}:{target.port}"
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:26]


@dataclass(frozen=True)
class AgentlessDiagnostic:
    command: CommandRecord
    stored: StoredSnapshotRecord
    note: str  # why the shell collection was used; "" when the agent's collectors ran


def _save_machine(
    connection: Connection,
    target: RemoteTarget,
    machine_id: str,
    snapshot: diagnostics_pb2.Snapshot,
    now: object,
) -> str:
    """Insert or refresh the machine's row; its host name as the machine reports it."""
    address = host_address(target.host, target.port)
    hostname = sanitized(snapshot.system.hostname, max_chars=255) or target.host
    values = {
        "hostname": hostname,
        "hostname_key": hostname.lower(),
        "platform": sanitized(snapshot.system.os_family, max_chars=32) or "unknown",
        "os_name": sanitized(snapshot.system.os_name, max_chars=255),
        "os_version": sanitized(snapshot.system.os_version, max_chars=255),
        "last_seen_at": now,
    }
    row = connection.execute(
        select(agents.c.reached_by, agents.c.removed_at).where(agents.c.id == machine_id)
    ).first()
    if row is None:
        connection.execute(
            agents.insert(),
            values
            | {
                "id": machine_id,
                "cert_fingerprint": "",  # no certificate: nothing can connect as this row
                "enrolled_at": now,
                "reached_by": target.transport.value,
                "reach_address": address,
                "agent_version": "",
            },
        )
        return hostname
    if row.removed_at is not None:
        raise Conflict(f"{address} was removed from the fleet; it is kept only for its history")
    connection.execute(agents.update().where(agents.c.id == machine_id).values(**values))
    return hostname


class AgentlessDiagnostics:
    def __init__(
        self,
        db: Database,
        audited: AuditedWrites,
        hosts: TrustedHosts,
        credentials: CredentialSource,
        clock: Clock = utc_now,
        *,
        winrm_hosts: WinRMHosts | None = None,
        open_shell: OpenShell = open_ssh,
        open_winrm: OpenWinRM = open_winrm,
        python: str = "python3",
    ) -> None:
        self._db = db
        self._audited = audited
        self._hosts = hosts
        self._credentials = credentials
        self._clock = clock
        self._shells = ReachedShells(
            hosts,
            winrm_hosts or WinRMHosts(db, audited, clock),
            credentials,
            open_ssh=open_shell,
            open_winrm=open_winrm,
        )
        self._python = python

    async def _collect(self, shell: RemoteShell, shell_only: bool) -> RemoteSnapshot:
        if isinstance(shell, WinRMShell):
            return RemoteSnapshot(await collect_windows_over_winrm(shell), "")
        return await collect_remote_snapshot(shell, python=self._python, shell_only=shell_only)

    async def run(
        self,
        principal: Principal,
        target: RemoteTarget,
        *,
        ticket_id: int | None = None,
        credential_name: str = "",
        shell_only: bool = False,
        one_time_password: str = "",
    ) -> AgentlessDiagnostic:
        """Collect from `target` and store it; audited `diagnostics.run`, refusals included
        (a refused host key also as `remote.host_key`). Nothing is stored when the login or
        the collection fails. `one_time_password` logs in as the target's user with a
        password given for this connection alone, instead of a stored credential: it is
        never stored, and the audit row says only that one was used."""
        machine_id = agentless_id(target)
        detail: dict[str, DetailValue] = {"target": target.label}
        if one_time_password:
            if credential_name:
                raise InvalidArgument("give a stored credential or a one-time password, not both")
            if len(one_time_password) > MAX_ONE_TIME_PASSWORD_CHARS or "\0" in one_time_password:
                raise InvalidArgument(
                    "the one-time password is refused: at most "
                    f"{MAX_ONE_TIME_PASSWORD_CHARS} characters and no NUL"
                )
            detail["credential"] = "one-time password"
        entry = AuditEntry(agent_id=machine_id, ticket_id=ticket_id, detail=detail)
        if shell_only and target.transport is not Transport.SSH:
            raise InvalidArgument("--shell-only is for SSH: over WinRM collect.ps1 runs")
        if ticket_id is not None:
            # Refused before anyone logs in anywhere, as an agent's diagnostic is.
            await self._db.read(
                lambda connection: self._check_ticket(connection, ticket_id, target)
            )
        try:
            credential = (
                Credential(target.user, password=one_time_password, name="one-time password")
                if one_time_password
                else await self._credentials.for_target(target, credential_name)
            )
            shell = await self._shells.open_with(target, credential)
        except HostKeyRefused as refused:
            raise await self._hosts.refused_login(principal, target, refused) from None
        except (RemoteError, SondeError) as error:
            failure = sonde_error_of(error) if isinstance(error, RemoteError) else error
            await self._audited.refused(
                principal.name, "diagnostics.run", failure, entry=entry, peer=principal.peer
            )
            raise failure from None
        try:
            collected = await self._collect(shell, shell_only)
        except RemoteError as error:
            failure = sonde_error_of(error)
            await self._audited.refused(
                principal.name, "diagnostics.run", failure, entry=entry, peer=principal.peer
            )
            raise failure from None
        finally:
            await shell.close()
        snapshot = collected.snapshot
        received_at = self._clock()
        found = evaluate(snapshot, CheckContext(reference_time=received_at))

        def unit(connection: Connection, entry: AuditEntry) -> AgentlessDiagnostic:
            hostname = _save_machine(connection, target, machine_id, snapshot, received_at)
            if ticket_id is not None:
                require_ticket_of(load_ticket(connection, ticket_id), machine_id, hostname)
            asked = new_command(
                agent_id=machine_id,
                agent_hostname=hostname,
                kind=CommandKind.COLLECT,
                ticket_id=ticket_id,
                requested_by=principal.name,
                now=received_at,
                expires_at=received_at,
                state=CommandState.SUCCEEDED,
            )
            # The server collected it itself: delivered, started and ended at once.
            at = received_at
            record = replace(asked, delivered_at=at, started_at=at, finished_at=at)
            insert_command(connection, record)
            stored = store_snapshot(
                connection, record, machine_id, snapshot, found, received_at=received_at
            )
            if ticket_id is not None:
                append_event(
                    connection,
                    ticket_id,
                    TicketEventKind.DIAGNOSTIC,
                    principal.name,
                    received_at,
                    snapshot_id=stored.summary.id,
                )
            entry.detail |= {
                "command_id": record.id,
                "snapshot_id": stored.summary.id,
                "collected_by": diagnostics_pb2.CollectedBy.Name(snapshot.collected_by),
            }
            record = replace(record, snapshot_id=stored.summary.id)
            return AgentlessDiagnostic(record, stored, collected.note)

        return await self._audited.run(
            principal.name,
            "diagnostics.run",
            unit,
            agent_id=machine_id,
            ticket_id=ticket_id,
            detail=detail,
            peer=principal.peer,
        )

    @staticmethod
    def _check_ticket(connection: Connection, ticket_id: int, target: RemoteTarget) -> None:
        require_ticket_of(
            load_ticket(connection, ticket_id),
            agentless_id(target),
            host_address(target.host, target.port),
        )
