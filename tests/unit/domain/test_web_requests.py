"""The web form's requests and the satisfaction question, on SQLite and PostgreSQL: every field
checked with its own reason, one ticket per submitted form however it is resent, the machine
linked only by its exact name, and a rating given once while its link lives."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.agents import AgentRegistry
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.roles import Role
from sonde.server.domain.satisfaction import RATING_LIFETIME, Satisfaction, ask_in
from sonde.server.domain.ticket_model import TicketChannel, TicketEventKind
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.web_requests import (
    FormRefused,
    WebRequests,
    checked_form,
    new_submission_id,
)
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import satisfaction, tickets
from tests.unit.domain.builders import SETUP_ADMIN, Clock, enrolled_agent, technician

FORM = {
    "name": "Marie Dupont",
    "contact": "marie@example.org",
    "machine": "",
    "description": "Outlook freezes when I open the calendar",
}


class Desk:
    def __init__(self, db: Database) -> None:
        self.clock = Clock()
        writes = AuditedWrites(db, self.clock)
        self.db = db
        self.tickets = Tickets(db, self.clock, writes=writes)
        self.requests = WebRequests(db, self.tickets, writes, self.clock)
        self.satisfaction = Satisfaction(db, writes, self.clock)


@pytest.fixture
def desk(db: Database) -> Desk:
    return Desk(db)


def test_every_field_is_checked_and_each_refusal_names_its_field() -> None:
    with pytest.raises(FormRefused) as refused:
        checked_form(
            {
                "name": "Eve <eve@evil.example>",
                "contact": "call me maybe",
                "machine": "PC\u202e-1",  # a right-to-left override
                "description": "x",
            }
        )
    assert set(refused.value.problems) == {"name", "contact", "machine", "description"}
    assert refused.value.values["contact"] == "call me maybe"  # given back as typed
    assert "U+202E" in refused.value.problems["machine"]
    with pytest.raises(FormRefused) as injected:
        checked_form({**FORM, "contact": "marie@example.org\r\nBcc: all@corp.example"})
    assert set(injected.value.problems) == {"contact"}
    with pytest.raises(FormRefused) as carriage:
        checked_form({**FORM, "name": "Eve\rBcc: all@corp.example"})
    assert carriage.value.problems == {"name": "one line only"}
    phone = checked_form({**FORM, "contact": "+33 6 12 34 56 78"})
    assert phone.requester == "Marie Dupont (+33 6 12 34 56 78)"


async def test_a_form_sent_twice_at_once_opens_one_ticket(desk: Desk) -> None:
    form = checked_form(FORM)
    submission = new_submission_id()
    first, second = await asyncio.gather(
        desk.requests.submit(form, submission, "192.0.2.7"),
        desk.requests.submit(form, submission, "192.0.2.7"),
    )
    assert first.ticket_id == second.ticket_id
    assert sorted([first.again, second.again]) == [False, True]
    rows = await desk.db.read(lambda c: c.execute(select(tickets)).all())
    assert len(rows) == 1
    assert rows[0].channel == TicketChannel.WEB_FORM.value
    assert rows[0].created_by == "web-form"


async def test_the_machine_is_linked_by_its_exact_name_only(desk: Desk) -> None:
    agent = await enrolled_agent(desk.db, "PC-ACCOUNTS-01")
    exact = checked_form({**FORM, "machine": "pc-accounts-01"})
    linked = await desk.requests.submit(exact, new_submission_id(), "")
    removed = await enrolled_agent(desk.db, "PC-GONE")
    await AgentRegistry(desk.db).remove(SETUP_ADMIN, removed.id, "retired", desk.clock())
    gone = await desk.requests.submit(
        checked_form({**FORM, "machine": "pc-gone"}), new_submission_id(), ""
    )
    assert (await desk.tickets.get(gone.ticket_id))[0].agent_id is None
    prefix = checked_form({**FORM, "machine": "PC-ACC"})
    unlinked = await desk.requests.submit(prefix, new_submission_id(), "")
    one, _ = await desk.tickets.get(linked.ticket_id)
    other, _ = await desk.tickets.get(unlinked.ticket_id)
    assert one.agent_id == agent.id
    assert other.agent_id is None
    assert "Machine as typed (no agent has that name): PC-ACC" in other.description


async def test_a_rating_is_given_once_while_its_link_lives(desk: Desk) -> None:
    ann = await technician(desk.db, "ann", Role.L1)
    ticket = await desk.tickets.open(ann, title="VPN", requester="Marie <marie@example.org>")
    nameless = await desk.tickets.open(ann, title="VPN", requester="Marie at reception")

    link = await desk.db.write(lambda c: ask_in(c, ticket, desk.clock(), "https://desk.example"))
    assert link.startswith("https://desk.example/rate/")
    assert await desk.db.write(lambda c: ask_in(c, nameless, desk.clock(), "https://d")) == ""
    assert await desk.db.write(lambda c: ask_in(c, ticket, desk.clock(), "")) == ""
    token = link.rsplit("/", 1)[1]
    stored = await desk.db.read(lambda c: c.execute(select(satisfaction.c.token_sha256)).scalar())
    assert token not in str(stored)  # only its hash is kept

    with pytest.raises(InvalidArgument, match="U\\+0007"):
        await desk.satisfaction.answer(token, 5, "great\a", "")
    with pytest.raises(NotFound):
        await desk.satisfaction.answer(token[:-1] + "x", 5, "", "")
    rated = await desk.satisfaction.answer(token, 5, "fast", "")
    assert rated.rating == 5
    with pytest.raises(Conflict, match="rated already"):
        await desk.satisfaction.answer(token, 1, "changed my mind", "")
    _, timeline = await desk.tickets.get(ticket.id)
    assert [e.body for e in timeline if e.kind is TicketEventKind.RATED] == [
        "Rated 5/5 by the requester: fast"
    ]

    late = await desk.db.write(lambda c: ask_in(c, ticket, desk.clock(), "https://d"))
    desk.clock.now += RATING_LIFETIME + timedelta(seconds=1)
    assert (await desk.satisfaction.asked(late.rsplit("/", 1)[1])).expired
    with pytest.raises(Conflict, match="expired"):
        await desk.satisfaction.answer(late.rsplit("/", 1)[1], 3, "", "")
