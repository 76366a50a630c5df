"""ConsoleService methods for the closed loop: run a finding's catalog fix (`sonde fix`), and
how well each fix works (`sonde scripts stats`). The domain plans, checks and counts
(server/domain/fixes.py, script_stats.py); each method translates and hands off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from sonde.server.api.auth import current_principal
from sonde.server.api.console_runs import run_info, run_reach
from sonde.server.api.errors import translate_errors
from sonde.server.domain.command_queue import DEFAULT_EXPIRY
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class FixMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def FixFinding(
        self, request: console_pb2.FixFindingRequest, context: Context
    ) -> console_pb2.FixFindingResponse:
        principal = current_principal()
        if request.ticket_id < 0:
            raise InvalidArgument(
                f"the ticket id must be a positive number, got {request.ticket_id}"
            )
        plan = await self._s.fixes.plan(request.agent, request.finding, dict(request.parameters))
        response = console_pb2.FixFindingResponse(
            script_id=plan.manifest.id,
            script_version=plan.manifest.version,
            risk=plan.manifest.risk.value,
            disruptive=plan.manifest.disruptive,
            reboot_required=plan.manifest.reboot_required,
            parameters=plan.shown,
            parameter_sources=plan.sources,
            snapshot_id=plan.snapshot_id,
            finding=plan.finding,
        )
        reach = run_reach(request.ssh, request.winrm, request.credential)
        if request.plan_only:
            return response
        expires_in = (
            timedelta(seconds=request.expires_in_s) if request.expires_in_s else DEFAULT_EXPIRY
        )
        if reach is None:
            run = await self._s.fixes.run(
                principal,
                plan,
                ticket_id=request.ticket_id or None,
                expires_in=expires_in,
                dry_run=request.dry_run,
                resolve_if_cleared=request.resolve_if_cleared,
            )
        else:  # the same run, which the server runs itself on a machine without an agent
            run = await self._s.agentless_runs.request(
                principal,
                plan.agent.id,
                reach,
                plan.manifest.id,
                version=plan.manifest.version,
                parameters=plan.parameters,
                ticket_id=request.ticket_id or None,
                expires_in=expires_in,
                dry_run=request.dry_run,
                finding=plan.finding.check,
                resolve_if_cleared=request.resolve_if_cleared,
            )
        response.run.CopyFrom(run_info(run))
        return response

    @translate_errors
    async def GetScriptStats(
        self, request: console_pb2.GetScriptStatsRequest, context: Context
    ) -> console_pb2.GetScriptStatsResponse:
        current_principal()
        found = await self._s.script_stats.stats(
            script_id=request.script_id.strip(),
            finding=request.finding.strip(),
            days=request.days,
        )
        return console_pb2.GetScriptStatsResponse(
            stats=[
                console_pb2.ScriptStat(
                    script_id=stat.script_id,
                    finding=stat.finding,
                    runs=stat.runs,
                    succeeded=stat.succeeded,
                    verified=stat.verified,
                    cleared=stat.cleared,
                    refused=stat.refused,
                )
                for stat in found
            ]
        )
