"""HelpRequest as a hostile or broken agent sends it, against a real server on 127.0.0.1 (SQLite
and PostgreSQL): the ticket is the certificate's agent's whatever the message claims, its text
is made inert and bounded, and the hourly limit holds and is audited as a refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from sqlalchemy import select

from sonde.server.storage.tables import audit_log
from sonde.v1 import agent_pb2, console_pb2
from tests.support.live_server import HandDrivenAgent, LiveServer, live_server


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url) as running:
        yield running


async def ask_on_a_stream(
    agent: HandDrivenAgent, *requests: agent_pb2.HelpRequest
) -> list[agent_pb2.HelpReply]:
    """Send each request on one raw session; the HelpReply of each, in order."""
    replies: list[agent_pb2.HelpReply] = []
    async with agent.session() as call:
        for request in requests:
            await call.write(agent_pb2.AgentMessage(help_request=request))
            message = await asyncio.wait_for(call.read(), 20)
            assert message is not grpc.aio.EOF
            assert isinstance(message, agent_pb2.ServerMessage)
            assert message.WhichOneof("kind") == "help_reply", message
            replies.append(message.help_reply)
    return replies


async def shown(live: LiveServer, ticket_id: int) -> console_pb2.GetTicketResponse:
    async with live.console_channel(live.admin_token) as channel:
        return await live.console(channel).GetTicket(
            console_pb2.GetTicketRequest(id=ticket_id), timeout=10
        )


async def test_the_ticket_is_the_certificates_agents_and_its_text_is_inert(
    live: LiveServer,
) -> None:
    liar = await live.enroll("pc-liar")
    victim = await live.enroll("pc-victim")
    claimed = agent_pb2.HelpRequest(
        request_id="r1",
        description="printer\x1b[31m broken\x00\n" + "y" * 9000,
        local_user="alice\n\x1b[2Jadmin",
    )
    claimed.snapshot.agent_id = victim.agent_id  # claims to be the victim's snapshot
    claimed.snapshot.system.hostname = "pc-victim"
    claimed.snapshot.collected_at.GetCurrentTime()
    no_words = agent_pb2.HelpRequest(request_id="r2", description=" \x00\x07 ")
    bare = agent_pb2.HelpRequest(request_id="r3", description="no snapshot", local_user="bob")
    replies = await ask_on_a_stream(liar, claimed, no_words, bare)

    assert [r.request_id for r in replies] == ["r1", "r2", "r3"]
    first = await shown(live, replies[0].ticket_id)
    ticket = first.ticket
    assert ticket.agent_id == liar.agent_id
    assert ticket.channel == console_pb2.TICKET_CHANNEL_WORKSTATION
    assert ticket.requester == "alice[2Jadmin"
    assert ticket.title == "printer[31m broken"
    assert len(ticket.description) < 4000 + 300
    assert "\x1b" not in ticket.description
    assert "\x00" not in ticket.description
    diagnostic = first.timeline[1]
    assert diagnostic.kind == console_pb2.TICKET_EVENT_KIND_DIAGNOSTIC
    assert diagnostic.snapshot.agent_id == liar.agent_id
    async with live.console_channel(live.admin_token) as channel:
        stored = await live.console(channel).GetSnapshot(
            console_pb2.GetSnapshotRequest(id=diagnostic.snapshot_id), timeout=10
        )
    assert stored.snapshot.snapshot.agent_id == liar.agent_id

    assert (replies[1].ticket_id, replies[1].refusal) == (
        0,
        "a request for help needs a description of the problem",
    )
    third = await shown(live, replies[2].ticket_id)
    assert third.ticket.requester == "bob"
    assert [e.kind for e in third.timeline] == [console_pb2.TICKET_EVENT_KIND_OPENED]


async def test_five_an_hour_then_a_refusal_that_is_audited(live: LiveServer) -> None:
    agent = await live.enroll("pc-busy")
    requests = [
        agent_pb2.HelpRequest(request_id=f"r{n}", description=f"problem {n}", local_user="carol")
        for n in range(6)
    ]
    replies = await ask_on_a_stream(agent, *requests)
    assert all(r.ticket_id for r in replies[:5])
    assert replies[5].ticket_id == 0
    assert replies[5].refusal.startswith(
        "this computer already asked for help 5 times in the last hour (at most 5)"
    )
    rows = await live.db.read(
        lambda c: (
            c.execute(
                select(audit_log.c.result)
                .where(audit_log.c.actor == f"agent:{agent.agent_id}")
                .where(audit_log.c.action == "ticket.open")
                .order_by(audit_log.c.id)
            )
            .scalars()
            .all()
        )
    )
    assert rows[:5] == ["ok"] * 5
    assert len(rows) == 6
    assert rows[5].startswith("refused: ResourceExhausted: this computer already asked for help")
    # Another machine's limit is its own.
    other = await live.enroll("pc-calm")
    (reply,) = await ask_on_a_stream(other, requests[0])
    assert reply.ticket_id
