"""SelfServiceRequest as a hostile agent sends it, against a real server on 127.0.0.1 (SQLite and
PostgreSQL): another machine's ticket is refused and left untouched, the run and its ticket are
the certificate's agent's, and the actor is the user's, made inert."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select

from sonde.catalog.envelope import DOMAIN
from sonde.server.storage.tables import commands
from sonde.v1 import agent_pb2, console_pb2, remediation_pb2
from tests.support.catalog_bundles import signed_bundle, source
from tests.support.live_server import HandDrivenAgent, LiveServer, live_server


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url) as running:
        yield running


async def publish(live: LiveServer) -> None:
    key = serialization.load_pem_private_key(
        live.server.options.data.pki.catalog_key.read_bytes(), password=None
    )
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    bundle = signed_bundle(
        key,
        source("clear-cache", title="Clear the cache", parameters="self_service = true\n"),
        source("say-bye", title="Say goodbye"),
    )
    async with live.console_channel(live.admin_token) as channel:
        await live.console(channel).PublishCatalog(
            console_pb2.PublishCatalogRequest(bundle=bundle), timeout=10
        )


async def on_a_stream(
    agent: HandDrivenAgent, *requests: agent_pb2.SelfServiceRequest, orders_due: int = 0
) -> tuple[list[agent_pb2.SelfServiceReply], list[remediation_pb2.SignedRunScript]]:
    """Send each request on one raw session: the reply of each, and the orders that came
    (waiting for `orders_due` of them)."""
    replies: list[agent_pb2.SelfServiceReply] = []
    orders: list[remediation_pb2.SignedRunScript] = []
    async with agent.session() as call:
        for request in requests:
            await call.write(agent_pb2.AgentMessage(self_service=request))
            while True:
                message = await asyncio.wait_for(call.read(), 20)
                assert isinstance(message, agent_pb2.ServerMessage), message
                kind = message.WhichOneof("kind")
                if kind == "run_script":
                    orders.append(message.run_script)
                    continue
                assert kind == "self_service_reply", message
                replies.append(message.self_service_reply)
                break
        while len(orders) < orders_due:
            message = await asyncio.wait_for(call.read(), 20)
            assert isinstance(message, agent_pb2.ServerMessage), message
            if message.WhichOneof("kind") == "run_script":
                orders.append(message.run_script)
    return replies, orders


async def run_count(live: LiveServer) -> int:
    counted = await live.db.read(
        lambda c: c.execute(select(func.count()).select_from(commands)).scalar_one()
    )
    return int(counted)


async def test_another_machines_ticket_is_refused_and_the_run_is_the_certificates_agents(
    live: LiveServer,
) -> None:
    await publish(live)
    liar = await live.enroll("pc-liar")
    victim = await live.enroll("pc-victim")
    async with live.console_channel(live.admin_token) as channel:
        theirs = (
            await live.console(channel).OpenTicket(
                console_pb2.OpenTicketRequest(title="victim's", agent=victim.agent_id), timeout=10
            )
        ).ticket

    replies, orders = await on_a_stream(
        liar,
        agent_pb2.SelfServiceRequest(request_id="r1"),
        agent_pb2.SelfServiceRequest(
            request_id="r2", script_id="clear-cache", ticket_id=theirs.id, local_user="mallory"
        ),
        agent_pb2.SelfServiceRequest(request_id="r3", script_id="say-bye", local_user="mallory"),
        agent_pb2.SelfServiceRequest(
            request_id="r4", script_id="clear-cache", local_user="eve\n\x1b[2J:root"
        ),
        orders_due=1,
    )
    listed, stolen, not_self_service, ran = replies
    assert [s.id for s in listed.scripts] == ["clear-cache"]
    assert stolen.refusal == f"ticket #{theirs.id} is not about this computer"
    assert not stolen.command_id
    assert not_self_service.refusal.startswith("say-bye is not a self-service script")
    assert ran.refusal == ""
    assert ran.command_id
    assert await run_count(live) == 1

    async with live.console_channel(live.admin_token) as channel:
        console = live.console(channel)
        victims = await console.GetTicket(console_pb2.GetTicketRequest(id=theirs.id), timeout=10)
        mine = await console.GetTicket(console_pb2.GetTicketRequest(id=ran.ticket_id), timeout=10)
    assert [e.kind for e in victims.timeline] == [console_pb2.TICKET_EVENT_KIND_OPENED]
    assert mine.ticket.agent_id == liar.agent_id
    assert mine.ticket.channel == console_pb2.TICKET_CHANNEL_WORKSTATION
    assert mine.ticket.requester == "eve[2J:root"
    run_events = [e for e in mine.timeline if e.kind == console_pb2.TICKET_EVENT_KIND_SCRIPT_RUN]
    actor = f"user:eve_2J_root@{liar.agent_id[:8]}"
    assert [e.actor for e in run_events] == [actor]

    # The order sent is an ordinary signed one, for the liar's machine only.
    (order,) = orders
    dispatch = serialization.load_pem_public_key(
        live.server.options.data.pki.dispatch_public_key.read_bytes()
    )
    assert isinstance(dispatch, ed25519.Ed25519PublicKey)
    dispatch.verify(order.signature, DOMAIN + order.order)  # raises when it is not
    checked = remediation_pb2.RunScriptOrder.FromString(order.order)
    assert checked.agent_id == liar.agent_id
    assert checked.command_id == ran.command_id
    assert checked.requested_by == actor
    assert checked.ticket_id == ran.ticket_id


async def test_a_ticket_id_past_every_databases_ids_is_refused_and_the_stream_goes_on(
    live: LiveServer,
) -> None:
    await publish(live)
    agent = await live.enroll("pc-odd")
    replies, _ = await on_a_stream(
        agent,
        agent_pb2.SelfServiceRequest(
            request_id="r1", script_id="clear-cache", ticket_id=2**64 - 1, local_user="al"
        ),
        agent_pb2.SelfServiceRequest(request_id="r2"),
    )
    beyond, listed = replies
    assert beyond.refusal == f"no ticket #{2**64 - 1}"
    assert [s.id for s in listed.scripts] == ["clear-cache"]
    assert await run_count(live) == 0
