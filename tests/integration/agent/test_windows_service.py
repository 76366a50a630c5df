"""The Windows service's logic, on Linux: enrollment at first start with the string the MSI
left in the registry (a real server on 127.0.0.1, SQLite), and the supervision of the agent
as a child process (real processes). Only the pywin32 class around it needs Windows."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sonde.agent import exit_codes
from sonde.agent.backoff import Backoff
from sonde.agent.paths import PENDING_KEY_FILE, STATE_FILE
from sonde.agent.state import is_enrolled, load_state
from sonde.agent.windows_service import (
    AgentSupervisor,
    FirstStart,
    agent_command,
    enroll_at_first_start,
)
from sonde.enrollment_bundle import encode_bundle
from sonde.v1 import enrollment_pb2
from tests.integration.storage.databases import sqlite_template
from tests.support.live_server import SERVER_NAME, LiveServer, live_server

__all__ = ["sqlite_template"]


class RegistryValue:
    """The registry value Enrollment, as the service sees it: read, and deleted once."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self.cleared = 0

    def read(self) -> str | None:
        return self.value

    def clear(self) -> None:
        self.value = None
        self.cleared += 1


@pytest.fixture
async def live(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[LiveServer]:
    target = tmp_path / "sonde.db"
    target.write_bytes(sqlite_template.read_bytes())
    async with live_server(tmp_path / "server", f"sqlite+aiosqlite:///{target}") as running:
        yield running


async def _enrollment_string(live: LiveServer, console_address: str | None = None) -> str:
    token = await live.token()
    bundle = enrollment_pb2.EnrollmentBundle(
        console_address=console_address or live.server.console_address,
        agent_address=live.server.agent_address,
        ca_certificate_der=x509.load_pem_x509_certificate(live.ca_pem).public_bytes(Encoding.DER),
        token_id=token.token_id,
        secret=token.secret,
        server_name=SERVER_NAME,
    )
    return encode_bundle(bundle)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_install_string_enrolls_once_and_is_deleted(
    live: LiveServer, tmp_path: Path
) -> None:
    state = tmp_path / "ProgramData" / "Sonde" / "agent"
    registry = RegistryValue(await _enrollment_string(live))
    decision = await asyncio.to_thread(enroll_at_first_start, state, registry)
    assert decision.outcome is FirstStart.ENROLLED_NOW
    assert decision.can_run
    assert registry.value is None
    assert registry.cleared == 1
    assert load_state(state).agent_id in decision.detail
    # The next start finds the enrollment and leaves the registry alone.
    again = await asyncio.to_thread(enroll_at_first_start, state, registry)
    assert again.outcome is FirstStart.ALREADY_ENROLLED
    assert registry.cleared == 1


async def test_a_used_up_string_is_refused_and_deleted(live: LiveServer, tmp_path: Path) -> None:
    text = await _enrollment_string(live)
    first = await asyncio.to_thread(enroll_at_first_start, tmp_path / "a", RegistryValue(text))
    assert first.outcome is FirstStart.ENROLLED_NOW
    registry = RegistryValue(text)  # the same one-use string given to a second machine
    second = await asyncio.to_thread(enroll_at_first_start, tmp_path / "b", registry)
    assert second.outcome is FirstStart.REFUSED
    assert not second.can_run
    assert "refused" in second.detail
    assert registry.value is None
    assert not is_enrolled(tmp_path / "b")


async def test_an_unreachable_server_keeps_the_string_for_the_next_start(
    live: LiveServer, tmp_path: Path
) -> None:
    text = await _enrollment_string(live, console_address=f"127.0.0.1:{_closed_port()}")
    registry = RegistryValue(text)
    decision = await asyncio.to_thread(enroll_at_first_start, tmp_path / "state", registry)
    assert decision.outcome is FirstStart.UNREACHABLE
    assert registry.value == text
    assert registry.cleared == 0
    assert (tmp_path / "state" / PENDING_KEY_FILE).exists()


def test_no_string_and_no_enrollment_says_how_to_enroll(tmp_path: Path) -> None:
    decision = enroll_at_first_start(tmp_path / "state", RegistryValue(None))
    assert decision.outcome is FirstStart.NOT_ENROLLED
    assert "ENROLLMENT=" in decision.detail
    assert "sonde-agent enroll" in decision.detail


def test_a_malformed_string_is_refused_and_deleted(tmp_path: Path) -> None:
    registry = RegistryValue("sonde-enroll-1.not a bundle")
    decision = enroll_at_first_start(tmp_path / "state", registry)
    assert decision.outcome is FirstStart.REFUSED
    assert "not a Sonde enrollment string" in decision.detail
    assert registry.value is None


def test_a_string_left_on_an_enrolled_machine_is_deleted_unused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / STATE_FILE).write_text("{}")  # an enrollment, as is_enrolled sees one
    registry = RegistryValue("sonde-enroll-1.a-reinstall-s-string")
    decision = enroll_at_first_start(state, registry)
    assert decision.outcome is FirstStart.ALREADY_ENROLLED
    assert registry.value is None


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_an_agent_that_cannot_start_is_not_restarted() -> None:
    for code in (exit_codes.REFUSED, exit_codes.REVOKED, exit_codes.DAMAGED_STATE):
        supervisor = AgentSupervisor(_child(f"raise SystemExit({code})"), threading.Event())
        assert supervisor.run() == code
        assert supervisor.starts == 1


def test_an_agent_that_crashed_is_started_again(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    stop = threading.Event()
    # Each start appends a line; the third asks the service to stop by exiting with 3.
    script = (
        f"import pathlib; p = pathlib.Path({str(runs)!r}); "
        "p.open('a').write('run\\n'); "
        "raise SystemExit(3 if len(p.read_text().split()) >= 3 else 1)"
    )
    supervisor = AgentSupervisor(_child(script), stop, backoff=Backoff(first_s=0.05, jitter=0))
    assert supervisor.run() == exit_codes.REFUSED
    assert supervisor.starts == 3
    assert runs.read_text().split() == ["run", "run", "run"]


def test_stop_ends_the_running_agent(tmp_path: Path) -> None:
    started = tmp_path / "started"
    stop = threading.Event()
    script = f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)"
    supervisor = AgentSupervisor(_child(script), stop)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()))
    thread.start()
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    began = time.monotonic()
    stop.set()
    thread.join(15)
    assert not thread.is_alive()
    assert result == [exit_codes.OK]
    assert time.monotonic() - began < 5
    assert supervisor.starts == 1


def test_the_agent_runs_with_the_interpreter_beside_the_service_host(tmp_path: Path) -> None:
    python = tmp_path / "python" / "python.exe"
    command = agent_command(tmp_path / "state", python)
    assert command == [
        str(python),
        "-m",
        "sonde.agent.cli",
        "run",
        "--state",
        str(tmp_path / "state"),
    ]
