"""A ticket comment's statements: the hottest ticket write, one statement on PostgreSQL.

A comment touches the ticket and reads it back (its row lock, on PostgreSQL, comes with the
update; a closed ticket matches nothing), adds the timeline event and appends the audit row.
As a unit of work (SQLite) that is three statements after BEGIN IMMEDIATE. On PostgreSQL every
statement is a round trip, so the whole comment is one statement of data-modifying CTEs, sent
alone (Database.write_alone): the ticket's UPDATE, the event's INSERT from the row it returned,
and the audit row after the event (audit_row_cte). A missing or closed ticket matches nothing
and the statement writes nothing; the caller's unit of work then says why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, Update, bindparam, func, literal, select, true, update

from sonde.server.domain.audit_chain import audit_row_cte
from sonde.server.domain.ticket_model import (
    TicketEventKind,
    TicketEventRecord,
    TicketRecord,
    TicketStatus,
)
from sonde.server.domain.ticket_queries import ticket_from_values
from sonde.server.storage.driver import DriverStatement
from sonde.server.storage.tables import agents, ticket_events, tickets

_AT = bindparam("comment_at", type_=tickets.c.updated_at.type)


def _touched() -> Update:
    return (
        update(tickets)
        .where(
            tickets.c.id == bindparam("comment_ticket_id"),
            tickets.c.status != TicketStatus.CLOSED.value,
        )
        .values(updated_at=_AT, first_response_at=func.coalesce(tickets.c.first_response_at, _AT))
        .returning(
            *tickets.c,
            select(agents.c.hostname)
            .where(agents.c.id == tickets.c.agent_id)
            .correlate(tickets)
            .scalar_subquery()
            .label("agent_hostname"),
            select(agents.c.removed_at.is_not(None))
            .where(agents.c.id == tickets.c.agent_id)
            .correlate(tickets)
            .scalar_subquery()
            .label("agent_removed"),
        )
    )


def _in_one_statement(keyed: bool) -> Select[Any]:
    touched = _touched().cte("touched")
    event = (
        ticket_events.insert()
        .from_select(
            ["ticket_id", "kind", "actor", "at", "body"],
            select(
                touched.c.id,
                literal(TicketEventKind.COMMENT.value, ticket_events.c.kind.type),
                bindparam("comment_actor", type_=ticket_events.c.actor.type),
                _AT,
                bindparam("comment_body", type_=ticket_events.c.body.type),
            ),
        )
        .returning(ticket_events.c.id)
        .cte("event")
    )
    audit_row = audit_row_cte(after=event, keyed=keyed)
    return (
        select(*touched.c, event.c.id.label("event_id"))
        .select_from(touched)
        .join(event, true())
        .join(audit_row, true())
    )


# The unit of work's first statement (SQLite, and PostgreSQL's refusals), then the whole comment.
COMMENTED = DriverStatement(_touched())
# By whether the audit chain is keyed.
COMMENT_ALONE = {keyed: DriverStatement(_in_one_statement(keyed)) for keyed in (False, True)}


def comment_values(ticket_id: int, at: datetime, actor: str, body: str) -> dict[str, object]:
    return {
        "comment_ticket_id": ticket_id,
        "comment_at": at,
        "comment_actor": actor,
        "comment_body": body,
    }


def commented(
    row: tuple[object, ...], actor: str, at: datetime, body: str
) -> tuple[TicketRecord, TicketEventRecord]:
    """The ticket and its new event, from the row COMMENT_ALONE returned."""
    *ticket_values, event_id = row
    ticket = ticket_from_values(tuple(ticket_values))
    assert isinstance(event_id, int)
    return ticket, TicketEventRecord(event_id, ticket.id, TicketEventKind.COMMENT, actor, at, body)
