"""Advertising several agent addresses (replicas): the server's config and flags, the
enrollment strings they produce, and a real agent that fails over between them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonde.enrollment_bundle import decode_bundle
from sonde.v1 import console_pb2, enrollment_pb2
from tests.support.deployment import Deployment, run


def _token(sonde: Deployment, *extra: str) -> enrollment_pb2.EnrollmentBundle:
    done = run("sonde-server", "token", "create", "--data", str(sonde.data), "--json", *extra)
    assert done.returncode == 0, done.stderr
    return decode_bundle(json.loads(done.stdout)["enrollment"])


def test_init_agent_addresses_are_in_every_enrollment_string(tmp_path: Path) -> None:
    replicas = ["sonde-a.example.lan:8444", "sonde-b.example.lan:8444"]
    sonde = Deployment(tmp_path)
    done = run(
        "sonde-server", "init", "--data", str(sonde.data), "--json",
        "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0",
        "--agent-address", replicas[0], "--agent-address", replicas[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["agent_addresses"] == replicas
    assert json.loads((sonde.data / "server.json").read_text())["agent_addresses"] == replicas
    sonde.admin_token = json.loads(done.stdout)["admin_token"]
    sonde.start_server()
    try:
        offline = _token(sonde)
        assert list(offline.agent_addresses) == replicas
        assert offline.agent_address == replicas[0]  # what agents before the list read

        with sonde.console() as console:
            reply = console.CreateEnrollmentToken(
                console_pb2.CreateEnrollmentTokenRequest(uses=1), timeout=10
            )
        from_console = decode_bundle(reply.enrollment)
        assert list(from_console.agent_addresses) == replicas
        assert from_console.agent_address == replicas[0]

        override = _token(sonde, "--agent-address", "sonde-c.example.lan:9444")
        assert list(override.agent_addresses) == ["sonde-c.example.lan:9444"]
    finally:
        sonde.stop()


def test_without_agent_addresses_the_string_names_the_server_itself(sonde: Deployment) -> None:
    bundle = _token(sonde)
    assert list(bundle.agent_addresses) == [sonde.agent_address]
    assert bundle.agent_address == sonde.agent_address


@pytest.mark.parametrize("address", ["sonde-b", "sonde-b:0", "sonde-b:http"])
def test_an_agent_address_agents_cannot_reach_is_refused(sonde: Deployment, address: str) -> None:
    done = run(
        "sonde-server", "token", "create", "--data", str(sonde.data), "--agent-address", address
    )
    assert done.returncode == 2
    assert "--agent-address" in done.stderr


@pytest.fixture
def dead_address() -> Iterator[str]:
    """A loopback port that is bound but not listening: every connection is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


def test_an_agent_whose_first_address_is_dead_comes_online_through_the_next(
    sonde: Deployment, dead_address: str, tmp_path: Path
) -> None:
    done = run(
        "sonde-server", "token", "create", "--data", str(sonde.data), "--json",
        "--agent-address", dead_address, "--agent-address", sonde.agent_address,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    state = tmp_path / "agent"
    agent_id = sonde.enroll_agent(state, json.loads(done.stdout)["enrollment"])
    recorded = json.loads((state / "agent.json").read_text())
    assert recorded["agent_addresses"] == [dead_address, sonde.agent_address]

    agent = sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=10)
    assert f"trying {sonde.agent_address} now" in agent.log()
