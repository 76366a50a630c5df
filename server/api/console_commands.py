"""ConsoleService methods for diagnostics and commands: ask, watch, list, cancel.

A diagnostic is a durable command (server/domain/commands.py). RunDiagnostics queues it and,
when the agent is online (or the caller asked to wait), waits for its row to reach a final
state: the result reaches whoever waits, on whichever replica the agent is connected to.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from sonde.server.api import mapping
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.command_queue import DEFAULT_EXPIRY
from sonde.server.domain.commands import CommandKind, CommandState
from sonde.server.domain.diagnostics import StoredSnapshotRecord
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_DIAGNOSTIC_TIMEOUT_S = 30
MAX_DIAGNOSTIC_TIMEOUT_S = 600


def _optional_ticket(value: int) -> int | None:
    if value < 0:
        raise InvalidArgument(
            f"the ticket id must be a positive number (or 0 for none), got {value}"
        )
    return value or None


class CommandMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def RunDiagnostics(
        self, request: console_pb2.RunDiagnosticsRequest, context: Context
    ) -> console_pb2.RunDiagnosticsResponse:
        principal = current_principal()
        ticket_id = _optional_ticket(request.ticket_id)
        timeout_s = request.timeout_s or DEFAULT_DIAGNOSTIC_TIMEOUT_S
        if timeout_s > MAX_DIAGNOSTIC_TIMEOUT_S:
            raise InvalidArgument(f"timeout_s must be at most {MAX_DIAGNOSTIC_TIMEOUT_S}")
        expires_in = timedelta(seconds=request.expires_s) if request.expires_s else DEFAULT_EXPIRY
        queued = await self._s.commands.queue(
            principal,
            request.agent,
            CommandKind.COLLECT,
            ticket_id=ticket_id,
            expires_in=expires_in,
            require_online=request.no_queue,
        )
        response = console_pb2.RunDiagnosticsResponse(
            command=mapping.command(queued.command), agent_online=queued.agent_online
        )
        if not (queued.agent_online or request.wait_offline):
            return response
        record, handed = await self._s.commands.wait_final(
            queued.command.id, timeout_s, known=queued.command
        )
        response.command.CopyFrom(mapping.command(record))
        if record.state is CommandState.SUCCEEDED and record.snapshot_id is not None:
            stored = (
                handed
                if isinstance(handed, StoredSnapshotRecord)
                else await self._s.diagnostics.get_snapshot(record.snapshot_id)
            )
            response.snapshot.CopyFrom(mapping.stored_snapshot(stored))
        return response

    @translate_errors
    async def ListCommands(
        self, request: console_pb2.ListCommandsRequest, context: Context
    ) -> console_pb2.ListCommandsResponse:
        current_principal()
        states = [mapping.command_state_from_proto(number) for number in request.states]
        found = await self._s.commands.list(
            agent_id=(await self._s.agents.resolve(request.agent)).id if request.agent else None,
            states=[state for state in states if state is not None],
            ticket_id=_optional_ticket(request.ticket_id),
            limit=request.limit or 100,
        )
        return console_pb2.ListCommandsResponse(commands=[mapping.command(c) for c in found])

    @translate_errors
    async def GetCommand(
        self, request: console_pb2.GetCommandRequest, context: Context
    ) -> console_pb2.GetCommandResponse:
        current_principal()
        found = await self._s.commands.get(request.id)
        return console_pb2.GetCommandResponse(command=mapping.command(found))

    @translate_errors
    async def CancelCommand(
        self, request: console_pb2.CancelCommandRequest, context: Context
    ) -> console_pb2.CancelCommandResponse:
        cancelled = await self._s.commands.cancel(current_principal(), request.id, request.reason)
        return console_pb2.CancelCommandResponse(command=mapping.command(cancelled))
