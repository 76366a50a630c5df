"""Catalog scripts on machines without an agent: the server runs them itself.

`sonde run HOST SCRIPT --ssh USER@HOST[:PORT]` (or `--winrm`) is a run like an agent's
(script_runs.py: the same tiers, approvals, expiry, audit rows and timeline events), stored
with how the machine is reached (run_reach.py). No agent fetches it, so the server executes
it: at once when it needs no approval, when the approval comes (ApproveRun), or from the
upkeep of any replica (a run whose server stopped before it started it). Never twice, never
after it expired:

1. claim, in one transaction: queued -> delivered with this replica's id (another replica,
   or a second call, finds it taken), `script.dispatch` audited; past its expiry it ends
   `expired` instead. The entry is verified with the pinned catalog key and its parameters
   checked in that transaction: a forged or changed entry ends `refused` before any login.
2. log in with the stored credential name (SSH: only a trusted host key; WinRM: the host's
   stored settings); a refusal ends the run `refused`, saying why.
3. running; the script's result is stored as an agent's (RunResults.accept_result, actor
   `server`): its output, exit code, the timeline, and the verification it starts.
4. when that verification is pending, the server collects the snapshot over the same
   connection and stores it as the check's result, so run_verification compares it exactly
   as for an agent (cleared, not_cleared, unverified; --resolve-if-cleared).

A replica that dies between 1 and 3 leaves the run delivered or running, claimed by a
replica whose lease lapses: the upkeep ends it `interrupted` ("whether it ran is unknown"),
and it is never run again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.agent.checks import CheckContext, evaluate
from sonde.catalog.bundle import BundleError
from sonde.catalog.manifest import ManifestError
from sonde.server.domain.agentless import agentless_id
from sonde.server.domain.agentless_run_ends import (
    SERVER,
    end_without_result,
    lost_and_due,
    script_result,
    signed_entry,
)
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.commands import (
    CommandRecord,
    CommandState,
    FinishedCommand,
    lock_command_record,
)
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.live_output import LiveOutput
from sonde.server.domain.reached_shells import ReachedShells
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.run_reach import RunReach, claim, claim_command, mark_running, reach_of
from sonde.server.domain.run_records import RunRecord
from sonde.server.domain.run_verification import VerificationState
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.domain.trusted_hosts import TrustedHosts
from sonde.server.domain.wakeups import Wake, Wakeups
from sonde.server.domain.winrm_hosts import WinRMHosts
from sonde.server.errors import Conflict, NotFound, SondeError
from sonde.server.remote import reached_runs
from sonde.server.remote.credentials import CredentialSource
from sonde.server.remote.host_keys import HostKeyRefused
from sonde.server.remote.shell import (
    RemoteError,
    RemoteErrorKind,
    RemoteShell,
)
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents
from sonde.v1 import agent_pb2

log = logging.getLogger(__name__)

# Who a host-key refusal during a run is audited as: the server logs in, not a technician.
_SERVER_PRINCIPAL = Principal(0, SERVER, Role.ADMIN)


class _NotTaken(Exception):
    """The run is not this call's to take or end (another replica's, ended, not due)."""

    def __init__(self, *, expired: bool) -> None:
        super().__init__("not taken")
        self.expired = expired


class AgentlessRuns:
    def __init__(
        self,
        db: Database,
        audited: AuditedWrites,
        *,
        wakeups: Wakeups,
        script_runs: ScriptRuns,
        diagnostics: Diagnostics,
        hosts: TrustedHosts,
        winrm_hosts: WinRMHosts,
        credentials: CredentialSource,
        catalog_key: ed25519.Ed25519PublicKey | None,
        replica_id: str,
        clock: Clock = utc_now,
        python: str = "python3",
    ) -> None:
        self._db = db
        self._audited = audited
        self._wakeups = wakeups
        self._runs = script_runs
        self._diagnostics = diagnostics
        self._hosts = hosts
        self._winrm_hosts = winrm_hosts
        self._credentials = credentials
        self._catalog_key = catalog_key
        self.replica_id = replica_id
        self._clock = clock
        self._shells = ReachedShells(hosts, winrm_hosts, credentials)
        self._python = python
        self._tasks: set[asyncio.Task[RunRecord | None]] = set()

    # -- asking ----------------------------------------------------------------------------

    async def request(
        self,
        principal: Principal,
        agent_ref: str,
        reach: RunReach,
        script_id: str,
        **options: object,
    ) -> RunRecord:
        """ScriptRuns.request for a machine the server reaches; started at once when it
        needs no approval. `options` are request()'s (version, parameters, ticket_id, ...)."""
        if self._catalog_key is None:
            raise Conflict(
                "this server has no catalog public key (pki/catalog.pub), so it cannot verify "
                "a script before running it on a machine without an agent"
            )
        machine_id = agentless_id(reach.target)
        known = await self._db.read(
            lambda connection: connection.execute(
                select(agents.c.id).where(agents.c.id == machine_id)
            ).first()
        )
        if known is None:
            raise NotFound(
                f"no machine is known at {reach.label}: collect a diagnostic first (sonde diag "
                f"NAME --{reach.target.transport.value} ...), which the run's check is compared "
                "with, and which says its platform"
            )
        run = await self._runs.request(
            principal,
            agent_ref,
            script_id,
            reach=reach,
            **options,  # type: ignore[arg-type]
        )
        if run.command.state is CommandState.QUEUED:
            self.start(run.command.id)
        return dataclasses.replace(  # as load_run would read it back
            run, reached_by=reach.label, credential=reach.credential_name
        )

    async def approve(self, principal: Principal, run_ref: str) -> RunRecord:
        """ScriptRuns.approve; an agentless run is then started by this server."""
        run = await self._runs.approve(principal, run_ref)
        command_id = run.command.id
        if await self._db.read(lambda connection: reach_of(connection, command_id)):
            self.start(command_id)
        return run

    # -- executing -------------------------------------------------------------------------

    def start(self, command_id: str) -> None:
        """execute() in the background (the caller's RPC returns; `--wait` watches the row)."""
        task = asyncio.create_task(self.execute(command_id), name=f"run-{command_id[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_started(self) -> None:
        """Until every execution this object started has ended (tests, a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop what runs here; those runs end `interrupted` by the upkeep of a live replica
        once this replica's lease lapses."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def execute(self, command_id: str) -> RunRecord | None:
        """Claim the run and run it; None when it is not this replica's to run (taken by
        another, ended, waiting for approval, expired now)."""
        taken = await self._claim(command_id)
        if taken is None:
            return None
        command, reach, prepared = taken
        try:
            return await self._run_claimed(command, reach, prepared)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # our own bug: the run must still end, and say so
            log.exception("the run %s on %s failed in the server", command.id, reach.label)
            return await self._end_unrun(
                command.id,
                CommandState.INTERRUPTED,
                f"the server failed while it ran the script ({type(error).__name__}); whether "
                f"it ran on {reach.label} is unknown, and it is not run again",
            )

    async def _claim(
        self, command_id: str
    ) -> tuple[CommandRecord, RunReach, reached_runs.PreparedRun | None] | None:
        now = self._clock()
        wakes: list[Wake] = []
        key = self._catalog_key

        def unit(
            connection: Connection, entry: AuditEntry
        ) -> tuple[CommandRecord, RunReach, reached_runs.PreparedRun | None]:
            reach = reach_of(connection, command_id)
            if reach is None:
                raise _NotTaken(expired=False)
            command = lock_command_record(connection, command_id)
            expired = command.state is CommandState.QUEUED and command.expires_at <= now
            taken = None if expired else claim(connection, command_id, self.replica_id, now)
            if taken is None:
                raise _NotTaken(expired=expired)
            entry.agent_id, entry.ticket_id = taken.agent_id, taken.ticket_id
            entry.detail |= {
                "command_id": taken.id,
                "replica": self.replica_id,
                "target": reach.label,
            }
            signed, parameters, dry_run = signed_entry(connection, command_id)
            try:
                if key is None:
                    raise BundleError("this server has no catalog public key (pki/catalog.pub)")
                prepared = reached_runs.prepare(
                    reach.target.transport, signed, key, parameters, dry_run=dry_run
                )
            except (BundleError, ManifestError) as refused:
                end_without_result(
                    self._audited,
                    connection,
                    taken,
                    CommandState.REFUSED,
                    reason=f"the server refused to send it: {refused}",
                    now=now,
                    wakes=wakes,
                )
                return taken, reach, None
            return taken, reach, prepared

        try:
            taken = await self._audited.run(SERVER, "script.dispatch", unit)
        except _NotTaken as not_taken:
            if not_taken.expired:
                await self._end_unrun(
                    command_id,
                    CommandState.EXPIRED,
                    "it expired before the server could run it; it never runs",
                    expect=frozenset({CommandState.QUEUED}),
                )
            return None
        self._wakeups.publish(wakes)
        return taken

    async def _run_claimed(
        self,
        command: CommandRecord,
        reach: RunReach,
        prepared: reached_runs.PreparedRun | None,
    ) -> RunRecord:
        if prepared is None:  # refused in the claim, before any connection
            return await self._runs.get(command.id)
        target = reach.target
        try:
            shell = await self._shells.open(target, reach.credential_name)
        except HostKeyRefused as refused:
            error = await self._hosts.refused_login(_SERVER_PRINCIPAL, target, refused)
            return await self._end_unrun(command.id, CommandState.REFUSED, str(error))
        except (RemoteError, SondeError) as error:
            message = error.message if isinstance(error, RemoteError) else str(error)
            return await self._end_unrun(
                command.id, CommandState.REFUSED, f"the server could not log in: {message}"
            )
        try:
            try:
                await self._db.write(
                    lambda connection: mark_running(connection, command.id, self._clock())
                )
            except Conflict:  # cancelled while the server logged in: nothing starts
                return await self._runs.get(command.id)
            live = LiveOutput(self._runs, command.agent_id, command.id)
            try:
                outcome = await reached_runs.send(shell, prepared, on_output=live.put)
            except RemoteError as error:
                state = (
                    CommandState.REFUSED
                    if error.kind is RemoteErrorKind.PROTOCOL
                    else CommandState.INTERRUPTED
                )
                return await self._end_unrun(
                    command.id,
                    state,
                    f"{error.message}; whether the script ran to its end is unknown"
                    if state is CommandState.INTERRUPTED
                    else f"the host could not be made to run it: {error.message}",
                )
            finally:
                await live.close()  # what came is in the live output before the result
            run = await self._store_outcome(command, prepared, outcome)
            verification = run.verification
            if verification is not None and verification.state is VerificationState.PENDING:
                await self._verify(command, shell, verification.command_id or "")
                run = await self._runs.get(command.id)
            return run
        finally:
            await shell.close()

    async def _store_outcome(
        self,
        command: CommandRecord,
        prepared: reached_runs.PreparedRun,
        outcome: reached_runs.ScriptOutcome,
    ) -> RunRecord:
        stored, _ = await self._runs.accept_result(
            command.agent_id,
            script_result(command.id, prepared, outcome),
            self._clock(),
            actor=SERVER,
        )
        return stored

    async def _verify(self, run: CommandRecord, shell: RemoteShell, check_id: str) -> None:
        """Collect the verification's snapshot now, over the run's connection, and store it
        as the check's result; a collection that fails ends the check failed (the upkeep
        then records the run unverified, saying why)."""
        now = self._clock()
        taken = await self._db.write(lambda connection: claim_command(connection, check_id, now))
        if taken is None:
            return
        try:
            collected = await reached_runs.collect(
                shell, python=self._python, collectors=taken.collectors
            )
        except RemoteError as error:
            failure = agent_pb2.Failure(
                kind=agent_pb2.FAILURE_KIND_FAILED,
                reason=f"the server could not collect the check: {error.message}",
            )
            result = agent_pb2.Result(command_id=check_id, failure=failure)
            await self._diagnostics.accept_result(
                run.agent_id, result, [], self._clock(), actor=SERVER
            )
            return
        received = self._clock()
        found = evaluate(collected.snapshot, CheckContext(reference_time=received))
        result = agent_pb2.Result(command_id=check_id, snapshot=collected.snapshot)
        await self._diagnostics.accept_result(run.agent_id, result, found, received, actor=SERVER)

    async def _end_unrun(
        self,
        command_id: str,
        state: CommandState,
        reason: str,
        *,
        expect: frozenset[CommandState] = frozenset({CommandState.DELIVERED, CommandState.RUNNING}),
    ) -> RunRecord:
        """End a run that did not run to a result (expired, refused, interrupted), audited
        `command.result`; unchanged when it is no longer in an `expect`ed state."""
        now = self._clock()
        wakes: list[Wake] = []

        def unit(connection: Connection, entry: AuditEntry) -> CommandRecord:
            command = lock_command_record(connection, command_id)
            if command.state not in expect:
                raise _NotTaken(expired=False)  # someone else ended or took it meanwhile
            entry.agent_id, entry.ticket_id = command.agent_id, command.ticket_id
            entry.detail |= {"command_id": command.id, "state": state.value, "reason": reason}
            return end_without_result(
                self._audited,
                connection,
                command,
                state,
                reason=reason,
                now=now,
                wakes=wakes,
                audit=False,
            )

        try:
            ended = await self._audited.run(SERVER, "command.result", unit)
        except _NotTaken:
            return await self._runs.get(command_id)
        self._wakeups.publish(wakes, FinishedCommand(ended))
        return await self._runs.get(command_id)

    # -- upkeep ----------------------------------------------------------------------------

    async def upkeep(self) -> tuple[int, int]:
        """Runs claimed by a replica whose lease lapsed end `interrupted` (never run again);
        queued runs nobody started are started here (the claim decides who runs them).
        Returns (ended, started)."""
        now = self._clock()
        wakes: list[Wake] = []

        def unit(connection: Connection) -> tuple[int, list[str]]:
            return lost_and_due(self._audited, connection, self.replica_id, now, wakes)

        ended, due = await self._db.write(unit)
        self._wakeups.publish(wakes)
        for command_id in due:
            self.start(command_id)
        return ended, len(due)
