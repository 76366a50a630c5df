"""A real sonde-server for a benchmark: init in a temporary folder, run, tokens, console API.

Ports are chosen by the OS on 127.0.0.1; readiness is polled with a deadline.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from bench import children
from sonde.v1 import console_pb2, console_pb2_grpc

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Poll `probe` until it returns a value, or fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def sonde_server(*args: str, timeout: float = 60) -> str:
    """Run a sonde-server admin command; its stdout, or an error with its stderr."""
    done = subprocess.run(
        [*children.program("sonde-server"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sonde-server {args[0]} failed ({done.returncode}): {done.stderr}")
    return done.stdout


@dataclass
class LocalServer:
    root: Path
    heartbeat_interval_s: int = 15
    admin_token: str = ""
    console_address: str = ""
    agent_address: str = ""
    pid: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.root / "server"

    @property
    def ca_pem(self) -> bytes:
        return (self.data / "pki" / "ca.crt").read_bytes()

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def init(self) -> None:
        out = sonde_server(
            "init", "--data", str(self.data), "--json",
            "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0",
        )  # fmt: skip
        self.admin_token = json.loads(out)["admin_token"]

    def start(self) -> None:
        listening = self.data / "listening.json"
        argv = [*children.program("sonde-server"), "run", "--data", str(self.data)]
        argv += ["--heartbeat-interval", str(self.heartbeat_interval_s)]
        self.process = process = children.start(argv, self.log_path)

        def ready() -> dict[str, str] | None:
            if process.poll() is not None:
                raise RuntimeError(f"sonde-server exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                return dict(json.loads(listening.read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                return None

        found = wait_for("sonde-server to listen", ready, timeout=30, interval=0.05)
        self.console_address = found["console_address"]
        self.agent_address = found["agent_address"]
        self.pid = int(found["pid"])

    def stop(self) -> None:
        if self.process is not None:
            children.stop(self.process)

    def enrollment(self, uses: int = 1, ttl: str = "1h") -> str:
        out = sonde_server(
            "token", "create", "--data", str(self.data), "--uses", str(uses), "--ttl", ttl, "--json"
        )
        return str(json.loads(out)["enrollment"])

    def console_credentials(self) -> grpc.ChannelCredentials:
        return grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(self.ca_pem),
            grpc.access_token_call_credentials(self.admin_token),
        )

    def online_ids(self) -> set[str]:
        with grpc.secure_channel(self.console_address, self.console_credentials()) as channel:
            reply = console_pb2_grpc.ConsoleServiceStub(channel).ListAgents(
                console_pb2.ListAgentsRequest(online_only=True), timeout=30
            )
        return {agent.id for agent in reply.agents if agent.online}
