"""Mails to the helpdesk's own people: the assignee on an assignment and on SLA risk, or, for a
ticket nobody has, the technicians of its level (docs/sla.md, docs/mail.md).

A user is written to when an admin gave them a mail address (`sonde users email NAME ADDRESS`)
and they are not disabled. Like the requester's mails, each is an outbox row written in the
unit of work of the change it tells, sent by mail_sender.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.server.domain.notifications import is_mail_address
from sonde.server.domain.ticket_model import TicketLevel, TicketRecord
from sonde.server.storage.tables import outbox, users

MAX_TOLD = 20  # of a level, for a ticket nobody has


@dataclass(frozen=True)
class StaffMember:
    name: str
    address: str


def checked_email(email: str) -> str:
    """A user's mail address: one plain address, or "" to take it away; ValueError else."""
    email = email.strip()
    if not email:
        return ""
    if not is_mail_address(email):
        raise ValueError(f"{email[:80]!r} is not one mail address like marie@example.org")
    return email


def staff_to_tell(
    connection: Connection, assignee: str | None, level: TicketLevel
) -> list[StaffMember]:
    """The assignee, when the ticket has one and they have an address; else the enabled users
    of the level (role l1 or l2) who have one, at most MAX_TOLD."""
    query = select(users.c.name, users.c.email).where(
        users.c.disabled_at.is_(None), users.c.email.is_not(None), users.c.email != ""
    )
    if assignee is not None:
        query = query.where(users.c.name == assignee)
    else:
        query = query.where(users.c.role == level.value).order_by(users.c.name).limit(MAX_TOLD)
    return [StaffMember(row.name, row.email) for row in connection.execute(query)]


def queue_to_staff(
    connection: Connection,
    kind: str,
    *,
    ticket: TicketRecord,
    people: list[StaffMember],
    body: str,
    now: datetime,
) -> None:
    reference = f"[Sonde #{ticket.id}]"
    text = (
        f"{reference} {ticket.title}\n\n{body}\n\n"
        f"Priority {ticket.priority.value.upper()}, level {ticket.level.value.upper()}, "
        f"status {ticket.status.value}. `sonde ticket show {ticket.id}` has its timeline."
    )
    for person in people:
        connection.execute(
            outbox.insert(),
            {
                "kind": kind,
                "ticket_id": ticket.id,
                "recipient": person.address,
                "recipient_name": person.name,
                "title": ticket.title[:200],
                "body": text,
                "created_at": now,
                "next_attempt_at": now,
            },
        )
