"""What `sonde-server run` refuses at start: a data folder another server holds, a busy port."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonde.v1 import console_pb2
from tests.support.deployment import Deployment, run


def _folder_state(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file but the lock, with its modification time and contents."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "server.lock"
    }


def test_a_second_server_on_the_same_data_folder_exits_at_once_and_changes_nothing(
    sonde: Deployment,
) -> None:
    assert sonde.server is not None
    first = sonde.server.popen.pid
    # The first server held still (SIGSTOP), its lock still held: its own upkeep (the
    # replica lease, the audit checkpoint, SQLite's WAL) writes on its schedule, and two CI
    # runs caught it between the two readings. What changes now is the second one's doing.
    os.kill(first, signal.SIGSTOP)
    try:
        time.sleep(0.2)  # a write under way when it stopped is in the files before reading
        before = _folder_state(sonde.data)
        assert "listening.json" in before

        started = time.monotonic()
        # The very addresses the first one listens on: gRPC's SO_REUSEPORT used to share them.
        second = run(
            "sonde-server", "run", "--data", str(sonde.data),
            "--listen", sonde.console_address, "--agent-listen", sonde.agent_address,
            timeout=30,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        after = _folder_state(sonde.data)
    finally:
        os.kill(first, signal.SIGCONT)

    assert second.returncode == 3, second.stderr
    assert (
        f"sonde-server: the data folder {sonde.data} is in use by another sonde-server "
        f"(pid {sonde.server.popen.pid}); stop it first"
    ) in second.stderr
    assert "alembic" not in second.stderr  # refused before the migration
    assert elapsed < 10
    assert after == before  # listening.json included

    assert sonde.server.alive()
    with sonde.console() as console:
        reply = console.ListAgents(console_pb2.ListAgentsRequest(), timeout=10)
    assert list(reply.agents) == []


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process listens on, with SO_REUSEPORT as gRPC sets by default."""
    reuse_port = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port is None:
        pytest.skip("SO_REUSEPORT does not exist on this platform")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("flag", "purpose"),
    [("--listen", "the console"), ("--agent-listen", "agents"), ("--package-listen", "packages")],
)
def test_a_server_on_a_busy_port_exits_with_the_reason(
    tmp_path: Path, busy_port: int, flag: str, purpose: str
) -> None:
    sonde = Deployment(tmp_path)
    sonde.init()
    msi = tmp_path / "sonde-agent-0.1.0.msi"
    msi.write_bytes(b"an MSI")  # --package-listen serves one

    done = run(
        "sonde-server",
        "run",
        "--data",
        str(sonde.data),
        flag,
        f"127.0.0.1:{busy_port}",
        *(["--msi", str(msi)] if flag == "--package-listen" else []),
    )

    assert done.returncode == 4, done.stderr
    expected = (
        f"sonde-server: cannot listen on 127.0.0.1:{busy_port} for {purpose}: "
        "address already in use"
    )
    assert expected in done.stderr.splitlines()
    assert not (sonde.data / "listening.json").exists()
