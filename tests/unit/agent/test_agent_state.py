"""The state folder: owner-only files, and a refusal to start that says what to fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sonde.agent import exit_codes
from sonde.agent.journal import Outbox
from sonde.agent.state import (
    AgentState,
    NotEnrolled,
    UnsafePermissions,
    check_permissions,
    load_state,
    save_state,
    write_private_file,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")

AGENT_ID = "abcdefghijklmnopqrstuvwxyz"


def _enrolled_folder(tmp_path: Path) -> Path:
    """A state folder laid out as enrollment leaves it (contents need not be valid here)."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    os.chmod(state_dir, 0o700)
    for name in ("agent.key", "agent.crt", "ca.crt"):
        write_private_file(state_dir / name, b"-----BEGIN PLACEHOLDER-----\n")
    save_state(
        state_dir,
        AgentState(
            AGENT_ID, ("127.0.0.1:1", "127.0.0.1:3"), "127.0.0.1:2", "sonde-server", "2026-11-28"
        ),
    )
    return state_dir


def test_write_private_file_is_0600_and_atomic(tmp_path: Path) -> None:
    target = tmp_path / "agent.key"
    previous = os.umask(0)
    try:
        write_private_file(target, b"first")
        write_private_file(target, b"second")
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"second"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["agent.key"]  # no temporary left over


def test_state_round_trips_through_agent_json(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    state = load_state(state_dir)
    assert state.agent_id == AGENT_ID
    assert json.loads((state_dir / "agent.json").read_text())["server_name"] == "sonde-server"


def test_agent_json_keeps_the_addresses_as_a_list_in_order(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    recorded = json.loads((state_dir / "agent.json").read_text())
    assert recorded["agent_addresses"] == ["127.0.0.1:1", "127.0.0.1:3"]
    assert "agent_address" not in recorded
    assert load_state(state_dir).agent_addresses == ("127.0.0.1:1", "127.0.0.1:3")


def test_an_agent_json_written_before_the_list_still_loads(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    old = {
        "agent_id": AGENT_ID,
        "agent_address": "sonde.example.lan:8444",
        "console_address": "sonde.example.lan:8443",
        "server_name": "sonde.example.lan",
        "enrolled_at": "2026-11-01T09:00:00+00:00",
    }
    write_private_file(state_dir / "agent.json", json.dumps(old).encode())
    state = load_state(state_dir)
    assert state.agent_addresses == ("sonde.example.lan:8444",)
    assert state.agent_address == "sonde.example.lan:8444"


@pytest.mark.parametrize(
    "addresses", [[], "127.0.0.1:1", ["127.0.0.1:1", 8444], ["127.0.0.1:1", "sonde-b"], None]
)
def test_an_unusable_address_list_says_malformed(tmp_path: Path, addresses: object) -> None:
    state_dir = _enrolled_folder(tmp_path)
    recorded = json.loads((state_dir / "agent.json").read_text())
    recorded["agent_addresses"] = addresses
    write_private_file(state_dir / "agent.json", json.dumps(recorded).encode())
    with pytest.raises(NotEnrolled, match="agent_addresses must be a list of one or more"):
        load_state(state_dir)


def test_missing_or_malformed_state_says_not_enrolled(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolled, match=r"not enrolled.*sonde-agent enroll"):
        load_state(tmp_path)
    (tmp_path / "agent.json").write_text('{"agent_id": "../etc"}')
    with pytest.raises(NotEnrolled, match="malformed"):
        load_state(tmp_path)


def test_a_correct_folder_passes(tmp_path: Path) -> None:
    check_permissions(_enrolled_folder(tmp_path))


def test_certificates_may_be_world_readable(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    os.chmod(state_dir / "ca.crt", 0o644)
    os.chmod(state_dir / "agent.crt", 0o644)
    check_permissions(state_dir)


@pytest.mark.parametrize(
    ("name", "mode", "said"),
    [
        (".", 0o777, "the state folder is writable by group or others; run: chmod 700"),
        (".", 0o770, "the state folder is writable by group or others; run: chmod 700"),
        ("agent.key", 0o644, "mode 0644: it is readable by group or others; run: chmod 600"),
        ("agent.key", 0o640, "mode 0640: it is readable by group or others; run: chmod 600"),
        ("agent.json", 0o604, "mode 0604: it is readable by group or others; run: chmod 600"),
        ("agent.key", 0o666, "mode 0666: it is writable by group or others; run: chmod 600"),
        ("ca.crt", 0o646, "mode 0646: it is writable by group or others; run: chmod 644"),
        ("agent.crt", 0o620, "mode 0620: it is writable by group or others; run: chmod 600"),
    ],
)
def test_unsafe_modes_are_refused_naming_the_file_and_the_fix(
    tmp_path: Path, name: str, mode: int, said: str
) -> None:
    state_dir = _enrolled_folder(tmp_path)
    path = state_dir if name == "." else state_dir / name
    os.chmod(path, mode)
    with pytest.raises(UnsafePermissions) as refused:
        check_permissions(state_dir)
    message = str(refused.value)
    assert message.startswith(f"refusing to start: {path} ")
    assert said in message
    assert message.endswith(str(path))


def test_a_readable_outbox_result_is_refused(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    with Outbox.in_state_dir(state_dir) as outbox:
        outbox.put("cmd-1", b"a snapshot")
    check_permissions(state_dir)
    result = state_dir / "outbox" / "00000000000000000001.result"
    os.chmod(result, 0o644)
    with pytest.raises(UnsafePermissions) as refused:
        check_permissions(state_dir)
    assert str(refused.value) == (
        f"refusing to start: {result} has mode 0644: it is readable by group or others; "
        f"run: chmod 600 {result}"
    )


def test_a_readable_completed_file_is_refused(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    with Outbox.in_state_dir(state_dir) as outbox:
        outbox.put("cmd-1", b"a snapshot")
    os.chmod(state_dir / "outbox" / "completed", 0o640)
    with pytest.raises(UnsafePermissions, match=r"outbox/completed has mode 0640.*chmod 600"):
        check_permissions(state_dir)


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        (0o755, "mode 0755: it is readable by group or others; run: chmod 700"),
        (0o770, "mode 0770: the state folder is writable by group or others; run: chmod 700"),
    ],
)
def test_an_outbox_folder_others_can_list_or_change_is_refused(
    tmp_path: Path, mode: int, said: str
) -> None:
    state_dir = _enrolled_folder(tmp_path)
    Outbox.in_state_dir(state_dir).close()
    os.chmod(state_dir / "outbox", mode)
    with pytest.raises(UnsafePermissions, match=said):
        check_permissions(state_dir)


def test_a_symbolic_link_inside_the_outbox_is_refused(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    Outbox.in_state_dir(state_dir).close()
    (state_dir / "outbox" / "00000000000000000009.result").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePermissions, match=r"00000000000000000009\.result is a symbolic"):
        check_permissions(state_dir)


def test_a_stranger_file_in_the_folder_is_checked_too(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    (state_dir / "dropped-by-someone").write_bytes(b"")
    os.chmod(state_dir / "dropped-by-someone", 0o666)
    with pytest.raises(UnsafePermissions, match="dropped-by-someone has mode 0666"):
        check_permissions(state_dir)


def test_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    (state_dir / "agent.key").unlink()
    (state_dir / "agent.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePermissions, match=r"agent\.key is a symbolic link"):
        check_permissions(state_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    state_dir = _enrolled_folder(tmp_path)
    os.chown(state_dir / "agent.key", 65534, -1)
    with pytest.raises(UnsafePermissions, match=r"owned by uid 65534.*run: chown 0"):
        check_permissions(state_dir)


def _run_agent(agent_command: list[str], state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*agent_command, "run", "--state", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_refuses_a_world_writable_folder_with_exit_code_3(
    tmp_path: Path, agent_command: list[str]
) -> None:
    state_dir = _enrolled_folder(tmp_path)
    os.chmod(state_dir, 0o777)
    finished = _run_agent(agent_command, state_dir)
    assert finished.returncode == exit_codes.REFUSED, finished.stderr
    assert f"refusing to start: {state_dir} has mode 0777" in finished.stderr
    assert f"run: chmod 700 {state_dir}" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_run_refuses_a_0644_key_with_exit_code_3(tmp_path: Path, agent_command: list[str]) -> None:
    state_dir = _enrolled_folder(tmp_path)
    os.chmod(state_dir / "agent.key", 0o644)
    finished = _run_agent(agent_command, state_dir)
    assert finished.returncode == exit_codes.REFUSED, finished.stderr
    key = state_dir / "agent.key"
    assert f"refusing to start: {key} has mode 0644" in finished.stderr
    assert f"run: chmod 600 {key}" in finished.stderr


def test_run_refuses_when_not_enrolled_with_exit_code_3(
    tmp_path: Path, agent_command: list[str]
) -> None:
    finished = _run_agent(agent_command, tmp_path / "nowhere")
    assert finished.returncode == exit_codes.REFUSED, finished.stderr
    assert "not enrolled" in finished.stderr
