"""Past requesters found by the start of any word, their machines counted, revoked ones left
out, and a prefix's LIKE wildcards taken literally. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from sonde.server.domain.agents import AgentRegistry
from sonde.server.domain.requesters import MAX_FOUND, Requesters
from sonde.server.domain.roles import Role
from sonde.server.domain.tickets import Tickets
from sonde.server.errors import InvalidArgument
from sonde.server.storage.db import Database
from tests.unit.domain.builders import SETUP_ADMIN, Clock, enrolled_agent, technician


async def test_the_start_of_any_word_finds_a_requester_and_their_machines(db: Database) -> None:
    clock = Clock()
    desk = Tickets(db, clock)
    ann = await technician(db, "ann", Role.L1)
    laptop = await enrolled_agent(db, "LT-MARIE")
    office = await enrolled_agent(db, "PC-042")
    marie = "Marie Dupont <marie.dupont@example.org>"
    for agent in (office.id, office.id, laptop.id):
        clock.advance(minutes=5)
        await desk.open(ann, title="slow", requester=marie, agent=agent)
    await desk.open(ann, title="badge", requester="Marc Petit (+33 6 00 00 00 00)")
    await desk.open(ann, title="100% CPU", requester="100% sure")
    finder = Requesters(db)

    for prefix in ("mar", "MARIE", "dupont", "marie.d", "example.org"):
        assert marie in [known.requester for known in await finder.find(prefix)], prefix
    (found,) = await finder.find("dupo")
    assert found.tickets == 3
    assert [(m.hostname, m.tickets) for m in found.machines] == [("PC-042", 2), ("LT-MARIE", 1)]
    assert found.usual_machine is not None
    assert found.usual_machine.hostname == "LT-MARIE"  # her latest ticket's
    assert [k.requester for k in await finder.find("+33")] == ["Marc Petit (+33 6 00 00 00 00)"]
    assert await finder.find("%") == []  # a wildcard is a character here
    assert [k.requester for k in await finder.find("100%")] == ["100% sure"]
    assert await finder.find("nobody") == []

    await AgentRegistry(db).revoke(SETUP_ADMIN, laptop.id, "stolen", clock.advance(minutes=1))
    (found,) = await finder.find("dupo")
    assert [m.hostname for m in found.machines] == ["PC-042"]


async def test_a_prefix_is_checked_and_the_answer_bounded(db: Database) -> None:
    desk = Tickets(db, Clock())
    ann = await technician(db, "ann", Role.L1)
    for number in range(MAX_FOUND + 5):
        await desk.open(ann, title="x", requester=f"Caller {number}")
    assert len(await Requesters(db).find("caller")) == MAX_FOUND
    with pytest.raises(InvalidArgument, match="control character"):
        await Requesters(db).find("ma\x1b[2J")
    with pytest.raises(InvalidArgument, match="required"):
        await Requesters(db).find("  ")
