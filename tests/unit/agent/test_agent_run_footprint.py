"""What `sonde-agent run` keeps out of its process while idle (the RSS budget, issue 2).

Deterministic guards, not timings: a real `run` up to its first connection attempt, then
the list of modules and shared libraries it loaded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sonde.agent.cli import COLLECTOR_NAMES
from sonde.agent.collectors.runner import collector_names
from sonde.agent.state import AgentState, save_state, write_private_file
from sonde.identity import agent_id_from_public_key
from tests.support.suite_coverage import unmeasured
from tests.unit.agent.conftest import CA

# OpenSSL (gRPC has its own TLS), SQLite, shutil's compressors, and what only a Collect,
# `enroll` or `collect` needs.
KEPT_OUT = (
    "ssl",
    "_ssl",
    "_hashlib",
    "sqlite3",
    "_sqlite3",
    "shutil",
    "platform",
    "bz2",
    "lzma",
    "sonde.agent.collectors",
    "sonde.agent.checks",
    "sonde.agent.enroll",
    "sonde.agent.collect_cmd",
    "cryptography",
)
KEPT_OUT_LIBRARIES = ("libssl", "libcrypto", "libsqlite3")

_PROBE = """
import atexit, json, os, sys

def report():
    loaded = sorted(name for name, module in sys.modules.items() if module is not None)
    libraries = []
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            libraries = sorted({line.split()[-1] for line in maps if ".so" in line})
    print(json.dumps({"modules": loaded, "libraries": libraries}), flush=True)

atexit.register(report)
from sonde.agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def refusing_address() -> Iterator[str]:
    """A loopback port that is bound but not listening: every connection is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


def _state_folder(tmp_path: Path, test_ca: CA, address: str) -> Path:
    key, certificate = test_ca
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    write_private_file(state_dir / "agent.key", key_pem)
    write_private_file(state_dir / "agent.crt", certificate_pem)
    write_private_file(state_dir / "ca.crt", certificate_pem)
    save_state(
        state_dir,
        # The id the key derives: run refuses a key or certificate that is another agent's.
        AgentState(
            agent_id_from_public_key(key.public_key()),
            (address,),
            address,
            "sonde-test",
            "2026-11-28",
        ),
    )
    return state_dir


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.02)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM and /proc")
def test_run_loads_neither_openssl_sqlite_nor_the_collectors_before_a_collect(
    tmp_path: Path, test_ca: CA, refusing_address: str
) -> None:
    state_dir = _state_folder(tmp_path, test_ca, refusing_address)
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log_file:
        agent = subprocess.Popen(
            [sys.executable, "-c", _PROBE, "run", "--state", str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            # Coverage would load sqlite3 and hashlib into the agent it inspects.
            env={**unmeasured(os.environ), "SONDE_AGENT_LOG_LEVEL": "INFO"},
        )
    try:
        # The Hello is built and the stream opened before the refusal is logged.
        _wait_for(lambda: "reconnecting in" in log_path.read_text(), 20, log_path.name)
        agent.send_signal(signal.SIGTERM)
        out, _ = agent.communicate(timeout=20)
    finally:
        agent.kill()
        agent.wait()
    assert agent.returncode == 0, log_path.read_text()
    report = json.loads(out)
    loaded = [
        name
        for name in report["modules"]
        if any(name == kept or name.startswith(kept + ".") for kept in KEPT_OUT)
    ]
    assert loaded == []
    libraries = [lib for lib in report["libraries"] if any(k in lib for k in KEPT_OUT_LIBRARIES)]
    assert libraries == []
    # The probe saw a real agent: the gRPC core and the outbox were loaded.
    assert "grpc._cython.cygrpc" in report["modules"]
    assert "sonde.agent.journal" in report["modules"]
    assert (state_dir / "outbox").is_dir()


def test_the_hello_names_every_registered_collector_in_registry_order() -> None:
    assert list(COLLECTOR_NAMES) == collector_names()
