"""Tickets.page: list()'s order a page at a time, and how many match after the page."""

from __future__ import annotations

import pytest

from sonde.server.domain.roles import Role
from sonde.server.domain.ticket_model import TicketOutcome, TicketPriority, TicketStatus
from sonde.server.domain.tickets import Tickets
from sonde.server.errors import InvalidArgument
from sonde.server.storage.db import Database
from tests.unit.domain.builders import Clock, technician


async def test_pages_walk_the_list_and_count_what_follows(db: Database) -> None:
    tickets = Tickets(db, Clock())
    ann = await technician(db, "ann", Role.L1)
    priorities = [TicketPriority.P3, TicketPriority.P1, TicketPriority.P4, TicketPriority.P2]
    for n in range(9):
        await tickets.open(ann, title=f"printer {n}", priority=priorities[n % 4])
    closed = await tickets.open(ann, title="spam")
    await tickets.close(ann, closed.id, "spam", outcome=TicketOutcome.DUPLICATE)
    everything = [t.id for t in await tickets.list(limit=1000)]
    assert len(everything) == 9

    walked: list[int] = []
    mores: list[int] = []
    while True:
        page = await tickets.page(limit=4, offset=len(walked))
        walked += [t.id for t in page.tickets]
        mores.append(page.more)
        if not page.more:
            break
    assert walked == everything
    assert mores == [5, 1, 0]

    news = await tickets.page(statuses=[TicketStatus.NEW], limit=2)
    assert news.more == 7
    with_closed = await tickets.page(include_closed=True, limit=9)
    assert with_closed.more == 1
    past_the_end = await tickets.page(limit=4, offset=50)
    assert (past_the_end.tickets, past_the_end.more) == ([], 0)
    with pytest.raises(InvalidArgument, match="offset must be 0 or more"):
        await tickets.page(offset=-1)
