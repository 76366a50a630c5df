"""Fixtures for the agent runtime's integration tests (see fake_server.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.agent.fake_server import (
    AgentProcess,
    FakeServer,
    ScratchCA,
    StartAgent,
    run_agent_command,
    start_fake_server,
)
from tests.support.deployment import program


@pytest.fixture(scope="session")
def agent_command() -> list[str]:
    return program("sonde-agent")


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    server = await start_fake_server(ScratchCA("Sonde test CA"))
    yield server
    await server.server.stop(grace=None)


@pytest.fixture
async def start_agent(tmp_path: Path, agent_command: list[str]) -> AsyncIterator[StartAgent]:
    started: list[AgentProcess] = []

    async def start(*args: str) -> AgentProcess:
        log_path = tmp_path / f"agent-{len(started)}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                *agent_command,
                *args,
                stdout=log_file,
                stderr=log_file,
                env={**os.environ, "SONDE_AGENT_LOG_LEVEL": "INFO"},
            )
        agent = AgentProcess(process, log_path)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.process.returncode is None:
            agent.process.kill()
            await agent.process.wait()


@pytest.fixture
async def enrolled_state(fake_server: FakeServer, agent_command: list[str], tmp_path: Path) -> Path:
    """A state folder enrolled for real (`sonde-agent enroll`) with the stand-in server."""
    state = tmp_path / "state"
    code, _, err = await run_agent_command(
        agent_command, "enroll", fake_server.enrollment_string(), "--state", str(state)
    )
    assert code == 0, err
    return state
