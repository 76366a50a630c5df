"""`sonde-agent enroll` refuses a state folder someone else could have chosen or planted in,
and follows no link planted where it writes."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sonde.agent import enroll as sonde_enroll
from sonde.identity import agent_id_from_public_key
from sonde.v1 import enrollment_pb2
from tests.integration.agent.fake_server import FakeServer, run_agent_command

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can give a folder to another user (uid 65534 here)"
)
VICTIM = b"a file of someone else's, which a planted link points at\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    return path


async def _refused(
    fake_server: FakeServer, agent_command: list[str], state: Path, *extra: str
) -> list[str]:
    code, out, err = await run_agent_command(
        agent_command, "enroll", fake_server.enrollment_string(), "--state", str(state), *extra
    )
    assert code == 1, out + err
    assert "Traceback" not in err
    assert fake_server.enrollment.requests == []  # refused before calling the server
    return err.strip().splitlines()


async def test_enroll_refuses_a_state_folder_that_is_a_symbolic_link(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    state = tmp_path / "state"
    state.symlink_to(real)

    said = await _refused(fake_server, agent_command, state)

    assert said == [
        f"sonde-agent: refusing to enroll: {state} is a symbolic link; the state folder must be "
        f"a real folder (give its real path, {real}, instead)"
    ]
    assert list(real.iterdir()) == []
    assert stat.S_IMODE(real.stat().st_mode) == 0o755  # not even tightened


@needs_root
async def test_enroll_refuses_a_state_folder_another_user_owns(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chown(state, 65534, -1)

    said = await _refused(fake_server, agent_command, state)

    assert said == [
        f"sonde-agent: refusing to enroll: {state} is owned by uid 65534, not by the agent's "
        f"user (uid 0); run: chown 0 {state}"
    ]
    assert list(state.iterdir()) == []
    assert stat.S_IMODE(state.stat().st_mode) == 0o755


async def test_enroll_refuses_a_state_folder_holding_a_link_or_an_open_file(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path, victim: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o777)  # open for a while: anyone could plant in it
    os.chmod(state, 0o777)
    (state / "agent.key").symlink_to(victim)
    (state / "dropped").write_bytes(b"")
    os.chmod(state / "dropped", 0o666)

    said = await _refused(fake_server, agent_command, state, "--force")

    assert said == [
        f"sonde-agent: refusing to enroll: {state}/agent.key is a symbolic link; it must be a "
        "plain file or folder (remove it)",
        f"refusing to enroll: {state}/dropped has mode 0666: it is writable by group or others; "
        f"run: chmod 644 {state}/dropped",
    ]
    assert victim.read_bytes() == VICTIM


async def test_enroll_follows_no_link_planted_at_the_old_temporary_names(
    fake_server: FakeServer, tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process, so that the pid the old names used is known; the links are planted
    # while the server is asked, after the folder was checked (a link there before is refused).
    state = tmp_path / "state"
    written = ("agent.key", "agent.crt", "ca.crt", "agent.json")
    ask_the_server = sonde_enroll.request_certificate

    def plant_then_ask(
        bundle: enrollment_pb2.EnrollmentBundle, request: enrollment_pb2.EnrollRequest
    ) -> enrollment_pb2.EnrollResponse:
        for name in written:
            (state / f".{name}.tmp-{os.getpid()}").symlink_to(victim)
        return ask_the_server(bundle, request)

    monkeypatch.setattr(sonde_enroll, "request_certificate", plant_then_ask)

    enrolled = await asyncio.to_thread(sonde_enroll.enroll, fake_server.enrollment_string(), state)

    assert victim.read_bytes() == VICTIM
    for name in written:
        info = os.lstat(state / name)
        assert stat.S_ISREG(info.st_mode), name
        assert stat.S_IMODE(info.st_mode) == 0o600, name
    key = serialization.load_pem_private_key((state / "agent.key").read_bytes(), password=None)
    assert agent_id_from_public_key(key.public_key()) == enrolled.agent_id
