"""ConsoleService's script proposals: propose, list, review beside the published version,
approve or reject, withdraw (scripts.propose; a decision needs catalog.review), and export
the approved ones for signing (catalog.manage)."""

from __future__ import annotations

from typing import Any

import grpc

from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.proposal_intake import ProposedFile
from sonde.server.domain.proposal_states import ProposalState
from sonde.server.domain.script_proposals import ProposalRecord
from sonde.server.errors import InvalidArgument
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]

_STATE_TO_WIRE = {
    state: console_pb2.ProposalState.Value(f"PROPOSAL_STATE_{state.name}")
    for state in ProposalState
}
_STATE_FROM_WIRE = {wire: state for state, wire in _STATE_TO_WIRE.items()}


def proposal(record: ProposalRecord) -> console_pb2.ScriptProposal:
    shown = console_pb2.ScriptProposal(
        id=record.id,
        script_id=record.script_id,
        version=record.version,
        platform=record.platform.value,
        title=record.title,
        risk=record.risk.value,
        state=_STATE_TO_WIRE[record.state],
        note=record.note,
        proposed_by=record.proposed_by,
        reviewed_by=record.reviewed_by,
        reason=record.reason,
        superseded_by=record.superseded_by or 0,
    )
    shown.proposed_at.FromDatetime(record.proposed_at)
    if record.reviewed_at is not None:
        shown.reviewed_at.FromDatetime(record.reviewed_at)
    if record.ended_at is not None:
        shown.ended_at.FromDatetime(record.ended_at)
    return shown


class ProposalMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def ProposeScripts(
        self, request: console_pb2.ProposeScriptsRequest, context: Context
    ) -> console_pb2.ProposeScriptsResponse:
        files = [
            ProposedFile(s.platform, s.script_name, s.manifest, s.script) for s in request.scripts
        ]
        made = await self._s.proposals.propose(current_principal(), files, request.note)
        return console_pb2.ProposeScriptsResponse(
            proposals=[proposal(p) for p in made.proposals], superseded=list(made.superseded)
        )

    @translate_errors
    async def ListProposals(
        self, request: console_pb2.ListProposalsRequest, context: Context
    ) -> console_pb2.ListProposalsResponse:
        state = None
        if request.state != console_pb2.PROPOSAL_STATE_UNSPECIFIED:
            state = _STATE_FROM_WIRE.get(request.state)
            if state is None:
                raise InvalidArgument(f"unknown proposal state {request.state}")
        listed = await self._s.proposals.list(
            current_principal(), state=state, script_id=request.script_id
        )
        return console_pb2.ListProposalsResponse(proposals=[proposal(p) for p in listed])

    @translate_errors
    async def GetProposal(
        self, request: console_pb2.GetProposalRequest, context: Context
    ) -> console_pb2.GetProposalResponse:
        review = await self._s.proposals.review(current_principal(), request.proposal)
        return console_pb2.GetProposalResponse(
            proposal=proposal(review.proposal),
            manifest=review.manifest,
            script=review.script,
            published_version=review.published_version,
            published_manifest=review.published_manifest,
            published_script=review.published_script,
            changes=[
                console_pb2.ProposalChange(
                    field=c.field,
                    published=c.published,
                    proposed=c.proposed,
                    changed=c.changed,
                    note=c.note,
                )
                for c in review.changes
            ],
            risk_raised=review.risk_raised,
            manifest_diff=review.manifest_diff,
            script_diff=review.script_diff,
            may_review=review.may_review,
        )

    @translate_errors
    async def ReviewProposal(
        self, request: console_pb2.ReviewProposalRequest, context: Context
    ) -> console_pb2.ReviewProposalResponse:
        caller = current_principal()
        if request.decision == console_pb2.REVIEW_DECISION_APPROVE:
            if request.reason:
                raise InvalidArgument("an approval takes no reason; a rejection does")
            reviewed = await self._s.proposals.approve(caller, request.proposal)
        elif request.decision == console_pb2.REVIEW_DECISION_REJECT:
            reviewed = await self._s.proposals.reject(caller, request.proposal, request.reason)
        else:
            raise InvalidArgument("a review decides: approve, or reject with a reason")
        return console_pb2.ReviewProposalResponse(proposal=proposal(reviewed))

    @translate_errors
    async def WithdrawProposal(
        self, request: console_pb2.WithdrawProposalRequest, context: Context
    ) -> console_pb2.WithdrawProposalResponse:
        withdrawn = await self._s.proposals.withdraw(
            current_principal(), request.proposal, request.reason
        )
        return console_pb2.WithdrawProposalResponse(proposal=proposal(withdrawn))

    @translate_errors
    async def ExportApproved(
        self, request: console_pb2.ExportApprovedRequest, context: Context
    ) -> console_pb2.ExportApprovedResponse:
        approved, left_out = await self._s.proposals.approved(current_principal())
        return console_pb2.ExportApprovedResponse(
            scripts=[
                console_pb2.ExportedScript(
                    proposal=proposal(f.proposal), manifest=f.manifest, script=f.script
                )
                for f in approved
            ],
            left_out=left_out,
        )
