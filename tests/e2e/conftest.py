"""Fixtures for end-to-end tests: real sonde-server and sonde-agent processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.deployment import Deployment, Process, deployment


@dataclass
class OnlineAgent:
    agent_id: str
    state: Path
    process: Process


@pytest.fixture
def sonde(tmp_path: Path) -> Iterator[Deployment]:
    """A fresh server of one's own (for tests that kill or restart it)."""
    with deployment(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_sonde(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One server for a whole test module (for tests that only read or add)."""
    with deployment(tmp_path_factory.mktemp("sonde")) as running:
        yield running


def bring_online(sonde: Deployment, state: Path) -> OnlineAgent:
    agent_id = sonde.enroll_agent(state)
    process = sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=10)
    return OnlineAgent(agent_id, state, process)


@pytest.fixture(scope="module")
def shared_agent(shared_sonde: Deployment, tmp_path_factory: pytest.TempPathFactory) -> OnlineAgent:
    """An enrolled agent process connected to shared_sonde."""
    return bring_online(shared_sonde, tmp_path_factory.mktemp("agent") / "state")
