"""`sonde-agent enroll` against a stand-in server: what it writes, what it refuses."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sonde.identity import agent_id_from_public_key
from tests.integration.agent.fake_server import (
    SERVER_NAME,
    FakeServer,
    ScratchCA,
    run_agent_command,
    start_fake_server,
)


async def test_enroll_writes_owner_only_state_bound_to_its_own_key(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    code, out, err = await run_agent_command(
        agent_command, "enroll", fake_server.enrollment_string(), "--state", str(state), "--json"
    )
    assert code == 0, err
    printed = json.loads(out)
    assert printed == {
        "agent_id": printed["agent_id"],
        "agent_address": fake_server.agent_address,
        "agent_addresses": [fake_server.agent_address],
        "state_dir": str(state),
    }
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert sorted(p.name for p in state.iterdir()) == [
        "agent.crt",
        "agent.json",
        "agent.key",
        "ca.crt",
    ]
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    key = serialization.load_pem_private_key((state / "agent.key").read_bytes(), password=None)
    certificate = x509.load_pem_x509_certificate((state / "agent.crt").read_bytes())
    assert agent_id_from_public_key(key.public_key()) == printed["agent_id"]
    assert agent_id_from_public_key(certificate.public_key()) == printed["agent_id"]
    assert (state / "ca.crt").read_bytes() == fake_server.ca.pem

    # The server saw a CSR for that key and never the private key.
    (request,) = fake_server.enrollment.requests
    csr = x509.load_der_x509_csr(request.csr_der)
    assert agent_id_from_public_key(csr.public_key()) == printed["agent_id"]
    assert request.platform == "linux"
    assert b"PRIVATE KEY" not in request.SerializeToString()

    recorded = json.loads((state / "agent.json").read_text())
    assert recorded["agent_id"] == printed["agent_id"]
    assert recorded["server_name"] == SERVER_NAME
    assert recorded["console_address"] == fake_server.console_address


async def test_enroll_refuses_to_overwrite_an_enrollment_without_force(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    fake_server.enrollment.uses_left = 2
    token = fake_server.enrollment_string()
    code, first, err = await run_agent_command(
        agent_command, "enroll", token, "--state", str(state), "--json"
    )
    assert code == 0, err
    code, _, err = await run_agent_command(agent_command, "enroll", token, "--state", str(state))
    assert code == 1
    assert "already holds an enrollment; pass --force" in err
    assert len(fake_server.enrollment.requests) == 1  # refused before calling the server

    code, second, err = await run_agent_command(
        agent_command, "enroll", token, "--state", str(state), "--force", "--json"
    )
    assert code == 0, err
    assert json.loads(second)["agent_id"] != json.loads(first)["agent_id"]


async def test_a_refusal_from_the_server_is_one_clear_line(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    fake_server.enrollment.uses_left = 0
    code, _, err = await run_agent_command(
        agent_command,
        "enroll",
        fake_server.enrollment_string(),
        "--state",
        str(tmp_path / "state"),
    )
    assert code == 1
    assert err.strip().splitlines() == [
        "sonde-agent: enrollment refused (UNAUTHENTICATED): enrollment token 1a2b has no uses left"
    ]
    assert not (tmp_path / "state" / "agent.key").exists()


async def test_a_malformed_token_is_refused_before_any_network_call(
    agent_command: list[str], tmp_path: Path
) -> None:
    code, _, err = await run_agent_command(
        agent_command, "enroll", "sonde-enroll-1.@@@", "--state", str(tmp_path / "state")
    )
    assert code == 1
    assert (
        "this is not a Sonde enrollment string: the part after the prefix is not base64url" in err
    )
    assert not (tmp_path / "state").exists()


async def test_a_certificate_from_another_ca_is_refused_and_nothing_is_kept(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    fake_server.enrollment.sign_with = ScratchCA("Some other CA")
    code, _, err = await run_agent_command(
        agent_command,
        "enroll",
        fake_server.enrollment_string(),
        "--state",
        str(tmp_path / "state"),
    )
    assert code == 1
    assert "not signed by the CA in the enrollment string" in err
    assert not (tmp_path / "state" / "agent.key").exists()
    assert not (tmp_path / "state" / "agent.json").exists()


async def test_enroll_refuses_a_server_that_does_not_chain_to_the_pinned_ca(
    agent_command: list[str], tmp_path: Path
) -> None:
    pinned = ScratchCA("Pinned CA")
    rogue = await start_fake_server(pinned, presented_by=ScratchCA("Rogue CA"))
    try:
        code, _, err = await run_agent_command(
            agent_command,
            "enroll",
            rogue.enrollment_string(),
            "--state",
            str(tmp_path / "state"),
        )
    finally:
        await rogue.server.stop(grace=None)
    assert code == 1
    assert f"cannot reach the server at {rogue.console_address} (UNAVAILABLE)" in err
    assert rogue.enrollment.requests == []  # the secret never left the machine
