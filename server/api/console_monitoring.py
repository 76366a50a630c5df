"""ConsoleService methods for monitoring's agent groups (server/domain/agent_groups.py,
docs/monitoring.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.agent_groups import AgentGroup
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def group_message(group: AgentGroup) -> console_pb2.AgentGroup:
    message = console_pb2.AgentGroup(
        name=group.name,
        interval_s=int(group.interval.total_seconds()),
        collectors=list(group.collectors),
        clear_checks=group.clear_checks,
        thresholds=dict(group.thresholds),
        members=list(group.members),
        updated_by=group.updated_by,
    )
    if group.updated_at is not None:
        message.updated_at.FromDatetime(group.updated_at)
    return message


def _interval_asked(request: console_pb2.SetAgentGroupRequest) -> timedelta | None:
    """The interval a `group set` asks for: zero for off, None to keep the group's."""
    given = request.HasField("interval_s")
    if request.off and given:
        raise InvalidArgument("say either an interval or off, not both")
    if request.off:
        return timedelta(0)
    if not given:
        return None
    if request.interval_s == 0:
        raise InvalidArgument("an interval of 0 is no interval: say --off to stop monitoring")
    return timedelta(seconds=request.interval_s)


class MonitoringMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def SetAgentGroup(
        self, request: console_pb2.SetAgentGroupRequest, context: Context
    ) -> console_pb2.SetAgentGroupResponse:
        principal = current_principal()
        group = await self._s.agent_groups.set_group(
            principal,
            request.name,
            interval=_interval_asked(request),
            collectors=list(request.collectors) if request.set_collectors else None,
            clear_checks=request.clear_checks,
            thresholds=dict(request.thresholds) if request.set_thresholds else None,
        )
        return console_pb2.SetAgentGroupResponse(group=group_message(group))

    @translate_errors
    async def AssignAgentGroup(
        self, request: console_pb2.AssignAgentGroupRequest, context: Context
    ) -> console_pb2.AssignAgentGroupResponse:
        group, ids = await self._s.agent_groups.assign(
            current_principal(), request.name, list(request.agents)
        )
        return console_pb2.AssignAgentGroupResponse(group=group_message(group), agent_ids=ids)

    @translate_errors
    async def ListAgentGroups(
        self, request: console_pb2.ListAgentGroupsRequest, context: Context
    ) -> console_pb2.ListAgentGroupsResponse:
        current_principal()
        groups = await self._s.agent_groups.list()
        return console_pb2.ListAgentGroupsResponse(groups=[group_message(g) for g in groups])
