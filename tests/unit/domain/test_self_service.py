"""Self-service runs and their ticket in one transaction, on SQLite and PostgreSQL: a run that
fails once its ticket was chosen leaves no ticket behind, and fixes asked at once share the one
ticket they open, within the hourly limit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select

from sonde.server.domain.agents import AgentRecord
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.catalog import Catalog
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.domain.self_service import RUNS_PER_HOUR, SelfService
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.wakeups import Wakeups
from sonde.server.errors import ResourceExhausted
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, commands, tickets
from tests.support.catalog_bundles import signed_bundle, source
from tests.unit.domain.builders import SETUP_ADMIN, Clock, enrolled_agent


class Crash(Exception):
    """The server dying between the run's writes and its audit row."""


@dataclass
class Desk:
    db: Database
    audited: AuditedWrites
    self_service: SelfService
    agent: AgentRecord


@pytest.fixture
async def desk(db: Database) -> Desk:
    clock = Clock()
    audited = AuditedWrites(db, clock)
    catalog_key = ed25519.Ed25519PrivateKey.generate()
    catalog = Catalog(db, catalog_key.public_key(), clock, writes=audited)
    await catalog.publish(
        SETUP_ADMIN,
        signed_bundle(
            catalog_key,
            source("clear-cache", title="Clear the cache", parameters="self_service = true\n"),
        ),
    )
    dispatch_key = ed25519.Ed25519PrivateKey.generate()
    runs = ScriptRuns(db, audited, Wakeups(), clock, dispatch_key=dispatch_key)
    tickets_ = Tickets(db, clock, writes=audited)
    return Desk(
        db, audited, SelfService(db, runs, tickets_, audited, clock), await enrolled_agent(db)
    )


async def count(db: Database, table: str) -> int:
    chosen = {"tickets": tickets, "commands": commands}[table]
    counted = await db.read(
        lambda c: c.execute(select(func.count()).select_from(chosen)).scalar_one()
    )
    return int(counted)


async def test_a_run_that_fails_after_its_ticket_was_chosen_leaves_no_ticket(desk: Desk) -> None:
    def crash(action: str) -> None:
        if action == "script.run":
            raise Crash(action)

    desk.audited.fault_before_audit = crash
    with pytest.raises(Crash):
        await desk.self_service.fix(desk.agent.id, "clear-cache", "alice", None)
    assert (await count(desk.db, "tickets"), await count(desk.db, "commands")) == (0, 0)

    desk.audited.fault_before_audit = None
    run = await desk.self_service.fix(desk.agent.id, "clear-cache", "alice", None)
    assert (await count(desk.db, "tickets"), await count(desk.db, "commands")) == (1, 1)
    rows = await desk.db.read(
        lambda c: c.execute(
            select(audit_log.c.action, audit_log.c.ticket_id)
            .where(audit_log.c.action.in_(["ticket.open", "script.run"]))
            .where(audit_log.c.result == "ok")
            .order_by(audit_log.c.id)
        ).all()
    )
    assert [(row.action, row.ticket_id) for row in rows] == [
        ("ticket.open", run.ticket_id),
        ("script.run", run.ticket_id),
    ]


async def test_fixes_asked_at_once_share_the_one_ticket_they_open(desk: Desk) -> None:
    outcomes = await asyncio.gather(
        *(
            desk.self_service.fix(desk.agent.id, "clear-cache", "alice", None)
            for _ in range(RUNS_PER_HOUR + 1)
        ),
        return_exceptions=True,
    )
    ran = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(ran) == RUNS_PER_HOUR
    assert [type(o) for o in outcomes if isinstance(o, BaseException)] == [ResourceExhausted]
    assert len({run.ticket_id for run in ran}) == 1
    assert await count(desk.db, "tickets") == 1
    assert await count(desk.db, "commands") == RUNS_PER_HOUR
