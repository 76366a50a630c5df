"""Satisfaction asked on the workstation: `sonde-agent rate` (docs/web.md, "Satisfaction").

A ticket asked for from the workstation (`sonde-agent help`, channel workstation) has a local
user name for its requester, not a mail address, so no link can reach them. On resolve the
server asks on the workstation instead: a question (a satisfaction row, `asked_on`
workstation, with no secret) that the ticket's own local user answers from its own machine.

Who may answer is decided as for the ticket itself: the agent of the stream's certificate must
be the ticket's machine, and the local user its kernel names must be the ticket's requester. A
hostile agent can so lie only about its own machine's users, as when it asks for help; the
audit row `ticket.rated` by `agent:<id>` says which machine answered. A question lives
RATING_LIFETIME and is answered once; a ticket reopened is rated again once resolved again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Connection, Row

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.local_users import local_requester
from sonde.server.domain.satisfaction import (
    MAX_COMMENT,
    RATING_CHOICE,
    RATING_LIFETIME,
    Rated,
    store_answer_in,
)
from sonde.server.domain.text import checked_text, fitted
from sonde.server.domain.ticket_model import TicketChannel, TicketRecord, TicketStatus
from sonde.server.domain.ticket_queries import is_ticket_id
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import satisfaction, tickets

ASKED_ON_WORKSTATION = "workstation"  # satisfaction.asked_on
# A user with more resolved requests than this is shown the latest.
MAX_LISTED = 20
RESOLUTION_SHOWN_CHARS = 500
_RATED_STATUSES = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)


def ask_on_workstation_in(connection: Connection, ticket: TicketRecord, now: datetime) -> bool:
    """Ask the requester of `ticket`, just resolved, on its workstation when it was asked for
    from there; stored in the resolve's transaction. True when asked."""
    if ticket.channel is not TicketChannel.WORKSTATION or ticket.agent_id is None:
        return False
    connection.execute(
        satisfaction.insert(),
        {
            "ticket_id": ticket.id,
            "token_sha256": None,
            "asked_on": ASKED_ON_WORKSTATION,
            "asked_at": now,
            "expires_at": now + RATING_LIFETIME,
        },
    )
    return True


@dataclass(frozen=True)
class WaitingRating:
    """A resolved request of the user's, waiting for their rating."""

    ticket_id: int
    title: str
    resolved_at: datetime | None
    resolution: str


def _theirs(agent_id: str, user: str) -> Select[Any]:
    """The workstation questions about the tickets of `user` on the machine `agent_id`."""
    return (
        select(
            satisfaction,
            tickets.c.title,
            tickets.c.status,
            tickets.c.resolved_at,
            tickets.c.resolution,
        )
        .join(tickets, tickets.c.id == satisfaction.c.ticket_id)
        .where(satisfaction.c.asked_on == ASKED_ON_WORKSTATION)
        .where(tickets.c.channel == TicketChannel.WORKSTATION.value)
        .where(tickets.c.agent_id == agent_id)
        .where(tickets.c.requester == user)
    )


class WorkstationRatings:
    def __init__(self, db: Database, writes: AuditedWrites, clock: Clock = utc_now) -> None:
        self._db = db
        self._writes = writes
        self._clock = clock

    async def waiting(self, agent_id: str, local_user: str) -> list[WaitingRating]:
        """The user's resolved requests from this machine still waiting for a rating, the
        latest resolved first (MAX_LISTED at most)."""
        user = local_requester(local_user)

        def unit(connection: Connection) -> list[WaitingRating]:
            now = self._clock()
            rows = connection.execute(
                _theirs(agent_id, user)
                .where(tickets.c.status.in_(_RATED_STATUSES))
                .order_by(satisfaction.c.id.desc())
            ).all()
            latest: dict[int, Row[Any]] = {}
            for row in rows:  # the latest question of each ticket is the one answer() takes
                latest.setdefault(int(row.ticket_id), row)
            waiting = [
                WaitingRating(
                    ticket_id,
                    str(row.title),
                    row.resolved_at,
                    fitted(str(row.resolution), RESOLUTION_SHOWN_CHARS),
                )
                for ticket_id, row in latest.items()
                if row.rating is None and row.expires_at > now
            ]
            return waiting[:MAX_LISTED]

        return await self._db.read(unit)

    async def answer(
        self, agent_id: str, local_user: str, ticket_id: int, rating: int, comment: str
    ) -> Rated:
        """Store the user's rating of their ticket, once, while its question lives (audited
        `ticket.rated` by `agent:<id>`). NotFound for a ticket that is not theirs on this
        machine, told as one refusal whatever the reason, so that no other ticket shows."""
        if not 1 <= rating <= 5:
            raise InvalidArgument(RATING_CHOICE)
        comment = checked_text("the comment", comment, max_chars=MAX_COMMENT)
        user = local_requester(local_user)
        actor = f"agent:{agent_id}"

        def unit(connection: Connection, entry: AuditEntry) -> Rated:
            now = self._clock()
            entry.detail |= {"local_user": user, "asked_on": ASKED_ON_WORKSTATION}
            # The latest question about it: a ticket resolved again asks again.
            row = None
            if is_ticket_id(ticket_id):
                row = connection.execute(
                    _theirs(agent_id, user)
                    .where(satisfaction.c.ticket_id == ticket_id)
                    .order_by(satisfaction.c.id.desc())
                    .limit(1)
                    .with_for_update(of=satisfaction)
                ).first()
            if row is None:
                raise NotFound(
                    f"ticket #{ticket_id} is not a request of yours from this computer that "
                    "waits for a rating (`sonde-agent rate` lists those)"
                )
            entry.ticket_id = ticket_id
            if row.rating is not None:
                raise Conflict(f"ticket #{ticket_id} was rated already ({row.rating}/5): thank you")
            if row.status not in _RATED_STATUSES:
                raise Conflict(
                    f"ticket #{ticket_id} was reopened: rate it once it is resolved again"
                )
            if row.expires_at <= now:
                raise Conflict(
                    f"the rating of ticket #{ticket_id} was asked for 30 days at most, and "
                    "that time is over"
                )
            entry.detail["rating"] = rating
            said = f"Rated {rating}/5 by the requester on the workstation (user {user})"
            return store_answer_in(connection, row, rating, comment, now=now, said=said)

        return await self._writes.run(
            actor,
            "ticket.rated",
            unit,
            ticket_id=ticket_id if is_ticket_id(ticket_id) else None,
            agent_id=agent_id,
        )
