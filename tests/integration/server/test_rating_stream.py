"""RatingRequest as a hostile agent sends it, against a real server on 127.0.0.1 (SQLite and
PostgreSQL): another machine's resolved request is neither listed nor rated, whatever user
name the agent claims; the machine's own agent rates it once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf.message import Message

from sonde.v1 import agent_pb2, console_pb2
from tests.support.live_server import HandDrivenAgent, LiveServer, live_server


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url) as running:
        yield running


async def on_a_stream(agent: HandDrivenAgent, *messages: agent_pb2.AgentMessage) -> list[Message]:
    """Send each message on one raw session: the reply each got (a HelpReply or RatingReply)."""
    replies: list[Message] = []
    async with agent.session() as call:
        for message in messages:
            await call.write(message)
            while True:
                answer = await asyncio.wait_for(call.read(), 20)
                assert isinstance(answer, agent_pb2.ServerMessage), answer
                kind = answer.WhichOneof("kind")
                if kind in {"help_reply", "rating_reply"}:
                    replies.append(getattr(answer, kind))
                    break
    return replies


def rating(
    request_id: str, user: str, ticket_id: int = 0, stars: int = 0
) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        rating=agent_pb2.RatingRequest(
            request_id=request_id, local_user=user, ticket_id=ticket_id, rating=stars
        )
    )


async def test_another_machines_request_is_neither_listed_nor_rated(live: LiveServer) -> None:
    liar = await live.enroll("pc-liar")
    victim = await live.enroll("pc-victim")
    help_request = agent_pb2.HelpRequest(
        request_id="h1", description="the printer jams", local_user="alice"
    )
    [opened] = await on_a_stream(victim, agent_pb2.AgentMessage(help_request=help_request))
    assert isinstance(opened, agent_pb2.HelpReply)
    ticket_id = opened.ticket_id
    assert ticket_id
    async with live.console_channel(live.admin_token) as channel:
        await live.console(channel).ResolveTicket(
            console_pb2.ResolveTicketRequest(
                id=ticket_id,
                resolution="cleared the queue",
                outcome=console_pb2.TICKET_OUTCOME_FIXED,
                time_spent_s=300,
            ),
            timeout=10,
        )

    listed, stolen, oversized, beyond = await on_a_stream(
        liar,
        rating("r1", "alice"),
        rating("r2", "alice", ticket_id, 1),
        rating("r" * 500, "alice", ticket_id, 99),
        rating("r4", "alice", 2**64 - 1, 5),  # past every database's ids: refused, not a crash
    )
    assert isinstance(listed, agent_pb2.RatingReply)
    assert (listed.request_id, list(listed.asked), listed.refusal) == ("r1", [], "")
    assert isinstance(stolen, agent_pb2.RatingReply)
    assert stolen.refusal.startswith(f"ticket #{ticket_id} is not a request of yours")
    assert not stolen.rated_ticket_id
    assert isinstance(oversized, agent_pb2.RatingReply)
    assert oversized.request_id == "r" * 64
    assert "from 1 (bad) to 5" in oversized.refusal
    assert isinstance(beyond, agent_pb2.RatingReply)
    assert beyond.refusal.startswith(f"ticket #{2**64 - 1} is not a request of yours")

    theirs, rated = await on_a_stream(
        victim, rating("v1", "alice"), rating("v2", "alice", ticket_id, 5)
    )
    assert isinstance(theirs, agent_pb2.RatingReply)
    assert [(a.ticket_id, a.title) for a in theirs.asked] == [(ticket_id, "the printer jams")]
    assert isinstance(rated, agent_pb2.RatingReply)
    assert (rated.refusal, rated.rated_ticket_id) == ("", ticket_id)
    async with live.console_channel(live.admin_token) as channel:
        shown = await live.console(channel).GetTicket(
            console_pb2.GetTicketRequest(id=ticket_id), timeout=10
        )
    rated_events = [e for e in shown.timeline if e.kind == console_pb2.TICKET_EVENT_KIND_RATED]
    assert [e.body for e in rated_events] == [
        "Rated 5/5 by the requester on the workstation (user alice)"
    ]
