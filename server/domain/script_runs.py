"""Script runs: the RunScript command of the command core, its tiers, approvals and results.

A run is a command (kind run_script) plus its row in `script_runs`: the catalog entry chosen
(id and version), the parameters checked against the manifest at request time, dry run, who
approved it, and how it ended. Who may ask is decided by the script's risk:

- low: scripts.run.low, and a ticket the caller works (assigned to them, not closed) about that
  machine; a caller who holds scripts.run.medium needs no ticket;
- medium: scripts.run.medium;
- high: scripts.run.high or scripts.run.medium, and then the run waits in pending_approval
  until another person with scripts.approve approves it (APPROVAL_WINDOW at most: then it
  expires). Nobody approves their own request. An approved run must reach the agent within
  APPROVAL_WINDOW of its approval (its expiry is brought forward to that), or it expires.

Secret values: `parameters_shown` (secrets as ***) is what listings, the audit and the timeline
show; `parameters` holds the values as given only until the run ends (its result, or the
sweep after any other final state, erases them): the server needs them to sign the order.

Every change writes its audit row in its own transaction: script.run (the request),
script.approve, script.reject, script.dispatch (each claim that sends it, actor `server`),
command.result; a cancel is the command core's command.cancel.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sonde.catalog.envelope import sign_order
from sonde.catalog.manifest import Manifest, Risk
from sonde.server.domain import run_verification
from sonde.server.domain.agent_reach import require_agent_of
from sonde.server.domain.agents import AgentRecord, resolve_agent
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.command_queue import (
    DEFAULT_EXPIRY,
    MAX_EXPIRY,
    audit_dispatch,
    claim_in,
)
from sonde.server.domain.command_refs import resolve_command_id
from sonde.server.domain.commands import (
    MAX_REASON_CHARS,
    CommandKind,
    CommandRecord,
    CommandState,
    FinishedCommand,
    check_transition,
    finish_record,
    insert_command,
    lock_command_record,
    new_command,
)
from sonde.server.domain.roles import Permission, Principal
from sonde.server.domain.run_closing import (
    check_closing,
    newest_snapshot_id,
    run_request_text,
)
from sonde.server.domain.run_reach import RunReach, check_machine, insert_reach
from sonde.server.domain.run_records import (
    NO_SECRETS,
    RunRecord,
    checked_parameters,
    chosen_entry,
    load_run,
    lock_run_row,
    published_manifest,
    run_from,
    runs_with_entry,
)
from sonde.server.domain.run_results import RunResults
from sonde.server.domain.run_tiers import check_tier, roles_text
from sonde.server.domain.self_service import check_self_service
from sonde.server.domain.text import checked_text
from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.domain.ticket_waiting import require_ticket_of
from sonde.server.domain.timeline import append_event
from sonde.server.domain.wakeups import LocalStream, Wake, WakeKind, Wakeups, emit
from sonde.server.errors import Conflict, InvalidArgument, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import commands, script_runs
from sonde.server.storage.types import AnyRow
from sonde.v1 import remediation_pb2

APPROVAL_WINDOW = timedelta(hours=4)
# Built once (PERFORMANCE.md: building statements per call costs 2-3x): a run is asked often.
_INSERT_RUN = script_runs.insert()


Direct = tuple[
    "LocalStream | None", "list[CommandRecord]", "dict[str, remediation_pb2.SignedRunScript]"
]


def _check_reach(connection: Connection, agent: AgentRecord, reach: RunReach | None) -> None:
    """The target a run reaches its machine by; without one, the run is queued for the
    agent's session, refused when the machine has no agent to fetch it."""
    if reach is not None:
        check_machine(connection, agent, reach)
    else:
        require_agent_of(agent, doing="sonde run")


TicketFor = Callable[[Connection], int]


def _check_asker(  # noqa: PLR0917 (what a run's asker is checked against)
    connection: Connection,
    principal: Principal,
    manifest: Manifest,
    asked: tuple[int | None, TicketFor | None],
    agent: AgentRecord,
    now: datetime,
    self_service: bool,
) -> int | None:
    """The ticket and the tiers (run_tiers.py), or the self-service rule (self_service.py);
    the run's ticket: the one given, else the one `ticket_for` chose (self-service, once its
    rule and limit are checked, the agent's row locked)."""
    ticket_id, ticket_for = asked
    if ticket_id is not None:
        require_ticket_of(load_ticket(connection, ticket_id), agent.id, agent.hostname)
    if self_service:
        check_self_service(connection, manifest, agent.id, now, ticket_id)
        if ticket_id is None and ticket_for is not None:
            return ticket_for(connection)
    else:
        check_tier(connection, principal, manifest.risk, ticket_id, (agent.id, agent.hostname))
    return ticket_id


def _hand_over(direct: Direct) -> None:
    """What a unit claimed for this replica's stream of the agent, sent now it committed."""
    stream, sent, orders = direct
    if stream is not None:
        stream.deliver(sent, orders)


def _shown(parameters: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in sorted(parameters.items()))


class ScriptRuns(RunResults):
    def __init__(
        self,
        db: Database,
        audited: AuditedWrites,
        wakeups: Wakeups,
        clock: Clock = utc_now,
        *,
        dispatch_key: ed25519.Ed25519PrivateKey | None = None,
    ) -> None:
        self._db = db
        self._audited = audited
        self._wakeups = wakeups
        self._clock = clock
        self._dispatch_key = dispatch_key

    # -- asking ----------------------------------------------------------------------------

    def _require_dispatch_key(self) -> None:
        """A run that could never be sent is refused when asked, not left to expire."""
        if self._dispatch_key is None:
            raise Conflict(
                "this server has no dispatch key (pki/dispatch.key), so it cannot send a run: "
                "restore the key from the data folder's backup (agents pinned its public half)"
            )

    async def request(
        self,
        principal: Principal,
        agent_ref: str,
        script_id: str,
        *,
        version: str = "",
        parameters: Mapping[str, str] | None = None,
        ticket_id: int | None = None,
        expires_in: timedelta = DEFAULT_EXPIRY,
        dry_run: bool = False,
        finding: str = "",
        resolve_if_cleared: bool = False,
        reach: RunReach | None = None,
        self_service: bool = False,
        ticket_for: TicketFor | None = None,
    ) -> RunRecord:
        """Record a run of a published script on an agent; audited as `script.run`, refusals
        included. A high-risk one waits for another person's approval; any other is queued.

        `self_service`: asked by the machine's own user (`sonde-agent fix`, self_service.py):
        instead of the tiers, the script must be self-service and of low risk, within the
        agent's hourly limit; `principal` is then `user:<name>@<agent>` and holds no role.
        With no `ticket_id`, `ticket_for` chooses or opens its ticket in the run's own
        transaction, once the limit is checked (a refused or failed run leaves no ticket).

        `finding`: the check it is meant to fix (verified first); `resolve_if_cleared`: the
        ticket is resolved with the run once its verification clears. `reach`: a machine
        without an agent, which the server reaches and runs it on itself (agentless_runs.py);
        stored with the run, and no agent's session is woken for it."""
        given = dict(parameters or {})
        wakes: list[Wake] = []
        now = self._clock()
        direct: Direct = (None, [], {})

        def unit(connection: Connection, entry: AuditEntry) -> RunRecord:
            nonlocal direct
            self._require_dispatch_key()
            if not timedelta(seconds=1) <= expires_in <= MAX_EXPIRY:
                raise InvalidArgument(f"a run expires after 1 s to {MAX_EXPIRY.days} days")
            if not script_id or len(script_id) > 64:
                raise InvalidArgument("name a script by its id, like flush-dns-cache")
            agent = resolve_agent(connection, agent_ref)
            entry.agent_id = agent.id
            entry.detail["script"] = script_id
            if agent.revoked_at is not None:
                raise Conflict(f"agent {agent.hostname} ({agent.id}) is revoked")
            _check_reach(connection, agent, reach)
            chosen = chosen_entry(connection, script_id, version, agent.platform)
            manifest = published_manifest(bytes(chosen.manifest))
            entry.detail["version"] = manifest.version
            entry.detail["risk"] = manifest.risk.value
            if self_service:
                entry.detail["self_service"] = 1
            asked = (ticket_id, ticket_for)
            run_ticket = _check_asker(
                connection, principal, manifest, asked, agent, now, self_service
            )
            entry.ticket_id = run_ticket
            check_closing(
                connection,
                principal,
                manifest,
                run_ticket,
                finding=finding,
                resolve_if_cleared=resolve_if_cleared,
                dry_run=dry_run,
            )
            shown, as_text = checked_parameters(manifest, given, dry_run=dry_run)
            high = manifest.risk is Risk.HIGH
            state = CommandState.PENDING_APPROVAL if high else CommandState.QUEUED
            command = new_command(
                agent_id=agent.id,
                agent_hostname=agent.hostname,
                kind=CommandKind.RUN_SCRIPT,
                ticket_id=run_ticket,
                requested_by=principal.name,
                now=now,
                expires_at=now + expires_in,
                state=state,
            )
            insert_command(connection, command)
            approval_due = min(now + APPROVAL_WINDOW, command.expires_at) if high else None
            stored = {
                "command_id": command.id,
                "script_id": manifest.id,
                "script_version": manifest.version,
                "risk": manifest.risk.value,
                "dry_run": dry_run,
                "parameters_shown": json.dumps(shown, sort_keys=True),
                "parameters": json.dumps(as_text, sort_keys=True),
                "approval_due_at": approval_due,
                "approved_by": "",
                "approved_at": None,
                "rejected_by": "",
                "exit_code": None,
                "timed_out": False,
                "cancelled": False,
                "stdout": b"",
                "stderr": b"",
                "stdout_truncated": False,
                "stderr_truncated": False,
                "stdout_bytes": 0,
                "stderr_bytes": 0,
                "duration_ms": None,
                "live_output": b"",
                "live_dropped": 0,
                "finding": finding,
                "resolve_if_cleared": resolve_if_cleared,
                "snapshot_before_id": newest_snapshot_id(connection, agent.id),
                "verification": "",
                "verify_command_id": None,
                "verified_at": None,
                "verification_detail": "",
            }
            connection.execute(_INSERT_RUN, stored)
            if reach is not None:
                insert_reach(connection, command.id, reach)
            if run_ticket is not None:
                append_event(
                    connection,
                    run_ticket,
                    TicketEventKind.SCRIPT_RUN,
                    principal.name,
                    now,
                    body=run_request_text(manifest, shown, dry_run, high),
                    command_id=command.id,
                )
            if not high and reach is None:
                direct = self._send_or_wake(connection, agent, command.id, wakes)
            entry.detail |= {
                "command_id": command.id,
                "parameters": _shown(shown),
                "dry_run": int(dry_run),
                "state": state.value,
                "expires_in_s": int(expires_in.total_seconds()),
                **({"reached_by": reach.label} if reach is not None else {}),
                **({"finding": finding} if finding else {}),
                **({"resolve_if_cleared": 1} if resolve_if_cleared else {}),
            }
            sent = {record.id: record for record in direct[1]}
            # As it now is, without reading back what this unit just wrote.
            return run_from(sent.get(command.id, command), stored)

        run = await self._audited.run(
            principal.name, "script.run", unit, ticket_id=ticket_id, peer=principal.peer
        )
        self._wakeups.publish(wakes)
        _hand_over(direct)
        return run

    async def approve(self, principal: Principal, run_ref: str) -> RunRecord:
        """Another person's approval of a high-risk run: it is queued for its agent.
        Audited as `script.approve`, refusals included."""
        wakes: list[Wake] = []
        now = self._clock()
        direct: Direct = (None, [], {})

        def unit(connection: Connection, entry: AuditEntry) -> RunRecord:
            nonlocal direct
            self._require_dispatch_key()
            command, row = self._awaiting(connection, principal, run_ref, entry, "approve")
            if row.approval_due_at is not None and row.approval_due_at <= now:
                raise Conflict(
                    f"run {command.id} waited for an approval since "
                    f"{command.created_at:%Y-%m-%d %H:%M} UTC, longer than "
                    f"{APPROVAL_WINDOW.total_seconds() / 3600:.0f} h: it expired and never "
                    "runs; ask for the run again"
                )
            check_transition(command.id, command.state, CommandState.QUEUED)
            connection.execute(
                update(commands)
                .where(commands.c.id == command.id)
                .values(
                    state=CommandState.QUEUED.value,
                    expires_at=min(command.expires_at, now + APPROVAL_WINDOW),
                )
            )
            connection.execute(
                update(script_runs)
                .where(script_runs.c.command_id == command.id)
                .values(approved_by=principal.name, approved_at=now)
            )
            agent = resolve_agent(connection, command.agent_id)
            direct = self._send_or_wake(connection, agent, command.id, wakes)
            return load_run(connection, command.id)

        run = await self._audited.run(principal.name, "script.approve", unit, peer=principal.peer)
        self._wakeups.publish(wakes)
        _hand_over(direct)
        return run

    async def reject(self, principal: Principal, run_ref: str, reason: str) -> RunRecord:
        """A high-risk run refused by someone with scripts.approve: it never runs."""
        wakes: list[Wake] = []
        now = self._clock()
        reason = checked_text("the reason", reason, max_chars=500)

        def unit(connection: Connection, entry: AuditEntry) -> RunRecord:
            if not reason:
                raise InvalidArgument("say why the run is rejected: --reason TEXT")
            command, _ = self._awaiting(connection, principal, run_ref, entry, "reject")
            entry.detail["reason"] = reason
            finish_record(
                connection,
                command,
                CommandState.REJECTED,
                now,
                wakes,
                reason=f"rejected by {principal.name}: {reason}",
            )
            connection.execute(
                update(script_runs)
                .where(script_runs.c.command_id == command.id)
                .values(rejected_by=principal.name, parameters=NO_SECRETS)
            )
            if command.ticket_id is not None:
                append_event(
                    connection,
                    command.ticket_id,
                    TicketEventKind.RUN_ENDED,
                    principal.name,
                    now,
                    body=f"run {command.id[:8]} rejected by {principal.name}: {reason}",
                    command_id=command.id,
                )
            return load_run(connection, command.id)

        run = await self._audited.run(principal.name, "script.reject", unit, peer=principal.peer)
        self._wakeups.publish(wakes, FinishedCommand(run.command))
        return run

    def _awaiting(
        self,
        connection: Connection,
        principal: Principal,
        run_ref: str,
        entry: AuditEntry,
        verb: str,
    ) -> tuple[CommandRecord, AnyRow]:
        if not principal.may(Permission.SCRIPTS_APPROVE):
            raise PermissionDenied(
                f"to {verb} a run needs {Permission.SCRIPTS_APPROVE} "
                f"(roles {roles_text(Permission.SCRIPTS_APPROVE)})"
            )
        command_id = resolve_command_id(connection, run_ref.strip())
        command = lock_command_record(connection, command_id)
        entry.agent_id, entry.ticket_id = command.agent_id, command.ticket_id
        entry.detail["command_id"] = command_id
        row = lock_run_row(connection, command_id)
        if command.requested_by == principal.name:
            raise PermissionDenied(
                f"you asked for run {command_id}: another person with "
                f"{Permission.SCRIPTS_APPROVE} must {verb} it (to withdraw it: sonde runs cancel)"
            )
        if command.state is not CommandState.PENDING_APPROVAL:
            raise Conflict(
                f"run {command_id} is {command.state.value}, not pending approval: "
                f"there is nothing to {verb}"
            )
        return command, row

    # -- reading ---------------------------------------------------------------------------

    async def get(self, run_ref: str) -> RunRecord:
        return await self._db.read(
            lambda connection: load_run(connection, resolve_command_id(connection, run_ref))
        )

    async def by_ids(self, command_ids: Iterable[str]) -> dict[str, RunRecord]:
        """The runs among `command_ids` (a ticket's timeline names them); others are left out."""
        wanted = sorted(set(command_ids))
        if not wanted:
            return {}

        def unit(connection: Connection) -> dict[str, RunRecord]:
            found = connection.execute(
                select(script_runs.c.command_id).where(script_runs.c.command_id.in_(wanted))
            ).scalars()
            return {command_id: load_run(connection, command_id) for command_id in found}

        return await self._db.read(unit)

    async def list(
        self,
        *,
        agent_id: str | None = None,
        ticket_id: int | None = None,
        states: Iterable[CommandState] = (),
        limit: int = 100,
    ) -> builtins.list[RunRecord]:
        """Newest first."""
        if not 1 <= limit <= 1000:
            raise InvalidArgument(f"limit must be from 1 to 1000, got {limit}")
        query = (
            select(commands.c.id)
            .select_from(commands.join(script_runs, script_runs.c.command_id == commands.c.id))
            .order_by(commands.c.created_at.desc(), commands.c.id.desc())
            .limit(limit)
        )
        if agent_id is not None:
            query = query.where(commands.c.agent_id == agent_id)
        if ticket_id is not None:
            query = query.where(commands.c.ticket_id == ticket_id)
        wanted = sorted({state.value for state in states})
        if wanted:
            query = query.where(commands.c.state.in_(wanted))

        def unit(connection: Connection) -> builtins.list[RunRecord]:
            ids = [row.id for row in connection.execute(query).all()]
            return [load_run(connection, command_id) for command_id in ids]

        return await self._db.read(unit)

    # -- dispatch (the agent's session) ----------------------------------------------------

    async def orders(
        self, due: Sequence[CommandRecord]
    ) -> dict[str, remediation_pb2.SignedRunScript]:
        """The signed order of each run among `due` (commands claimed for a session)."""
        if not any(command.kind is CommandKind.RUN_SCRIPT for command in due):
            return {}
        return await self._db.read(lambda connection: self.sign_in(connection, due))

    def sign_in(
        self, connection: Connection, due: Sequence[CommandRecord]
    ) -> dict[str, remediation_pb2.SignedRunScript]:
        """orders(), inside the caller's unit of work (a claim that sends them directly)."""
        wanted = [command for command in due if command.kind is CommandKind.RUN_SCRIPT]
        if not wanted:
            return {}
        key = self._dispatch_key
        if key is None:
            raise RuntimeError("this server has no dispatch key (pki/dispatch.key)")
        query = runs_with_entry(script_runs.c.command_id, script_runs.c.approved_by).where(
            script_runs.c.command_id.in_([command.id for command in wanted])
        )
        rows = {row.command_id: row for row in connection.execute(query).all()}
        now = self._clock()
        signed: dict[str, remediation_pb2.SignedRunScript] = {}
        for command in wanted:
            row = rows.get(command.id)
            if row is None:
                continue
            order = remediation_pb2.RunScriptOrder(
                command_id=command.id,
                agent_id=command.agent_id,
                entry=remediation_pb2.CatalogEntry(
                    id=row.script_id,
                    version=row.version,
                    manifest=bytes(row.manifest),
                    script=bytes(row.script),
                    catalog_key_id=row.key_id,
                    catalog_signature=bytes(row.signature),
                ),
                parameters=json.loads(row.parameters),
                dry_run=bool(row.dry_run),
                requested_by=command.requested_by,
                approved_by=row.approved_by,
                ticket_id=command.ticket_id or 0,
            )
            order.issued_at.FromDatetime(now.astimezone(UTC).replace(tzinfo=None))
            order.expires_at.FromDatetime(command.expires_at.astimezone(UTC).replace(tzinfo=None))
            signed[command.id] = sign_order(key, order)
        return signed

    def _send_or_wake(
        self,
        connection: Connection,
        agent: AgentRecord,
        command_id: str,
        wakes: builtins.list[Wake],
    ) -> Direct:
        """A run just queued: claimed and signed here when this replica holds the agent's
        current stream (sent once the unit commits), else its session is woken."""
        stream = self._wakeups.local_stream(agent.id)
        if stream is None or not agent.online or agent.session_id != stream.session_id:
            emit(connection, wakes, Wake(WakeKind.COMMANDS_DUE, agent.id, command_id))
            return None, [], {}
        sent = claim_in(
            connection, agent.id, stream.session_id, self._clock(), wakes, resend_delivered=False
        )
        audit_dispatch(self._audited, connection, sent, stream.session_id)
        return stream, sent, self.sign_in(connection, sent)

    async def verify_after_restart(self, agent_id: str, boot_time: datetime | None) -> int:
        """The agent connected, its machine started at `boot_time`: queue the checks of its
        runs that waited for a restart (run_verification.after_restart). One read when there
        are none, as on nearly every connect."""
        waiting = (
            select(script_runs.c.command_id)
            .join(commands, commands.c.id == script_runs.c.command_id)
            .where(commands.c.agent_id == agent_id)
            .where(script_runs.c.verification == run_verification.VerificationState.AFTER_RESTART)
            .limit(1)
        )
        if await self._db.read(lambda connection: connection.execute(waiting).first()) is None:
            return 0
        wakes: list[Wake] = []
        now = self._clock()
        queued = await self._db.write(
            lambda connection: run_verification.after_restart(
                self._audited, connection, agent_id, boot_time, now=now, wakes=wakes
            )
        )
        self._wakeups.publish(wakes)
        return queued

    # -- upkeep ----------------------------------------------------------------------------

    async def end_unapproved(self) -> int:
        """Runs not approved before their approval was due end `expired`; the secret values
        of runs that ended are erased. Safe on every replica at once."""
        now = self._clock()
        wakes: list[Wake] = []

        def unit(connection: Connection) -> int:
            due = connection.execute(
                select(commands.c.id)
                .select_from(commands.join(script_runs, script_runs.c.command_id == commands.c.id))
                .where(commands.c.state == CommandState.PENDING_APPROVAL.value)
                .where(script_runs.c.approval_due_at <= now)
            ).all()
            ended = 0
            for found in due:
                command = lock_command_record(connection, found.id)
                if command.state is not CommandState.PENDING_APPROVAL:
                    continue
                ended += 1
                finish_record(
                    connection,
                    command,
                    CommandState.EXPIRED,
                    now,
                    wakes,
                    reason=(
                        f"no one with {Permission.SCRIPTS_APPROVE} approved it within "
                        f"{APPROVAL_WINDOW.total_seconds() / 3600:.0f} h"
                    )[:MAX_REASON_CHARS],
                )
            run_verification.give_up(self._audited, connection, now)
            finished = select(commands.c.id).where(
                commands.c.state.not_in([state.value for state in CommandState if not state.final])
            )
            connection.execute(
                update(script_runs)
                .where(script_runs.c.parameters != NO_SECRETS)
                .where(script_runs.c.command_id.in_(finished))
                .values(parameters=NO_SECRETS)
            )
            return ended

        ended = await self._db.write(unit)
        self._wakeups.publish(wakes)
        return ended
