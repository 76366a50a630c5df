"""Reading the audit log by who, what, which machine, which ticket and since when, a page at a
time, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sonde.server.domain.agents import AgentRegistry
from sonde.server.domain.audit import AuditLog
from sonde.server.domain.audit_queries import AuditFilter, list_audit
from sonde.server.errors import InvalidArgument
from sonde.server.storage.db import Database
from tests.unit.domain.builders import T0, Clock, enroll


async def test_filters_match_together_newest_first_with_pages(db: Database) -> None:
    clock = Clock()
    log = AuditLog(db, clock)
    agent = await enroll(AgentRegistry(db), db, hostname="pc-042")
    await log.record("ann", "ticket.comment", ticket_id=7)
    clock.advance(hours=1)
    await log.record("ann", "diagnostics.run", agent_id=agent.id, ticket_id=7)
    clock.advance(hours=1)
    await log.record("bob", "ticket.assign", ticket_id=7, detail={"assignee": "bob"})
    await log.record("bob", "user.disable", detail={"name": "carol"}, result="refused: Conflict")

    async def ids(**wanted: object) -> list[tuple[str, str]]:
        rows, _ = await list_audit(db, AuditFilter(**wanted))  # type: ignore[arg-type]
        return [(row.actor, row.action) for row in rows if row.action != "agent.enroll"]

    assert await ids(actor="ann") == [("ann", "diagnostics.run"), ("ann", "ticket.comment")]
    assert await ids(action="ticket.*") == [("bob", "ticket.assign"), ("ann", "ticket.comment")]
    assert await ids(action="ticket") == []  # exact unless it ends in '*'
    assert await ids(agent="pc-042") == [("ann", "diagnostics.run")]  # by the machine's name
    assert await ids(agent=agent.id[:6]) == [("ann", "diagnostics.run")]  # or its id
    assert await ids(ticket_id=7, actor="bob") == [("bob", "ticket.assign")]
    assert await ids(since=T0 + timedelta(minutes=90)) == [
        ("bob", "user.disable"),
        ("bob", "ticket.assign"),
    ]
    first, more = await list_audit(db, AuditFilter(limit=2))
    assert more
    older, more = await list_audit(db, AuditFilter(limit=2, before_id=first[-1].id))
    assert [row.id for row in first + older] == sorted((r.id for r in first + older), reverse=True)
    assert len({row.id for row in first + older}) == 4
    everything, more = await list_audit(db, AuditFilter(limit=1000))
    assert not more
    assert len(everything) == 6  # four rows, the enrollment token and the agent enrolled
    # Each row about a machine names it as it reports itself now; the others name none.
    names = {(row.action, row.agent_hostname) for row in everything if row.agent_id}
    assert names == {("diagnostics.run", "pc-042"), ("agent.enroll", "pc-042")}
    assert {row.agent_hostname for row in everything if not row.agent_id} == {""}


async def test_a_machine_gone_from_the_fleet_is_found_by_its_id_prefix(db: Database) -> None:
    log = AuditLog(db, Clock())
    await log.record("admin", "agent.revoke", agent_id="7ry2abcdefghijklmnopqrstuv")
    rows, _ = await list_audit(db, AuditFilter(agent="7RY2"))
    assert [row.agent_id for row in rows] == ["7ry2abcdefghijklmnopqrstuv"]
    assert [row.agent_hostname for row in rows] == [""]  # no such agent row to name it
    # Wildcards in the reference are literal, not LIKE patterns.
    assert (await list_audit(db, AuditFilter(agent="%")))[0] == []


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        (AuditFilter(limit=0), "limit must be from 1 to 1000"),
        (AuditFilter(limit=1001), "limit must be from 1 to 1000"),
        (AuditFilter(actor="x" * 65), "--who: at most 64 printable characters"),
        (AuditFilter(action="ticket\n*"), "--action: at most 64 printable characters"),
    ],
)
async def test_bad_filters_are_refused_saying_which(
    db: Database, wanted: AuditFilter, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await list_audit(db, wanted)
