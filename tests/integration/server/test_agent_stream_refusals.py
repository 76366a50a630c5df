"""The agent stream as a hostile or broken agent drives it, against a real server on 127.0.0.1
(SQLite and PostgreSQL): every Result gets its ResultAck and at most one warning, the stream
goes on, nothing of another agent's changes, and a flood costs a few log lines and audit rows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import grpc.aio
import pytest
from sqlalchemy import func, select

from sonde.server.storage.tables import audit_log
from sonde.v1 import agent_pb2, agent_pb2_grpc, console_pb2
from tests.support.live_server import HandDrivenAgent, LiveServer, hello, live_server

SESSION_LOG = "sonde.server.api.agent_session"


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url) as running:
        yield running


class Session:
    """One raw AgentService.Session, driven message by message."""

    def __init__(
        self, call: grpc.aio.StreamStreamCall[agent_pb2.AgentMessage, agent_pb2.ServerMessage]
    ):
        self.call = call

    async def send(self, *messages: agent_pb2.AgentMessage) -> None:
        for message in messages:
            await self.call.write(message)

    async def receive(self, kind: str, timeout: float = 20.0) -> agent_pb2.ServerMessage:
        message = await asyncio.wait_for(self.call.read(), timeout)
        assert message is not grpc.aio.EOF, "the server ended the stream"
        assert isinstance(message, agent_pb2.ServerMessage)
        assert message.WhichOneof("kind") == kind, message
        return message

    async def acks(self, count: int) -> list[str]:
        return [(await self.receive("ack")).ack.command_id for _ in range(count)]


@asynccontextmanager
async def session(agent: HandDrivenAgent) -> AsyncIterator[Session]:
    async with agent.channel() as channel:
        opened = Session(agent_pb2_grpc.AgentServiceStub(channel).Session())
        await opened.send(hello())
        await opened.receive("welcome")
        yield opened
        await opened.call.done_writing()


def failure(command_id: str, reason: str = "no") -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        result=agent_pb2.Result(command_id=command_id, failure=agent_pb2.Failure(reason=reason))
    )


def snapshot(command_id: str, *, readable: bool = True) -> agent_pb2.AgentMessage:
    message = agent_pb2.AgentMessage(result=agent_pb2.Result(command_id=command_id))
    message.result.snapshot.system.hostname = "all fine here"
    if readable:
        message.result.snapshot.collected_at.GetCurrentTime()
    else:
        message.result.snapshot.collected_at.seconds = 2**62  # past year 9999
    return message


async def queue(live: LiveServer, agent_id: str) -> str:
    async with live.console_channel(live.admin_token) as channel:
        reply = await live.console(channel).RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=agent_id), timeout=10
        )
    return reply.command.id


async def command(live: LiveServer, command_id: str) -> console_pb2.Command:
    async with live.console_channel(live.admin_token) as channel:
        reply = await live.console(channel).GetCommand(
            console_pb2.GetCommandRequest(id=command_id), timeout=10
        )
    return reply.command


def warnings_about(caplog: pytest.LogCaptureFixture, agent_id: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == SESSION_LOG
        and record.levelno >= logging.WARNING
        and agent_id in record.getMessage()
    ]


async def eventually(probe: Callable[[], list[str]], *, count: int) -> list[str]:
    """`probe()` once it holds `count` lines (the server logs as it reads), or fail."""
    deadline = asyncio.get_running_loop().time() + 20
    while len(lines := probe()) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert len(lines) == count, lines[-3:]
    return lines


async def result_rows(live: LiveServer, agent_id: str) -> int:
    """The agent's `command.result` audit rows, stored and refused."""
    return int(
        await live.db.read(
            lambda c: c.execute(
                select(func.count())
                .select_from(audit_log)
                .where(
                    audit_log.c.actor == f"agent:{agent_id}",
                    audit_log.c.action == "command.result",
                )
            ).scalar_one()
        )
    )


async def test_every_result_is_acknowledged_and_the_stream_goes_on(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    agent = await live.enroll("pc-a")
    victim = await live.enroll("pc-v")
    victims = await queue(live, victim.agent_id)  # offline: it waits for pc-v
    first, second = await queue(live, agent.agent_id), await queue(live, agent.agent_id)
    async with session(agent) as stream:
        sent = {(await stream.receive("collect")).collect.command_id for _ in range(2)}
        assert sent == {first, second}
        results = [
            failure("0" * 32),  # unknown
            snapshot(victims),  # another agent's
            failure("a\x00b"),  # not a command id (PostgreSQL text cannot hold it)
            snapshot("1" * 32, readable=False),  # unknown, and the checks cannot read it
            snapshot(first, readable=False),  # its own: it fails, saying why
            snapshot(first),  # resent after it ended
            failure(second, "disk\x00 read\x1b[31m failed\n"),  # its own, hostile text
        ]
        await stream.send(*results[:3], agent_pb2.AgentMessage(), hello(), *results[3:])
        assert await stream.acks(len(results)) == [r.result.command_id for r in results]
        # The same stream still runs a diagnostic to the end.
        async with live.console_channel(live.admin_token) as channel:

            async def diagnose() -> console_pb2.RunDiagnosticsResponse:
                request = console_pb2.RunDiagnosticsRequest(
                    agent=agent.agent_id, timeout_s=20, wait_offline=True
                )
                return await live.console(channel).RunDiagnostics(request, timeout=30)

            asked = asyncio.create_task(diagnose())
            third = (await stream.receive("collect")).collect.command_id
            await stream.send(snapshot(third))
            assert await stream.acks(1) == [third]
            answered = await asked
    assert answered.command.state == console_pb2.COMMAND_STATE_SUCCEEDED
    assert answered.snapshot.summary.id
    assert (await command(live, victims)).state == console_pb2.COMMAND_STATE_QUEUED
    failed = await command(live, first)
    assert failed.state == console_pb2.COMMAND_STATE_FAILED
    assert failed.reason.startswith("the server could not read this snapshot: Timestamp is not")
    hostile = await command(live, second)
    assert (hostile.state, hostile.reason) == (
        console_pb2.COMMAND_STATE_FAILED,
        "disk read[31m failed",
    )
    # One warning for each message that was not what it should be, and no error.
    said = [
        line.removeprefix(f"agent {agent.agent_id} ")
        for line in warnings_about(caplog, agent.agent_id)
    ]
    assert [line[:60] for line in said] == [
        line[:60]
        for line in [
            f"sent a result that was refused: no command '{'0' * 32}'",
            f"sent a result that was refused: command {victims} was issued to another agent",
            "sent a result that was refused: a result names the command 'a\\x00b', which",
            "sent an unexpected empty message: ignored",
            "sent an unexpected hello message: ignored",
            f"sent a result that was refused: no command '{'1' * 32}'",
            f"sent a snapshot for command {first} that the checks cannot read (Timestamp",
            f"resent the result of command {first}, which had already ended failed: dropped",
        ]
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_flood_on_one_stream_costs_a_few_lines_and_rows(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, SESSION_LOG)
    agent = await live.enroll("pc-a")
    victim = await live.enroll("pc-v")
    victims = await queue(live, victim.agent_id)
    flood = [agent_pb2.AgentMessage() for _ in range(1000)]  # no kind at all
    flood += [failure(f"{n:032x}") for n in range(1000)]
    flood += [snapshot(victims) for _ in range(500)]
    async with session(agent) as stream:
        await stream.send(*flood)
        assert await stream.acks(1500) == [m.result.command_id for m in flood[1000:]]
    # Once the stream is over: 10 lines in full, then one saying how many were left out.
    said = await eventually(lambda: warnings_about(caplog, agent.agent_id), count=11)
    assert said[-1].startswith(f"agent {agent.agent_id}: 2490 more warnings about its stream")
    assert await result_rows(live, agent.agent_id) <= 20  # the refusals' rate
    assert (await command(live, victims)).state == console_pb2.COMMAND_STATE_QUEUED


async def test_a_result_resent_after_its_command_ended_is_acknowledged_and_dropped(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, SESSION_LOG)
    agent = await live.enroll("pc-a")
    done = await queue(live, agent.agent_id)
    async with session(agent) as stream:
        assert (await stream.receive("collect")).collect.command_id == done
        await stream.send(snapshot(done))
        assert await stream.acks(1) == [done]
        ended = await command(live, done)
        assert ended.state == console_pb2.COMMAND_STATE_SUCCEEDED
        await stream.send(failure(done, "collectors crashed"))  # as an agent's outbox resends
        assert await stream.acks(1) == [done]
        assert warnings_about(caplog, agent.agent_id) == [
            f"agent {agent.agent_id} resent the result of command {done}, which had already "
            "ended succeeded: dropped"
        ]
        await stream.send(*(snapshot(done) for _ in range(200)))
        assert await stream.acks(200) == [done] * 200
    after = await command(live, done)
    assert (after.state, after.finished_at, after.snapshot_id, after.reason) == (
        ended.state,
        ended.finished_at,
        ended.snapshot_id,
        "",
    )
    # The stored result's row, then the refusals' rate (10 a minute), not a row per resend.
    assert await result_rows(live, agent.agent_id) <= 11
