"""A script proposal's states, the one table of how it moves between them, and what publishing
a signed version does to the proposals of that script.

    pending --approve--> approved --publish--> published
    pending --reject---> rejected
    pending, approved --withdraw (its author)--> withdrawn
    pending, approved --a newer proposal of the script--> superseded
    pending --publish (the same bytes, signed without a review here)--> published
    pending, approved --publish (that version, other bytes)--> superseded

Pending and approved are live: a script has one live proposal at most (the table's unique
live_script_id), so a review is never spent on a version that a newer one replaced, and what
export-approved writes has one version per script. Every other state is final.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from sonde.server.errors import Conflict
from sonde.server.storage.tables import script_proposals


class ProposalState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"
    PUBLISHED = "published"

    @property
    def live(self) -> bool:
        return self in (ProposalState.PENDING, ProposalState.APPROVED)


class ProposalEvent(enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    SUPERSEDE = "supersede"
    PUBLISH = "publish"


_P, _A = ProposalState.PENDING, ProposalState.APPROVED
TRANSITIONS: dict[tuple[ProposalState, ProposalEvent], ProposalState] = {
    (_P, ProposalEvent.APPROVE): _A,
    (_P, ProposalEvent.REJECT): ProposalState.REJECTED,
    (_P, ProposalEvent.WITHDRAW): ProposalState.WITHDRAWN,
    (_A, ProposalEvent.WITHDRAW): ProposalState.WITHDRAWN,
    (_P, ProposalEvent.SUPERSEDE): ProposalState.SUPERSEDED,
    (_A, ProposalEvent.SUPERSEDE): ProposalState.SUPERSEDED,
    (_P, ProposalEvent.PUBLISH): ProposalState.PUBLISHED,
    (_A, ProposalEvent.PUBLISH): ProposalState.PUBLISHED,
}
_VERB = {
    ProposalEvent.APPROVE: "approved",
    ProposalEvent.REJECT: "rejected",
    ProposalEvent.WITHDRAW: "withdrawn",
    ProposalEvent.SUPERSEDE: "superseded",
    ProposalEvent.PUBLISH: "published",
}


def next_state(proposal_id: int, state: ProposalState, event: ProposalEvent) -> ProposalState:
    """The state `event` moves a proposal in `state` to; Conflict saying why it cannot."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        why = (
            "only a pending one is reviewed"
            if event
            in (
                ProposalEvent.APPROVE,
                ProposalEvent.REJECT,
            )
            else "only a pending or approved one can be"
        )
        raise Conflict(
            f"proposal {proposal_id} is {state.value}: it cannot be {_VERB[event]} ({why}; "
            "sonde scripts proposals lists them)"
        )
    return after


@dataclass(frozen=True)
class Settled:
    """What publishing one version did to its script's live proposal."""

    published: tuple[int, ...] = ()  # proposal ids now published
    superseded: tuple[int, ...] = ()  # the version is published with other bytes


_LIVE_OF = select(
    script_proposals.c.id,
    script_proposals.c.state,
    script_proposals.c.version,
    script_proposals.c.manifest,
    script_proposals.c.script,
).where(script_proposals.c.live_script_id == bindparam("sid"))
_END = (
    update(script_proposals)
    .where(
        script_proposals.c.id == bindparam("pid"),
        script_proposals.c.state == bindparam("was"),
    )
    .values(
        state=bindparam("now_state"),
        live_script_id=None,
        ended_at=bindparam("at"),
        reason=bindparam("why"),
    )
)


def settle_published(
    connection: Connection,
    script_id: str,
    version: str,
    *,
    manifest: bytes,
    script: bytes,
    at: datetime,
) -> Settled:
    """Inside catalog publish's transaction: the script's live proposal of this version is
    published when its bytes are the signed ones, superseded when they are not."""
    row = connection.execute(_LIVE_OF.with_for_update(), {"sid": script_id}).first()
    if row is None or row.version != version:
        return Settled()
    same = (bytes(row.manifest), bytes(row.script)) == (manifest, script)
    event = ProposalEvent.PUBLISH if same else ProposalEvent.SUPERSEDE
    state = ProposalState(row.state)
    after = next_state(row.id, state, event)
    why = "" if same else f"{script_id} {version} was published with other bytes"
    connection.execute(
        _END, {"pid": row.id, "was": state.value, "now_state": after.value, "at": at, "why": why}
    )
    return Settled(published=(row.id,)) if same else Settled(superseded=(row.id,))
