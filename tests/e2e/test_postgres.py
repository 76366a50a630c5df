"""The main job on PostgreSQL: the same server, agents and tickets, with --db postgresql://."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from sonde.v1 import console_pb2
from tests.integration.storage.databases import create_database, drop_database
from tests.support.deployment import Deployment, deployment

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_sonde(tmp_path: Path) -> Iterator[Deployment]:
    name = f"sonde_e2e_{secrets.token_hex(4)}"
    url = asyncio.run(create_database(name))
    try:
        with deployment(tmp_path, db_url=url.replace("+asyncpg", "")) as running:
            yield running
    finally:
        asyncio.run(drop_database(name))


def test_diagnostic_on_a_ticket_is_stored_in_postgresql(
    postgres_sonde: Deployment, tmp_path: Path
) -> None:
    assert postgres_sonde.db_url is not None
    state = tmp_path / "agent"
    agent_id = postgres_sonde.enroll_agent(state)
    postgres_sonde.start_agent(state)
    postgres_sonde.wait_online(agent_id)
    with postgres_sonde.console() as console:
        ticket = console.OpenTicket(
            console_pb2.OpenTicketRequest(title="No network since the move", agent=agent_id),
            timeout=10,
        ).ticket
        stored = console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=agent_id, ticket_id=ticket.id), timeout=60
        ).snapshot
        timeline = console.GetTicket(console_pb2.GetTicketRequest(id=ticket.id), timeout=10)
    assert stored.summary.ticket_id == ticket.id
    assert any(e.snapshot_id == stored.summary.id for e in timeline.timeline)

    async def rows() -> tuple[int, int]:
        connection = await asyncpg.connect(postgres_sonde.db_url)
        try:
            snapshots = await connection.fetchval("SELECT count(*) FROM snapshots")
            audit = await connection.fetchval("SELECT count(*) FROM audit_log")
        finally:
            await connection.close()
        return int(snapshots), int(audit)

    snapshots, audit = asyncio.run(rows())
    assert snapshots == 1
    assert audit >= 3  # init, enrollment, diagnostic
