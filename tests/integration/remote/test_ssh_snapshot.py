"""An agentless snapshot of this machine over a real sshd holds the same checks and findings as
the local agent's, by either path: the agent's collectors sent to python3, or the shell."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import pytest

from sonde.agent.checks import evaluate
from sonde.agent.collectors.runner import CollectContext, collect_snapshot
from sonde.server.remote.agent_payload import collector_payload
from sonde.server.remote.host_keys import TrustedHostKey
from sonde.server.remote.remote_snapshot import collect_remote_snapshot
from sonde.server.remote.shell_collect import sections_of, snapshot_from_output
from sonde.server.remote.ssh import SshShell
from sonde.v1 import diagnostics_pb2
from tests.support.sshd import Sshd

State = diagnostics_pb2.CollectorState
# Severities that hold still between two collections a second apart on a quiet machine.
_STABLE = {
    "disk.space",
    "disk.inodes",
    "network.gateway",
    "network.dns",
    "system.uptime",
    "updates.reboot_pending",
    "services.failed",
}


@pytest.fixture(scope="module")
def local() -> tuple[diagnostics_pb2.Snapshot, list[diagnostics_pb2.Finding]]:
    snapshot = asyncio.run(collect_snapshot(CollectContext()))
    return snapshot, evaluate(snapshot)


def _ids(found: list[diagnostics_pb2.Finding]) -> list[str]:
    return [finding.check for finding in found]


def _stable(found: list[diagnostics_pb2.Finding]) -> dict[str, int]:
    return {finding.check: finding.severity for finding in found if finding.check in _STABLE}


async def _remote(
    sshd: Sshd, trusted: list[TrustedHostKey], **how: object
) -> tuple[diagnostics_pb2.Snapshot, str]:
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        remote = await collect_remote_snapshot(shell, **how)  # type: ignore[arg-type]
    finally:
        await shell.close()
    return remote.snapshot, remote.note


async def test_the_agents_collectors_run_there_from_memory_and_match_the_agent(
    sshd: Sshd,
    trusted: list[TrustedHostKey],
    local: tuple[diagnostics_pb2.Snapshot, list[diagnostics_pb2.Finding]],
) -> None:
    # This interpreter has psutil: the collectors are sent to it, not installed.
    snapshot, note = await _remote(sshd, trusted, python=sys.executable)
    assert note == ""
    assert snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_SSH_PYTHON
    local_snapshot, local_found = local
    assert [c.name for c in snapshot.collectors] == [c.name for c in local_snapshot.collectors]
    assert [c.state for c in snapshot.collectors] == [c.state for c in local_snapshot.collectors]
    found = evaluate(snapshot)
    assert _ids(found) == _ids(local_found)
    assert _stable(found) == _stable(local_found)
    assert snapshot.system.hostname == local_snapshot.system.hostname
    assert snapshot.system.boot_time == local_snapshot.system.boot_time
    assert collector_payload().archive  # built once, reused by the next collection


async def test_the_shell_collection_gives_the_same_checks_and_findings(
    sshd: Sshd,
    trusted: list[TrustedHostKey],
    local: tuple[diagnostics_pb2.Snapshot, list[diagnostics_pb2.Finding]],
) -> None:
    snapshot, note = await _remote(sshd, trusted, shell_only=True)
    assert note == "the shell collection was asked for"
    assert snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_SSH_SHELL
    local_snapshot, local_found = local
    found = evaluate(snapshot)
    assert _ids(found) == _ids(local_found)
    assert _stable(found) == _stable(local_found)
    shell_state = {c.name: c.state for c in snapshot.collectors}
    for report in local_snapshot.collectors:
        if report.name not in {"battery", "processes", "software"}:
            assert shell_state[report.name] == report.state, report.name
    # The facts behind the checks are the agent's, read another way.
    assert snapshot.system.hostname == local_snapshot.system.hostname
    assert snapshot.system.os_name == local_snapshot.system.os_name
    assert abs(snapshot.system.boot_time.seconds - local_snapshot.system.boot_time.seconds) <= 1
    assert snapshot.memory.total_bytes == local_snapshot.memory.total_bytes
    assert snapshot.cpu.logical_cores == local_snapshot.cpu.logical_cores
    assert snapshot.network.default_gateway == local_snapshot.network.default_gateway
    assert list(snapshot.network.dns_servers) == list(local_snapshot.network.dns_servers)
    assert [p.mountpoint for p in snapshot.disks.partitions] == [
        p.mountpoint for p in local_snapshot.disks.partitions
    ]
    for ours, theirs in zip(
        snapshot.disks.partitions, local_snapshot.disks.partitions, strict=True
    ):
        assert ours.total_bytes == theirs.total_bytes
        assert ours.has_inodes == theirs.has_inodes
        assert ours.inodes_total == theirs.inodes_total


async def test_a_python_without_psutil_or_none_at_all_falls_back_to_the_shell(
    sshd: Sshd, trusted: list[TrustedHostKey], tmp_path: Path
) -> None:
    # This interpreter without its site-packages: a Python 3.11+ that has no psutil.
    bare = tmp_path / "python-without-psutil"
    bare.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -S "$@"\n')
    bare.chmod(0o700)
    snapshot, note = await _remote(sshd, trusted, python=str(bare))
    assert note == f"{bare} there has no psutil"
    assert snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_SSH_SHELL
    assert "disk.space" in _ids(evaluate(snapshot))
    missing = tmp_path / "no-such-python3"
    snapshot, note = await _remote(sshd, trusted, python=str(missing))
    assert note == f"{missing} did not start (exit code 127)"
    assert snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_SSH_SHELL


def test_a_shell_output_that_lacks_a_source_reports_it_unavailable() -> None:
    output = "\n@@sonde uname\nLinux\npc-042\n6.1.0\nx86_64\n@@sonde end\n"
    snapshot = snapshot_from_output(output)
    states = {c.name: (c.state, c.reason) for c in snapshot.collectors}
    assert states["system"][0] == State.COLLECTOR_STATE_OK
    assert states["memory"] == (
        State.COLLECTOR_STATE_UNAVAILABLE,
        "/proc/meminfo could not be read over the shell",
    )
    assert states["cpu"][0] == State.COLLECTOR_STATE_UNAVAILABLE
    assert not snapshot.HasField("memory")
    assert "memory.pressure" not in _ids(evaluate(snapshot))
    broken = snapshot_from_output("@@sonde loadavg\nnot numbers\n@@sonde end\n")
    assert {c.name: c.state for c in broken.collectors}["cpu"] == State.COLLECTOR_STATE_FAILED
    assert sections_of("@@sonde a\n1\n@@sonde b\n2\n3\n@@sonde end\n") == {"a": "1", "b": "2\n3"}
