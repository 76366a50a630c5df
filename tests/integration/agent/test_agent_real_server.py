"""The agent against a real `sonde-server` process: enrollment with a real token, token
reuse refused, online within 2 s, and a rogue server refused after a real enrollment."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent.fake_server import ScratchCA, eventually, start_fake_server
from tests.support.deployment import Deployment, deployment, run


@pytest.fixture
def sonde(tmp_path: Path) -> Iterator[Deployment]:
    with deployment(tmp_path) as running:
        yield running


def test_enroll_with_a_real_token_then_reuse_is_refused(sonde: Deployment, tmp_path: Path) -> None:
    token = sonde.enrollment(uses=1)
    first = run("sonde-agent", "enroll", token, "--state", str(tmp_path / "a"), "--json")
    assert first.returncode == 0, first.stderr
    printed = json.loads(first.stdout)
    assert printed["agent_address"] == sonde.agent_address
    recorded = json.loads((tmp_path / "a" / "agent.json").read_text())
    assert recorded["agent_id"] == printed["agent_id"]
    assert (tmp_path / "a" / "ca.crt").read_bytes() == sonde.ca_file.read_bytes()

    again = run("sonde-agent", "enroll", token, "--state", str(tmp_path / "b"))
    assert again.returncode == 1
    (line,) = again.stderr.strip().splitlines()
    assert line.startswith("sonde-agent: enrollment refused (")
    assert not (tmp_path / "b" / "agent.key").exists()


def test_a_malformed_token_gets_a_clear_error(tmp_path: Path) -> None:
    done = run("sonde-agent", "enroll", "sonde-enroll-1.!!!", "--state", str(tmp_path / "s"))
    assert done.returncode == 1
    assert "this is not a Sonde enrollment string" in done.stderr


def test_run_is_online_within_2_s(sonde: Deployment, tmp_path: Path) -> None:
    state = tmp_path / "state"
    agent_id = sonde.enroll_agent(state)
    started = time.monotonic()
    agent = sonde.start_agent(state)
    record = sonde.wait_online(agent_id, timeout=2.0)
    assert time.monotonic() - started <= 2.0, agent.log()
    assert record.id == agent_id
    assert agent.stop() == 0


async def test_after_a_real_enrollment_a_rogue_server_gets_no_hello(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    sonde.enroll_agent(state)
    recorded = json.loads((state / "agent.json").read_text())
    # Its own CA, real TLS, and the very name the agent expects: only the CA differs.
    rogue = await start_fake_server(ScratchCA("Rogue CA"), server_name=recorded["server_name"])
    try:
        recorded["agent_addresses"] = [rogue.agent_address]
        (state / "agent.json").write_text(json.dumps(recorded))
        agent = sonde.start_agent(state)
        await eventually(
            lambda: agent.log().count("reconnecting in") >= 2, 10.0, f"two refusals\n{agent.log()}"
        )
        assert rogue.agents.sessions == 0
        assert rogue.agents.hellos == []
        assert agent.alive()
    finally:
        await rogue.server.stop(grace=None)
