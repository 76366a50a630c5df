"""The demo's steps: a real sonde-server and sonde-agent as subprocesses in a temporary folder.

Each step is bounded in time and recorded (name, outcome, duration); the first failure stops
the run with the step's name and reason, and the caller prints the tail of the logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from sonde.catalog.folder import shipped_catalog
from sonde.server.console import demo_fix
from sonde.server.console.client import ConsoleClient, diag_deadline
from sonde.server.console.config import Credentials
from sonde.server.console.errors import CliError
from sonde.server.console.render_command import state_label
from sonde.v1 import console_pb2

DEMO_TITLE = "Demo: user reports the PC is slow"
# How long each step may take; generous, since a loaded CI machine is slow to start Python.
INIT_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0
ONLINE_TIMEOUT_S = 30.0
DIAG_AGENT_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05
# Variables that would point the demo's programs at something other than the demo folder.
_SCRUBBED_ENV = ("SONDE_AGENT_STATE", "SONDE_SERVER", "SONDE_TOKEN", "SONDE_CA")

# Both listeners on loopback, ports chosen by the OS: the demo never clashes with a real server.
_LOOPBACK_PORT_0 = ("--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0")

T = TypeVar("T")


class StepFailed(Exception):
    """A step did not complete; the message says what happened."""


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


def program(script: str, module: str) -> list[str]:
    """The installed console script next to this Python, else the module's main() through -c."""
    suffix = ".exe" if sys.platform == "win32" else ""
    candidate = Path(sys.executable).parent / f"{script}{suffix}"
    if candidate.is_file():
        return [str(candidate)]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def tail(path: Path, lines: int = 20) -> list[str]:
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return content.splitlines()[-lines:]


@dataclass
class DemoRun:
    """One demo: the folder, the processes it started, and what each step gave."""

    folder: Path
    progress: Callable[[Step], None]
    steps: list[Step] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    console_address: str = ""
    admin_token: str = ""
    ca_file: Path = Path()
    agent: console_pb2.Agent = field(default_factory=console_pb2.Agent)
    snapshot: console_pb2.StoredSnapshot = field(default_factory=console_pb2.StoredSnapshot)
    ticket: console_pb2.GetTicketResponse = field(default_factory=console_pb2.GetTicketResponse)
    fix: console_pb2.ScriptRunInfo = field(default_factory=console_pb2.ScriptRunInfo)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def server_data(self) -> Path:
        return self.folder / "server"

    @property
    def agent_state(self) -> Path:
        return self.folder / "agent"

    def log_path(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def step(self, name: str, action: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            value = action()
        except (
            StepFailed,
            CliError,
            OSError,
            subprocess.SubprocessError,
            demo_fix.FixNotDone,
        ) as error:
            reason = error.message if isinstance(error, CliError) else str(error)
            self._record(Step(name, False, time.monotonic() - started, reason))
            raise StepFailed(f"{name}: {reason}") from None
        self._record(Step(name, True, time.monotonic() - started))
        return value

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        self.progress(step)

    # The steps, in order.

    def run_all(self) -> None:
        self.agent_state.mkdir(mode=0o700)
        server = program("sonde-server", "sonde.server.cli")
        agent = program("sonde-agent", "sonde.agent.cli")
        data = str(self.server_data)
        initialised = self.step(
            "create the server (CA, certificates, database, admin)",
            lambda: self._run_json(
                [*server, "init", "--data", data, *_LOOPBACK_PORT_0, "--json"],
                INIT_TIMEOUT_S,
            ),
        )
        self.admin_token = str(initialised["admin_token"])
        self.ca_file = Path(str(initialised["ca_certificate"]))
        self.step("start sonde-server", lambda: self._start_server(server))
        enrollment = self.step(
            "create an enrollment token",
            lambda: self._run_json([*server, "token", "create", "--data", data, "--json"]),
        )["enrollment"]
        state = str(self.agent_state)
        self.step(
            "enroll the agent (key pair, certificate, pinned CA)",
            lambda: self._run_json([*agent, "enroll", str(enrollment), "--state", state, "--json"]),
        )
        self.step(
            "start sonde-agent", lambda: self._spawn("agent", [*agent, "run", "--state", state])
        )
        with ConsoleClient(self.credentials()) as client:
            self.agent = self.step(
                "wait for the agent to come online", lambda: self._online(client)
            )
            self.snapshot = self.step("run a diagnostic", lambda: self._diagnose(client))
            opened = self.step("open a ticket with the diagnostic", lambda: self._open(client))
            self._fix(client, opened.id)
            self.ticket = self.step(
                "show the ticket",
                lambda: client.call(
                    client.stub.GetTicket, console_pb2.GetTicketRequest(id=opened.id)
                ),
            )

    def _fix(self, client: ConsoleClient, ticket_id: int) -> None:
        """The closed loop: the shipped catalog signed and published, its low-risk cleanup run
        for the ticket, and its verify check collected again (demo_fix.py)."""
        if self.agent.platform not in demo_fix.DEMO_FIXES:
            self._record(
                Step(f"run a fix (none in the catalog for {self.agent.platform})", True, 0)
            )
            return
        bundle = self.server_data / "catalog.bundle"
        key = self.server_data / "pki" / "catalog.key"
        signing = [*program("sonde-catalog", "sonde.catalog.cli"), "sign", "--json"]
        signing += ["--key", str(key), "--out", str(bundle), str(shipped_catalog())]
        self.step(
            "sign the shipped script catalog with the demo's catalog key",
            lambda: self._run_json(signing),
        )
        self.step("publish the signed catalog", lambda: demo_fix.publish(client, bundle))
        asked = self.step(
            "run a low-risk fix: temporary files untouched for a year",
            lambda: demo_fix.wait_ended(
                client, demo_fix.ask(client, self.agent, ticket_id).command.id
            ),
        )
        self.fix = self.step(
            "verify the fix: the agent collects disk.space again",
            lambda: demo_fix.wait_verified(client, asked.command.id),
        )

    def credentials(self) -> Credentials:
        return Credentials(self.console_address, self.admin_token, self.ca_file.read_bytes())

    def _environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _run_json(self, command: list[str], timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
        try:
            finished = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self._environment(),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"no answer within {timeout:.0f}s") from None
        if finished.returncode != 0:
            last = (finished.stderr.strip().splitlines() or ["no message"])[-1]
            raise StepFailed(f"exit status {finished.returncode}: {last}")
        try:
            value = json.loads(finished.stdout)
        except json.JSONDecodeError:
            raise StepFailed(f"printed no JSON: {finished.stdout[:200]!r}") from None
        if not isinstance(value, dict):
            raise StepFailed(f"printed {type(value).__name__}, not a JSON object")
        return value

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = self.log_path(name).open("ab")
        self._logs.append(log)
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._environment(),
        )
        self.processes[name] = process
        return process

    def _start_server(self, server: list[str]) -> None:
        process = self._spawn("server", [*server, "run", "--data", str(self.server_data)])
        listening = self.server_data / "listening.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StepFailed(f"sonde-server exited with status {process.returncode}")
            with contextlib.suppress(OSError, json.JSONDecodeError):
                address = json.loads(listening.read_text())["console_address"]
                if isinstance(address, str) and address:
                    self.console_address = address
                    return
            time.sleep(_POLL_S)
        raise StepFailed(f"{listening} did not appear within {START_TIMEOUT_S:.0f}s")

    def _online(self, client: ConsoleClient) -> console_pb2.Agent:
        deadline = time.monotonic() + ONLINE_TIMEOUT_S
        request = console_pb2.ListAgentsRequest(online_only=True)
        while time.monotonic() < deadline:
            agent_process = self.processes["agent"]
            if agent_process.poll() is not None:
                raise StepFailed(f"sonde-agent exited with status {agent_process.returncode}")
            agents = client.call(client.stub.ListAgents, request).agents
            if agents:
                return agents[0]
            time.sleep(_POLL_S)
        raise StepFailed(f"no agent online within {ONLINE_TIMEOUT_S:.0f}s")

    def _diagnose(self, client: ConsoleClient) -> console_pb2.StoredSnapshot:
        request = console_pb2.RunDiagnosticsRequest(
            agent=self.agent.id, timeout_s=DIAG_AGENT_TIMEOUT_S
        )
        deadline = diag_deadline(DIAG_AGENT_TIMEOUT_S)
        response = client.call(client.stub.RunDiagnostics, request, deadline_s=deadline)
        if not response.HasField("snapshot"):
            command = response.command
            raise StepFailed(
                f"the diagnostic {command.id} is {state_label(command.state)}"
                + (f": {command.reason}" if command.reason else "")
            )
        return response.snapshot

    def _open(self, client: ConsoleClient) -> console_pb2.Ticket:
        request = console_pb2.OpenTicketRequest(
            title=DEMO_TITLE,
            description="Opened by `sonde demo` with the diagnostic taken during the call.",
            channel=console_pb2.TICKET_CHANNEL_PHONE,
            requester="demo user",
            priority=console_pb2.TICKET_PRIORITY_P3,
            agent=self.agent.id,
            snapshot_id=self.snapshot.summary.id,
        )
        return client.call(client.stub.OpenTicket, request).ticket

    def first_dead_process(self) -> str | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return f"sonde-{name} exited with status {process.returncode}"
        return None

    def stop(self) -> None:
        """Stop the agent, then the server (SIGTERM, then kill after a grace period)."""
        for name in ("agent", "server"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        for log in self._logs:
            log.close()
        self._logs.clear()
