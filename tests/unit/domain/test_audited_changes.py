"""Every state-changing operation of tickets, users, tokens and agents commits with its audit
row or not at all: a crash injected between the change and the row leaves neither."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.server.domain.agents import AgentRegistry
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.enrollment_tokens import EnrollmentTokens
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.ticket_model import TicketOutcome, TicketStatus
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.users import Users
from sonde.server.errors import Conflict, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import (
    agents,
    api_tokens,
    audit_log,
    enrollment_tokens,
    ticket_events,
    tickets,
    users,
)
from tests.unit.domain.builders import (
    SETUP_ADMIN,
    T0,
    Clock,
    enroll,
    enrollment_token,
    new_agent_id,
    signed_as,
    technician,
)

TABLES = (agents, enrollment_tokens, users, api_tokens, tickets, ticket_events, audit_log)

SPENT = timedelta(minutes=15)  # the time a resolve logs


class InjectedCrash(Exception):
    """Stands for the process dying between the change and its audit row."""


@dataclass
class Domain:
    db: Database
    writes: AuditedWrites
    tickets: Tickets
    users: Users
    tokens: EnrollmentTokens
    agents: AgentRegistry


def domain(db: Database) -> Domain:
    clock = Clock()
    writes = AuditedWrites(db, clock)
    return Domain(
        db,
        writes,
        Tickets(db, clock, writes=writes),
        Users(db, clock, writes=writes),
        EnrollmentTokens(db, clock, writes=writes),
        AgentRegistry(db, writes=writes),
    )


Change = Callable[[], Awaitable[object]]


async def _prepare(d: Domain, action: str) -> Change:
    """Set up what `action` needs; return the call that makes the change."""
    ann = await technician(d.db, "ann", Role.L2)
    agent = await enroll(d.agents, d.db, hostname="pc-042")
    ticket = await d.tickets.open(ann, title="Outlook freezes", agent=agent.id)
    resolved = await d.tickets.open(ann, title="Printer")
    await d.tickets.resolve(
        ann, resolved.id, "new toner", outcome=TicketOutcome.FIXED, time_spent=SPENT
    )
    waiting = await d.tickets.open(ann, title="Scanner")
    await d.tickets.wait(ann, waiting.id, "the user sends the model number")
    admin = Principal(user_id=0, name="root", role=Role.ADMIN)
    token = await enrollment_token(d.db)
    request = signed_as(new_agent_id())
    changes: dict[str, Change] = {
        "ticket.open": lambda: d.tickets.open(ann, title="VPN down", agent="pc-042"),
        "ticket.comment": lambda: d.tickets.comment(ann, ticket.id, "asked for a restart"),
        "ticket.assign": lambda: d.tickets.assign(ann, ticket.id),
        "ticket.escalate": lambda: d.tickets.escalate(ann, ticket.id, "mailbox repair"),
        "ticket.set_status": lambda: d.tickets.set_status(
            ann, ticket.id, TicketStatus.WAITING, "on the user"
        ),
        "ticket.resolve": lambda: d.tickets.resolve(
            ann, ticket.id, "rebuilt the profile", outcome=TicketOutcome.FIXED, time_spent=SPENT
        ),
        "ticket.close": lambda: d.tickets.close(
            ann, ticket.id, "duplicate", outcome=TicketOutcome.DUPLICATE
        ),
        "ticket.reopen": lambda: d.tickets.reopen(ann, resolved.id, "it froze again"),
        "ticket.wait": lambda: d.tickets.wait(ann, ticket.id, "the user is away"),
        "ticket.resume": lambda: d.tickets.resume(ann, waiting.id, "model number came"),
        "user.create": lambda: d.users.add(admin, "carol", Role.L1),
        "enrollment_token.create": lambda: d.tokens.create(admin, uses=2, ttl=timedelta(hours=1)),
        "agent.enroll": lambda: d.agents.enroll(
            token.token_id,
            token.secret,
            hostname="pc-043",
            platform="linux",
            request=request,
            at=T0,
        ),
        "agent.revoke": lambda: d.agents.revoke(admin, "pc-042", "stolen", T0),
    }
    return changes[action]


async def _everything(db: Database) -> dict[str, list[dict[str, object]]]:
    def unit(connection: Connection) -> dict[str, list[dict[str, object]]]:
        return {
            table.name: [dict(row._mapping) for row in connection.execute(select(table)).all()]
            for table in TABLES
        }

    return await db.read(unit)


ACTIONS = [
    "ticket.open",
    "ticket.comment",
    "ticket.assign",
    "ticket.escalate",
    "ticket.set_status",
    "ticket.resolve",
    "ticket.close",
    "ticket.reopen",
    "ticket.wait",
    "ticket.resume",
    "user.create",
    "enrollment_token.create",
    "agent.enroll",
    "agent.revoke",
]


@pytest.mark.parametrize("action", ACTIONS)
async def test_a_crash_before_the_audit_row_leaves_neither(db: Database, action: str) -> None:
    d = domain(db)
    change = await _prepare(d, action)
    before = await _everything(db)

    def crash(happening: str) -> None:
        if happening == action:
            raise InjectedCrash(happening)

    d.writes.fault_before_audit = crash
    with pytest.raises(InjectedCrash):
        await change()
    assert await _everything(db) == before

    # The same change without the crash writes, and its audit row says so.
    d.writes.fault_before_audit = None
    await change()
    after = await _everything(db)
    assert after != before
    newest = after["audit_log"][-1]
    assert (newest[audit_log.c.action.name], newest[audit_log.c.result.name]) == (action, "ok")


async def test_a_crash_before_the_first_admins_audit_row_leaves_no_admin(db: Database) -> None:
    d = domain(db)

    def crash(happening: str) -> None:
        raise InjectedCrash(happening)

    d.writes.fault_before_audit = crash
    with pytest.raises(InjectedCrash):
        await d.users.add_first_admin(SETUP_ADMIN, hosts=["sonde.lan"])
    assert await _everything(db) == {table.name: [] for table in TABLES}


async def test_one_comment_is_one_transaction_and_at_most_one_thread_hop(db: Database) -> None:
    d = domain(db)
    ann = await technician(db, "ann")
    ticket = await d.tickets.open(ann, title="Outlook freezes")
    before = db.counters.copy()
    commented, event = await d.tickets.comment(ann, ticket.id, "asked for a restart")
    spent = db.counters - before
    assert spent.transactions == 1
    assert spent.thread_hops == (1 if db.dialect == "sqlite" else 0)
    # SQLite: touch the ticket and read it back in one UPDATE ... RETURNING, insert the event,
    # advance the audit chain's head, insert the audit row. PostgreSQL: all of it in one
    # statement sent alone (no BEGIN or COMMIT round trips either).
    assert spent.statements == (4 if db.dialect == "sqlite" else 1)
    stored, timeline = await d.tickets.get(ticket.id)
    assert commented == stored
    assert timeline[-1] == event
    assert stored.first_response_at == event.at


async def test_a_comment_on_a_closed_or_missing_ticket_is_refused_and_audited(
    db: Database,
) -> None:
    d = domain(db)
    ann = await technician(db, "ann", Role.L2)
    ticket = await d.tickets.open(ann, title="Printer")
    await d.tickets.close(ann, ticket.id, "duplicate", outcome=TicketOutcome.DUPLICATE)
    with pytest.raises(Conflict, match=f"ticket {ticket.id} is closed: reopen it first"):
        await d.tickets.comment(ann, ticket.id, "hello")
    with pytest.raises(NotFound, match="no ticket 999"):
        await d.tickets.comment(ann, 999, "hello")
    rows = await db.read(
        lambda c: c.execute(
            select(audit_log.c.ticket_id, audit_log.c.result).where(
                audit_log.c.action == "ticket.comment"
            )
        ).all()
    )
    assert [(ticket_id, result.split(":")[1].strip()) for ticket_id, result in rows] == [
        (ticket.id, "Conflict"),
        (999, "NotFound"),
    ]
