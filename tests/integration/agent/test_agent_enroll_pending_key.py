"""`sonde-agent enroll` keeps its key before it asks (enrollment-pending.json, owner-only), so a
retry for the same server presents the same key; --force, or a string for another server,
starts over with a new key; a damaged pending key is refused, naming the file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cryptography import x509

from sonde.agent.paths import PENDING_KEY_FILE
from sonde.identity import agent_id_from_public_key
from sonde.v1 import enrollment_pb2
from tests.integration.agent.fake_server import (
    FakeServer,
    ScratchCA,
    run_agent_command,
    start_fake_server,
)


def _key_of(request: enrollment_pb2.EnrollRequest) -> str:
    """The agent id of the key a request asked to certify."""
    return agent_id_from_public_key(x509.load_der_x509_csr(request.csr_der).public_key())


async def _enroll(
    agent_command: list[str], enrollment: str, state: Path, *extra: str
) -> tuple[int, str, str]:
    return await run_agent_command(
        agent_command, "enroll", enrollment, "--state", str(state), "--json", *extra
    )


async def test_a_retry_after_a_refusal_presents_the_same_key(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    fake_server.enrollment.uses_left = 0
    code, _, err = await _enroll(agent_command, fake_server.enrollment_string(), state)
    assert code == 1
    assert "has no uses left" in err
    # A refusal is an answer: nothing suggests the enrollment may have happened.
    assert "run the same command again" not in err
    pending = state / PENDING_KEY_FILE
    assert stat.S_IMODE(os.lstat(pending).st_mode) == 0o600
    assert sorted(p.name for p in state.iterdir()) == [PENDING_KEY_FILE]

    fake_server.enrollment.uses_left = 1
    code, out, err = await _enroll(agent_command, fake_server.enrollment_string(), state)
    assert code == 0, err
    first, retry = fake_server.enrollment.requests
    assert _key_of(retry) == _key_of(first) == json.loads(out)["agent_id"]
    assert not pending.exists()


async def test_force_starts_over_with_a_new_key(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    fake_server.enrollment.uses_left = 0
    assert (await _enroll(agent_command, fake_server.enrollment_string(), state))[0] == 1
    fake_server.enrollment.uses_left = 1
    code, out, err = await _enroll(agent_command, fake_server.enrollment_string(), state, "--force")
    assert code == 0, err
    first, forced = fake_server.enrollment.requests
    assert _key_of(forced) != _key_of(first)
    assert _key_of(forced) == json.loads(out)["agent_id"]
    assert not (state / PENDING_KEY_FILE).exists()


async def test_a_key_pending_for_another_server_is_not_presented_to_this_one(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    fake_server.enrollment.uses_left = 0
    assert (await _enroll(agent_command, fake_server.enrollment_string(), state))[0] == 1
    other = await start_fake_server(ScratchCA("another Sonde CA"))
    try:
        code, _, err = await _enroll(agent_command, other.enrollment_string(), state)
        assert code == 0, err
        (first,), (elsewhere,) = fake_server.enrollment.requests, other.enrollment.requests
        assert _key_of(elsewhere) != _key_of(first)
    finally:
        await other.server.stop(grace=None)


async def test_a_damaged_pending_key_is_refused_naming_the_file(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    pending = state / PENDING_KEY_FILE
    pending.write_text('{"ca_sha256": "00", "private_key_pem": 7}')
    os.chmod(pending, 0o600)
    code, _, err = await _enroll(agent_command, fake_server.enrollment_string(), state)
    assert code == 1
    assert err.strip() == (
        f"sonde-agent: {pending} (the key of an unfinished enrollment) is damaged; remove it, "
        "or pass --force to start over with a new key"
    )
    assert fake_server.enrollment.requests == []


async def test_a_link_planted_at_the_pending_key_is_refused(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("someone else's file\n")
    (state / PENDING_KEY_FILE).symlink_to(victim)
    code, _, err = await _enroll(agent_command, fake_server.enrollment_string(), state)
    assert code == 1
    assert f"{state}/{PENDING_KEY_FILE} is a symbolic link" in err
    assert victim.read_text() == "someone else's file\n"
    assert fake_server.enrollment.requests == []
