"""A user-session script's results through the real server (SQLite and PostgreSQL) and a
stand-in agent stream: the session it ran in is on the ticket's "run ended" line (a hostile
user name made inert), and an agent's `user-session` refusal ends the run refused with the
agent's sentence, shown with the run on the ticket's timeline like any refused run."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from rich.console import Console

from sonde.catalog.bundle import CatalogSource
from sonde.server.console.runs import run_detail
from sonde.v1 import agent_pb2, agent_pb2_grpc, console_pb2
from tests.integration.server.test_agent_stream_refusals import Session
from tests.support.catalog_bundles import manifest_text, script_text, signed_bundle
from tests.support.live_server import LiveServer, hello, live_server

NOBODY = "nobody is logged on to PC-042; clear-app-cache needs the user's session"


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url) as running:
        yield running


async def _publish(live: LiveServer) -> None:
    key = serialization.load_pem_private_key(
        live.server.options.data.pki.catalog_key.read_bytes(), password=None
    )
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    manifest = manifest_text("clear-app-cache", risk="medium", parameters="user_session = true\n")
    bundle = signed_bundle(
        key, CatalogSource(manifest.encode(), script_text("clear-app-cache").encode())
    )
    async with live.console_channel(live.admin_token) as channel:
        await live.console(channel).PublishCatalog(
            console_pb2.PublishCatalogRequest(bundle=bundle), timeout=10
        )


async def _ask(live: LiveServer, agent_id: str, ticket_id: int) -> str:
    async with live.console_channel(live.admin_token) as channel:
        reply = await live.console(channel).RunScript(
            console_pb2.RunScriptRequest(
                agent=agent_id, script_id="clear-app-cache", ticket_id=ticket_id
            ),
            timeout=10,
        )
    return reply.run.command.id


async def _timeline(live: LiveServer, ticket_id: int) -> list[console_pb2.TicketEvent]:
    async with live.console_channel(live.admin_token) as channel:
        got = await live.console(channel).GetTicket(
            console_pb2.GetTicketRequest(id=ticket_id), timeout=10
        )
    return list(got.timeline)


async def _final(live: LiveServer, run_id: str) -> console_pb2.ScriptRunInfo:
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        async with live.console_channel(live.admin_token) as channel:
            run = (
                await live.console(channel).GetRun(console_pb2.GetRunRequest(id=run_id), timeout=10)
            ).run
        if run.command.state not in (
            console_pb2.COMMAND_STATE_QUEUED,
            console_pb2.COMMAND_STATE_DELIVERED,
            console_pb2.COMMAND_STATE_RUNNING,
        ):
            return run
        assert asyncio.get_running_loop().time() < deadline, run
        await asyncio.sleep(0.05)


async def test_the_session_it_ran_in_and_a_refusal_reach_the_tickets_timeline(
    live: LiveServer,
) -> None:
    await _publish(live)
    agent = await live.enroll("pc-042")
    async with live.console_channel(live.admin_token) as channel:
        ticket = (
            await live.console(channel).OpenTicket(
                console_pb2.OpenTicketRequest(title="Teams shows nothing", agent=agent.agent_id),
                timeout=10,
            )
        ).ticket
    async with agent.channel() as channel:
        stream = Session(agent_pb2_grpc.AgentServiceStub(channel).Session())
        await stream.send(hello("pc-042"))
        await stream.receive("welcome")

        ran_id = await _ask(live, agent.agent_id, ticket.id)
        assert (await stream.receive("run_script")).run_script
        ran = agent_pb2.ScriptRun(
            script_id="clear-app-cache", script_version="1.0.0", exit_code=0, duration_ms=900
        )
        ran.session.CopyFrom(
            agent_pb2.RunSession(
                session_id=1,
                user="CONTOSO\\alice\x1b[2J\n",
                connection="console",
                screen_locked=True,
            )
        )
        result = agent_pb2.Result(command_id=ran_id, script_run=ran)
        await stream.send(agent_pb2.AgentMessage(result=result))
        assert (await stream.receive("ack")).ack.command_id == ran_id

        refused_id = await _ask(live, agent.agent_id, ticket.id)
        assert (await stream.receive("run_script")).run_script
        failure = agent_pb2.Failure(
            kind=agent_pb2.FAILURE_KIND_REFUSED, refusal="user-session", reason=NOBODY
        )
        await stream.send(
            agent_pb2.AgentMessage(result=agent_pb2.Result(command_id=refused_id, failure=failure))
        )
        assert (await stream.receive("ack")).ack.command_id == refused_id
        await stream.call.done_writing()

    ran_run = await _final(live, ran_id)
    assert ran_run.command.state == console_pb2.COMMAND_STATE_SUCCEEDED
    assert ran_run.user_session == "ran in CONTOSO\\alice[2J's console session 1 (screen locked)"
    refused = await _final(live, refused_id)
    assert refused.command.state == console_pb2.COMMAND_STATE_REFUSED
    assert refused.command.reason == f"the agent refused the order (user-session): {NOBODY}"
    assert refused.user_session == ""

    timeline = await _timeline(live, ticket.id)
    ended = [e for e in timeline if e.kind == console_pb2.TICKET_EVENT_KIND_RUN_ENDED]
    (line,) = [e.body for e in ended if e.command_id == ran_id]
    assert line.endswith("; ran in CONTOSO\\alice[2J's console session 1 (screen locked)")
    assert "\x1b" not in line
    asked = [e for e in timeline if e.command_id == refused_id]
    assert asked, timeline
    assert all(e.run.command.state == console_pb2.COMMAND_STATE_REFUSED for e in asked)
    assert all(NOBODY in e.run.command.reason for e in asked)


def test_runs_show_says_where_a_user_session_run_ran_and_only_then() -> None:
    def shown(run: console_pb2.ScriptRunInfo) -> str:
        console = Console(width=100, record=True, color_system=None)
        console.print(run_detail(run))
        return console.export_text()

    run = console_pb2.ScriptRunInfo(script_id="clear-teams-cache", ended=True)
    run.command.id = "c" * 32
    assert "session" not in shown(run)
    run.user_session = "ran in CONTOSO\\alice's console session 1 (screen locked)"
    assert re.search(
        r"\nsession +ran in CONTOSO\\alice's console session 1 \(screen locked\)", shown(run)
    )
