"""ConsoleService methods for script runs: ask, list, show (with live output), cancel,
approve and reject. The tiers, approvals and masking are the domain's
(server/domain/script_runs.py); each method translates and hands off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.command_queue import DEFAULT_EXPIRY
from sonde.server.domain.script_runs import RunRecord
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

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
    return info


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
        run = await self._s.script_runs.request(
            current_principal(),
            request.agent,
            request.script_id,
            version=request.version,
            parameters=dict(request.parameters),
            ticket_id=_ticket(request.ticket_id),
            expires_in=(
                timedelta(seconds=request.expires_in_s) if request.expires_in_s else DEFAULT_EXPIRY
            ),
            dry_run=request.dry_run,
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
        run = await self._s.script_runs.approve(current_principal(), request.id)
        return console_pb2.ApproveRunResponse(run=run_info(run))

    @translate_errors
    async def RejectRun(
        self, request: console_pb2.RejectRunRequest, context: Context
    ) -> console_pb2.RejectRunResponse:
        run = await self._s.script_runs.reject(current_principal(), request.id, request.reason)
        return console_pb2.RejectRunResponse(run=run_info(run))
