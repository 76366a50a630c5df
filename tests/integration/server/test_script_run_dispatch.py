"""A script run through the real server (SQLite and PostgreSQL) and a stand-in agent stream:
the run is asked over the console, its agent's session gets a SignedRunScript that
sonde.catalog.envelope.verify_order accepts with the server's dispatch public key and the
catalog key, live output is kept for --follow, and a Result.script_run ends the run with its
output stored; a high-risk one reaches the agent only once another person approved it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.envelope import VerifiedOrder, verify_order
from sonde.catalog.manifest import Platform
from sonde.catalog.policy import AgentPolicy
from sonde.server.domain.roles import Role
from sonde.server.domain.users import Users
from sonde.v1 import agent_pb2, agent_pb2_grpc, console_pb2, remediation_pb2
from tests.integration.server.test_agent_stream_refusals import Session
from tests.support.catalog_bundles import signed_bundle, source
from tests.support.deployment import program
from tests.support.live_server import LiveServer, hello, live_server
from tests.unit.domain.builders import SETUP_ADMIN


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url) as running:
        yield running


def _private(path: Path) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key


async def _publish(live: LiveServer) -> ed25519.Ed25519PrivateKey:
    catalog_key = _private(live.server.options.data.pki.catalog_key)
    bundle = signed_bundle(
        catalog_key, source("clear-temp", risk="medium"), source("repair-updates", risk="high")
    )
    async with live.console_channel(live.admin_token) as channel:
        await live.console(channel).PublishCatalog(
            console_pb2.PublishCatalogRequest(bundle=bundle), timeout=10
        )
    return catalog_key


async def _user(live: LiveServer, name: str, role: Role) -> str:
    _, token = await Users(live.db, writes=live.writes).add(SETUP_ADMIN, name, role)
    return token


def _verify(
    live: LiveServer, agent_id: str, signed: remediation_pb2.SignedRunScript
) -> VerifiedOrder:
    return verify_order(
        signed,
        dispatch_key=_private(live.server.options.data.pki.dispatch_key).public_key(),
        catalog_key=_private(live.server.options.data.pki.catalog_key).public_key(),
        agent_id=agent_id,
        platform=Platform.LINUX,
        policy=AgentPolicy(),
        already_ran=lambda _: False,
    )


async def _run(live: LiveServer, token: str, request: console_pb2.RunScriptRequest) -> str:
    async with live.console_channel(token) as channel:
        reply = await live.console(channel).RunScript(request, timeout=10)
    return reply.run.command.id


async def _get(live: LiveServer, run_id: str) -> console_pb2.GetRunResponse:
    async with live.console_channel(live.admin_token) as channel:
        return await live.console(channel).GetRun(console_pb2.GetRunRequest(id=run_id), timeout=10)


async def _until_final(live: LiveServer, run_id: str) -> console_pb2.GetRunResponse:
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        got = await _get(live, run_id)
        if got.run.ended or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.05)


async def test_a_run_is_dispatched_signed_and_its_result_stored(live: LiveServer) -> None:
    await _publish(live)
    agent = await live.enroll("pc-run")
    async with agent.channel() as channel:
        stream = Session(agent_pb2_grpc.AgentServiceStub(channel).Session())
        await stream.send(hello("pc-run"))
        await stream.receive("welcome")
        run_id = await _run(
            live,
            live.admin_token,
            console_pb2.RunScriptRequest(agent=agent.agent_id, script_id="clear-temp"),
        )
        order = (await stream.receive("run_script")).run_script
        verified = _verify(live, agent.agent_id, order)
        assert verified.order.command_id == run_id
        assert verified.order.requested_by == "admin"
        assert verified.script.startswith(b"#!/bin/sh")
        await stream.send(
            agent_pb2.AgentMessage(
                script_output=agent_pb2.ScriptOutput(command_id=run_id, data=b"cleaning\n")
            )
        )
        deadline = asyncio.get_running_loop().time() + 20
        while (await _get(live, run_id)).live_output != b"cleaning\n":
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        result = agent_pb2.Result(
            command_id=run_id,
            script_run=agent_pb2.ScriptRun(
                script_id="clear-temp",
                script_version="1.0.0",
                exit_code=0,
                stdout=b"cleaning\nfreed 3 MiB\n",
                stdout_bytes=21,
                duration_ms=120,
            ),
        )
        await stream.send(agent_pb2.AgentMessage(result=result))
        assert (await stream.receive("ack")).ack.command_id == run_id
        await stream.call.done_writing()
    got = await _until_final(live, run_id)
    assert got.run.command.state == console_pb2.COMMAND_STATE_SUCCEEDED
    assert (got.run.exit_code, got.run.stdout, got.run.duration_ms) == (
        0,
        b"cleaning\nfreed 3 MiB\n",
        120,
    )


async def test_a_high_risk_run_reaches_the_agent_only_once_another_person_approved(
    live: LiveServer,
) -> None:
    await _publish(live)
    bob = await _user(live, "bob", Role.L2)
    agent = await live.enroll("pc-risky")
    async with agent.channel() as channel:
        stream = Session(agent_pb2_grpc.AgentServiceStub(channel).Session())
        await stream.send(hello("pc-risky"))
        await stream.receive("welcome")
        run_id = await _run(
            live,
            bob,
            console_pb2.RunScriptRequest(agent=agent.agent_id, script_id="repair-updates"),
        )
        assert (await _get(live, run_id)).run.command.state == (
            console_pb2.COMMAND_STATE_PENDING_APPROVAL
        )
        async with live.console_channel(bob) as console:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await live.console(console).ApproveRun(
                    console_pb2.ApproveRunRequest(id=run_id), timeout=10
                )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "another person" in (refused.value.details() or "")
        await asyncio.sleep(0.5)  # nothing is sent while it waits
        waiting = (await _get(live, run_id)).run.command
        assert waiting.deliveries == 0
        assert not waiting.HasField("delivered_at")
        async with live.console_channel(live.admin_token) as console:
            await live.console(console).ApproveRun(
                console_pb2.ApproveRunRequest(id=run_id), timeout=10
            )
        order = (await stream.receive("run_script")).run_script
        verified = _verify(live, agent.agent_id, order)
        assert verified.order.approved_by == "admin"
        assert verified.order.requested_by == "bob"
        await stream.call.done_writing()


async def _sonde(live: LiveServer, tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(live.ca_pem)
    env = dict(os.environ)
    env.update(
        SONDE_SERVER=live.server.console_address, SONDE_TOKEN=live.admin_token, SONDE_CA=str(ca)
    )
    return await asyncio.create_subprocess_exec(
        *program("sonde"),
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_runs_show_follow_prints_the_output_live_then_how_it_ended(
    live: LiveServer, tmp_path: Path
) -> None:
    await _publish(live)
    agent = await live.enroll("pc-follow")
    async with agent.channel() as channel:
        stream = Session(agent_pb2_grpc.AgentServiceStub(channel).Session())
        await stream.send(hello("pc-follow"))
        await stream.receive("welcome")
        request = console_pb2.RunScriptRequest(agent=agent.agent_id, script_id="clear-temp")
        run_id = await _run(live, live.admin_token, request)
        await stream.receive("run_script")
        follow = await _sonde(live, tmp_path, "runs", "show", run_id, "--follow")
        assert follow.stdout is not None
        await stream.send(
            agent_pb2.AgentMessage(
                script_output=agent_pb2.ScriptOutput(command_id=run_id, data=b"step one\n")
            )
        )
        # Printed while the run is still going: the result is not sent yet.
        try:
            line = await asyncio.wait_for(follow.stdout.readline(), 30)
        except TimeoutError:
            follow.kill()
            raise AssertionError(await follow.communicate()) from None
        assert line == b"step one\n"
        assert (await _get(live, run_id)).run.command.state == console_pb2.COMMAND_STATE_RUNNING
        result = agent_pb2.Result(
            command_id=run_id,
            script_run=agent_pb2.ScriptRun(exit_code=3, stdout=b"step one\n", stdout_bytes=9),
        )
        await stream.send(agent_pb2.AgentMessage(result=result))
        await stream.receive("ack")
        rest, errors = await asyncio.wait_for(follow.communicate(), 30)
        await stream.call.done_writing()
    assert follow.returncode == 1, errors  # the run failed: exit 3
    assert b"failed" in rest
    assert b"the script exited 3" in rest


async def test_an_agents_refusal_ends_the_run_refused_with_its_reason(live: LiveServer) -> None:
    await _publish(live)
    agent = await live.enroll("pc-refuses")
    async with agent.channel() as channel:
        stream = Session(agent_pb2_grpc.AgentServiceStub(channel).Session())
        await stream.send(hello("pc-refuses"))
        await stream.receive("welcome")
        request = console_pb2.RunScriptRequest(agent=agent.agent_id, script_id="clear-temp")
        run_id = await _run(live, live.admin_token, request)
        await stream.receive("run_script")
        failure = agent_pb2.Failure(
            reason="this workstation's policy denies clear-temp",
            kind=agent_pb2.FAILURE_KIND_REFUSED,
            refusal="policy",
        )
        await stream.send(
            agent_pb2.AgentMessage(result=agent_pb2.Result(command_id=run_id, failure=failure))
        )
        await stream.receive("ack")
        await stream.call.done_writing()
    command = (await _get(live, run_id)).run.command
    assert command.state == console_pb2.COMMAND_STATE_REFUSED
    assert command.reason == (
        "the agent refused the order (policy): this workstation's policy denies clear-temp"
    )
