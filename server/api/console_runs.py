"""ConsoleService methods for script runs: ask, list, show (with live output), cancel,
approve and reject. The tiers, approvals and masking are the domain's
(server/domain/script_runs.py); each method translates and hands off."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.command_queue import DEFAULT_EXPIRY
from sonde.server.domain.run_reach import RunReach
from sonde.server.domain.run_records import RunRecord
from sonde.server.domain.run_verification import Verification, VerificationState
from sonde.server.domain.ticket_model import TicketEventKind, TicketEventRecord
from sonde.server.errors import InvalidArgument
from sonde.server.remote.addresses import BadAddress, remote_target
from sonde.server.remote.shell import Transport
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2, diagnostics_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def run_info(run: RunRecord, *, with_output: bool = True) -> console_pb2.ScriptRunInfo:
    info = console_pb2.ScriptRunInfo(
        command=mapping.command(run.command),
        script_id=run.script_id,
        script_version=run.script_version,
        risk=run.risk.value,
        dry_run=run.dry_run,
        parameters=run.parameters,
        approved_by=run.approved_by,
        rejected_by=run.rejected_by,
        ended=run.exit_code is not None,
        exit_code=run.exit_code if run.exit_code is not None else 0,
        timed_out=run.timed_out,
        cancelled=run.cancelled,
        stdout_truncated=run.stdout_truncated,
        stderr_truncated=run.stderr_truncated,
        stdout_bytes=run.stdout_bytes,
        stderr_bytes=run.stderr_bytes,
        duration_ms=run.duration_ms or 0,
    )
    if with_output:
        info.stdout, info.stderr = run.stdout, run.stderr
    if run.approved_at is not None:
        info.approved_at.FromDatetime(run.approved_at)
    if run.approval_due_at is not None:
        info.approval_due_at.FromDatetime(run.approval_due_at)
    info.finding = run.finding
    info.resolve_if_cleared = run.resolve_if_cleared
    info.reached_by, info.credential = run.reached_by, run.credential
    info.user_session = run.user_session
    if run.verification is not None:
        info.verification.CopyFrom(verification_info(run.verification))
    return info


_VERIFICATION_STATES = {
    VerificationState.NONE: console_pb2.VERIFICATION_STATE_NONE,
    VerificationState.PENDING: console_pb2.VERIFICATION_STATE_PENDING,
    VerificationState.AFTER_RESTART: console_pb2.VERIFICATION_STATE_AFTER_RESTART,
    VerificationState.CLEARED: console_pb2.VERIFICATION_STATE_CLEARED,
    VerificationState.NOT_CLEARED: console_pb2.VERIFICATION_STATE_NOT_CLEARED,
    VerificationState.UNVERIFIED: console_pb2.VERIFICATION_STATE_UNVERIFIED,
}


def verification_info(verification: Verification) -> console_pb2.RunVerification:
    info = console_pb2.RunVerification(
        state=_VERIFICATION_STATES.get(
            verification.state, console_pb2.VERIFICATION_STATE_UNSPECIFIED
        ),
        reason=verification.reason,
        command_id=verification.command_id or "",
        snapshot_id=verification.snapshot_id or 0,
        resolved_ticket=verification.resolved_ticket,
    )
    for check in verification.checks:
        info.checks.add(
            check=check.check,
            before=check.before or diagnostics_pb2.SEVERITY_UNSPECIFIED,
            seen_before=check.before is not None,
            after=check.after or diagnostics_pb2.SEVERITY_UNSPECIFIED,
            seen_after=check.after is not None,
            summary=check.summary,
        )
    if verification.verified_at is not None:
        info.verified_at.FromDatetime(verification.verified_at)
    return info


TIMELINE_OUTPUT_TAIL = 4096  # bytes of each stream a ticket's timeline shows of a run


def timeline_event(
    event: TicketEventRecord, runs: Mapping[str, RunRecord]
) -> console_pb2.TicketEvent:
    """A timeline event, with the run it names as it is now; the run's result event carries
    the tail of its output (sonde runs show has it whole)."""
    message = mapping.ticket_event(event)
    run = runs.get(event.command_id or "")
    if run is None:
        return message
    message.command_id = run.command.id
    message.run.CopyFrom(run_info(run, with_output=False))
    if event.kind is TicketEventKind.RUN_ENDED:
        message.run.stdout = run.stdout[-TIMELINE_OUTPUT_TAIL:]
        message.run.stderr = run.stderr[-TIMELINE_OUTPUT_TAIL:]
    return message


def run_reach(ssh: str, winrm: str, credential: str) -> RunReach | None:
    """--ssh or --winrm USER@HOST[:PORT], with --credential NAME; None for a run on an agent."""
    if ssh and winrm:
        raise InvalidArgument("give --ssh or --winrm, not both: a run reaches one machine one way")
    if not ssh and not winrm:
        if credential:
            raise InvalidArgument("--credential names how to log in: give --ssh or --winrm too")
        return None
    try:
        target = remote_target(ssh, Transport.SSH) if ssh else remote_target(winrm, Transport.WINRM)
    except BadAddress as bad:
        raise InvalidArgument(str(bad)) from None
    return RunReach(target, credential.strip())


def _ticket(value: int) -> int | None:
    if value < 0:
        raise InvalidArgument(
            f"the ticket id must be a positive number (or 0 for none), got {value}"
        )
    return value or None


class RunMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def RunScript(
        self, request: console_pb2.RunScriptRequest, context: Context
    ) -> console_pb2.RunScriptResponse:
        principal = current_principal()
        options: dict[str, Any] = {
            "version": request.version,
            "parameters": dict(request.parameters),
            "ticket_id": _ticket(request.ticket_id),
            "expires_in": (
                timedelta(seconds=request.expires_in_s) if request.expires_in_s else DEFAULT_EXPIRY
            ),
            "dry_run": request.dry_run,
            "finding": request.finding.strip(),
            "resolve_if_cleared": request.resolve_if_cleared,
        }
        reach = run_reach(request.ssh, request.winrm, request.credential)
        if reach is None:
            run = await self._s.script_runs.request(
                principal, request.agent, request.script_id, **options
            )
        else:
            run = await self._s.agentless_runs.request(
                principal, request.agent, reach, request.script_id, **options
            )
        return console_pb2.RunScriptResponse(run=run_info(run))

    @translate_errors
    async def ListRuns(
        self, request: console_pb2.ListRunsRequest, context: Context
    ) -> console_pb2.ListRunsResponse:
        current_principal()
        states = [mapping.command_state_from_proto(number) for number in request.states]
        found = await self._s.script_runs.list(
            agent_id=(await self._s.agents.resolve(request.agent)).id if request.agent else None,
            ticket_id=_ticket(request.ticket_id),
            states=[state for state in states if state is not None],
            limit=request.limit or 100,
        )
        return console_pb2.ListRunsResponse(runs=[run_info(r, with_output=False) for r in found])

    @translate_errors
    async def GetRun(
        self, request: console_pb2.GetRunRequest, context: Context
    ) -> console_pb2.GetRunResponse:
        current_principal()
        run = await self._s.script_runs.get(request.id)
        return console_pb2.GetRunResponse(
            run=run_info(run),
            live_output=run.live_output[request.live_offset :],
            live_bytes=len(run.live_output),
            live_dropped=run.live_dropped,
        )

    @translate_errors
    async def CancelRun(
        self, request: console_pb2.CancelRunRequest, context: Context
    ) -> console_pb2.CancelRunResponse:
        principal = current_principal()
        run = await self._s.script_runs.get(request.id)  # a script run, not another command
        await self._s.commands.cancel(principal, run.command.id, request.reason)
        return console_pb2.CancelRunResponse(
            run=run_info(await self._s.script_runs.get(run.command.id))
        )

    @translate_errors
    async def ApproveRun(
        self, request: console_pb2.ApproveRunRequest, context: Context
    ) -> console_pb2.ApproveRunResponse:
        # An agentless run is started by this server once approved (agentless_runs.py).
        run = await self._s.agentless_runs.approve(current_principal(), request.id)
        return console_pb2.ApproveRunResponse(run=run_info(run))

    @translate_errors
    async def RejectRun(
        self, request: console_pb2.RejectRunRequest, context: Context
    ) -> console_pb2.RejectRunResponse:
        run = await self._s.script_runs.reject(current_principal(), request.id, request.reason)
        return console_pb2.RejectRunResponse(run=run_info(run))
