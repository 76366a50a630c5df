"""ConsoleService methods for the knowledge base (server/domain/knowledge_base.py, docs/kb.md):
save a procedure from its Markdown, read one, search, suggest for a ticket."""

from __future__ import annotations

from typing import Any

import grpc

from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.kb_markdown import to_markdown
from sonde.server.domain.kb_procedure import Procedure
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]
MAX_SUGGESTIONS = 20


def procedure_message(procedure: Procedure) -> console_pb2.Procedure:
    message = console_pb2.Procedure(
        id=procedure.id,
        title=procedure.title,
        category=procedure.category,
        version=procedure.version,
        markdown=to_markdown(procedure),
        finding_ids=list(procedure.finding_ids),
        script_ids=list(procedure.script_ids),
    )
    message.updated_at.FromDatetime(procedure.updated_at)
    return message


class KnowledgeBaseMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def SaveProcedure(
        self, request: console_pb2.SaveProcedureRequest, context: Context
    ) -> console_pb2.SaveProcedureResponse:
        saved = await self._s.knowledge_base.save(
            current_principal(), request.markdown, source_name=request.source_name or "the file"
        )
        return console_pb2.SaveProcedureResponse(
            procedure=procedure_message(saved.procedure), changed=saved.changed
        )

    @translate_errors
    async def GetProcedure(
        self, request: console_pb2.GetProcedureRequest, context: Context
    ) -> console_pb2.GetProcedureResponse:
        current_principal()
        found = await self._s.knowledge_base.get(request.id)
        return console_pb2.GetProcedureResponse(procedure=procedure_message(found))

    @translate_errors
    async def ListProcedures(
        self, request: console_pb2.ListProceduresRequest, context: Context
    ) -> console_pb2.ListProceduresResponse:
        current_principal()
        base = self._s.knowledge_base
        if request.query.strip():
            hits = [
                console_pb2.ProcedureHit(
                    procedure=procedure_message(hit.procedure),
                    matched_words=list(hit.matched_words),
                )
                for hit in await base.search(request.query)
            ]
        else:
            hits = [
                console_pb2.ProcedureHit(procedure=procedure_message(procedure))
                for procedure in await base.all()
            ]
        return console_pb2.ListProceduresResponse(procedures=hits)

    @translate_errors
    async def SuggestProcedures(
        self, request: console_pb2.SuggestProceduresRequest, context: Context
    ) -> console_pb2.SuggestProceduresResponse:
        current_principal()
        if request.ticket_id <= 0:
            raise InvalidArgument(f"the ticket is a positive number, got {request.ticket_id}")
        if request.limit > MAX_SUGGESTIONS:
            raise InvalidArgument(f"at most {MAX_SUGGESTIONS} suggestions, not {request.limit}")
        found = await self._s.knowledge_base.suggest_for_ticket(
            request.ticket_id, limit=request.limit or 5
        )
        return console_pb2.SuggestProceduresResponse(
            suggestions=[
                console_pb2.ProcedureSuggestion(
                    procedure=procedure_message(suggestion.procedure),
                    why=suggestion.why(),
                    used=suggestion.success.used,
                    resolved_verified=suggestion.success.resolved_verified,
                    success=suggestion.success.wording(),
                )
                for suggestion in found
            ]
        )
