"""A real Sonde deployment for tests: sonde-server and sonde-agent as separate processes.

Everything listens on 127.0.0.1 with ports the OS picks; readiness is polled with deadlines.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from sonde.v1 import console_pb2, console_pb2_grpc
from tests.support import suite_coverage

T = TypeVar("T")

ROLES = {"l1": console_pb2.ROLE_L1, "l2": console_pb2.ROLE_L2, "admin": console_pb2.ROLE_ADMIN}

PROGRAMS = {
    "sonde-server": "sonde.server.cli",
    "sonde-agent": "sonde.agent.cli",
    "sonde": "sonde.server.console.cli",
    "sonde-catalog": "sonde.catalog.cli",
}


def program(name: str) -> list[str]:
    """The command line of an installed Sonde program (the console script beside python)."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    module = PROGRAMS[name]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def run(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*program(name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=suite_coverage.child_env(name, env),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05
) -> T:
    """Poll `probe` until it returns something other than None/False, or fail saying what."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Process:
    """A running program with its output captured to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)


def start(
    name: str, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None
) -> Process:
    handle = log_path.open("ab")
    popen = subprocess.Popen(
        [*program(name), *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=suite_coverage.child_env(name, env),
    )
    handle.close()
    return Process(name, popen, log_path)


@dataclass
class Deployment:
    """One initialised data folder, its server process, and helpers to drive it."""

    root: Path
    heartbeat_interval_s: int = 1
    db_url: str | None = None
    admin_token: str = ""
    server: Process | None = None
    console_address: str = ""
    agent_address: str = ""
    agents: list[Process] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "server"

    @property
    def ca_file(self) -> Path:
        return self.data / "pki" / "ca.crt"

    def init(self, *, own_keys: bool = False) -> None:
        """The data folder as `sonde-server init` makes it. On SQLite it is a copy of this
        process's one folder initialised that way (keys, CA, admin token and database, see
        _initialised_template), unless `own_keys`: a test with two servers whose keys must
        differ gives its second one keys of its own."""
        if not self.db_url and not own_keys and not self.data.exists():
            template, self.admin_token = _initialised_template()
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.copytree(template, self.data, symlinks=True)
            return
        self.admin_token = _init(self.data, self.db_url)

    def start_server(self, *extra: str, same_ports: bool = False) -> None:
        """Start sonde-server; `same_ports` reuses the addresses of the previous run."""
        listening = self.data / "listening.json"
        listening.unlink(missing_ok=True)
        args = ["run", "--data", str(self.data), *extra]
        args += ["--heartbeat-interval", str(self.heartbeat_interval_s)]
        if same_ports:
            args += ["--listen", self.console_address, "--agent-listen", self.agent_address]
        self.server = start("sonde-server", args, self.root / "server.log")

        def ready() -> dict[str, str] | None:
            assert self.server is not None
            if not self.server.alive():
                raise AssertionError(f"sonde-server exited:\n{self.server.log()}")
            try:
                return dict(json.loads(listening.read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                return None

        addresses = wait_for("sonde-server to listen", ready, timeout=30)
        self.console_address = addresses["console_address"]
        self.agent_address = addresses["agent_address"]

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        if self.server is not None:
            self.server.stop()

    # -- tokens, users, agents -------------------------------------------------------------

    def _serving(self) -> bool:
        return self.server is not None and self.server.alive() and bool(self.console_address)

    def enrollment(self, uses: int = 1) -> str:
        """An enrollment string for `uses` agents, valid an hour: asked of the running server
        as its admin (`sonde token create`), else made in the data folder (`sonde-server token
        create`). tests/e2e/test_fleet_admin.py runs both commands themselves."""
        if self._serving():
            with self.console() as console:
                reply = console.CreateEnrollmentToken(
                    console_pb2.CreateEnrollmentTokenRequest(uses=uses, ttl_s=3600), timeout=30
                )
            return reply.enrollment
        done = run(
            "sonde-server", "token", "create", "--data", str(self.data),
            "--uses", str(uses), "--ttl", "1h", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["enrollment"])

    def add_user(self, name: str, role: str) -> str:
        """A technician with `role` (l1, l2, admin) and their API token: made by the running
        server for its admin (`sonde user add`), else in the data folder (`sonde-server user
        add`)."""
        if self._serving():
            with self.console() as console:
                reply = console.CreateUser(
                    console_pb2.CreateUserRequest(name=name, role=ROLES[role]), timeout=30
                )
            return reply.api_token
        done = run(
            "sonde-server", "user", "add", name, "--role", role, "--data", str(self.data), "--json"
        )
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["api_token"])

    def enroll_agent(self, state: Path, enrollment: str | None = None) -> str:
        done = run(
            "sonde-agent",
            "enroll",
            enrollment or self.enrollment(),
            "--state",
            str(state),
            "--json",
        )
        assert done.returncode == 0, f"enroll failed: {done.stdout}\n{done.stderr}"
        return str(json.loads(done.stdout)["agent_id"])

    def start_agent(self, state: Path, *extra: str) -> Process:
        log_path = state.parent / f"{state.name}.log"
        agent = start("sonde-agent", ["run", "--state", str(state), *extra], log_path)
        self.agents.append(agent)
        return agent

    # -- the console API -------------------------------------------------------------------

    @contextmanager
    def console(self, token: str | None = None) -> Iterator[console_pb2_grpc.ConsoleServiceStub]:
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(self.ca_file.read_bytes()),
            grpc.access_token_call_credentials(token or self.admin_token),
        )
        with grpc.secure_channel(self.console_address, credentials) as channel:
            yield console_pb2_grpc.ConsoleServiceStub(channel)

    def agent_record(self, agent_id: str) -> console_pb2.Agent | None:
        with self.console() as console:
            reply = console.ListAgents(
                console_pb2.ListAgentsRequest(include_revoked=True), timeout=5
            )
        return next((a for a in reply.agents if a.id == agent_id), None)

    def wait_online(self, agent_id: str, timeout: float = 10.0) -> console_pb2.Agent:
        def online() -> console_pb2.Agent | None:
            record = self.agent_record(agent_id)
            return record if record is not None and record.online else None

        return wait_for(f"agent {agent_id} online", online, timeout=timeout)

    def wait_offline(self, agent_id: str, timeout: float = 10.0) -> console_pb2.Agent:
        def offline() -> console_pb2.Agent | None:
            record = self.agent_record(agent_id)
            return record if record is not None and not record.online else None

        return wait_for(f"agent {agent_id} offline", offline, timeout=timeout)

    def cli_env(self, token: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SONDE_SERVER=self.console_address,
            SONDE_TOKEN=token or self.admin_token,
            SONDE_CA=str(self.ca_file),
        )
        return env

    def sonde(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """The technician CLI run against this server (as admin unless `token`)."""
        return run("sonde", *args, env=self.cli_env(token), timeout=120)

    def sonde_json(self, *args: str, token: str | None = None) -> dict[str, Any]:
        """`sonde ARGS --json`, which must succeed: its document."""
        done = self.sonde(*args, "--json", token=token)
        assert done.returncode == 0, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
        value = json.loads(done.stdout)
        assert isinstance(value, dict)
        return value


def _init(data: Path, db_url: str | None) -> str:
    """`sonde-server init` of `data`: the admin token it printed."""
    args = ["init", "--data", str(data), "--json"]
    args += ["--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"]
    if db_url:
        args += ["--db", db_url]
    done = run("sonde-server", *args)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["admin_token"])


@functools.cache
def _initialised_template() -> tuple[Path, str]:
    """One data folder made by `sonde-server init` in this process (an xdist worker), and its
    admin token: a test's server starts from a copy of it, the same bytes a fresh init writes
    (about 3 s of CPU saved a server). Removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="sonde-init-template-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root / "server", _init(root / "server", None)


@contextmanager
def deployment(
    root: Path,
    *,
    heartbeat_interval_s: int = 1,
    db_url: str | None = None,
    own_keys: bool = False,
) -> Iterator[Deployment]:
    """An initialised, running server; stopped (with its agents) on exit. `own_keys`: keys
    and CA of its own rather than those of this process's other servers (Deployment.init)."""
    sonde = Deployment(root, heartbeat_interval_s=heartbeat_interval_s, db_url=db_url)
    sonde.init(own_keys=own_keys)
    sonde.start_server()
    try:
        yield sonde
    finally:
        sonde.stop()
