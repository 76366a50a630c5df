"""ConsoleService's reading of the audit log (`sonde audit`, permission audit.read)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc

from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.audit_queries import DEFAULT_LIMIT, AuditFilter, AuditRow, list_audit
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def _entry(row: AuditRow) -> console_pb2.AuditEntry:
    entry = console_pb2.AuditEntry(
        id=row.id,
        actor=row.actor,
        action=row.action,
        agent_id=row.agent_id or "",
        ticket_id=row.ticket_id or 0,
        detail=row.detail,
        result=row.result,
        agent_hostname=row.agent_hostname,
    )
    entry.at.FromDatetime(row.at)
    return entry


def _filter(request: console_pb2.ListAuditRequest) -> AuditFilter:
    if request.ticket_id < 0 or request.before_id < 0:
        raise InvalidArgument("ticket and row ids are positive numbers")
    return AuditFilter(
        actor=request.actor,
        action=request.action,
        agent=request.agent,
        ticket_id=request.ticket_id or None,
        since=request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None,
        before_id=request.before_id or None,
        limit=request.limit or DEFAULT_LIMIT,
    )


class AuditMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def ListAudit(
        self, request: console_pb2.ListAuditRequest, context: Context
    ) -> console_pb2.ListAuditResponse:
        current_principal()
        rows, more = await list_audit(self._s.db, _filter(request))
        return console_pb2.ListAuditResponse(entries=[_entry(row) for row in rows], more=more)
