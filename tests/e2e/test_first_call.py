"""The main job end to end: enroll a workstation, see it online, diagnose it, attach to a ticket.

Real processes on loopback with mTLS; the snapshot's facts are checked against this machine.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import grpc
import pytest

from sonde.v1 import console_pb2, diagnostics_pb2
from tests.support.deployment import Deployment


def meminfo_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_enrolled_agent_is_online_within_two_seconds(sonde: Deployment, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    agent_id = sonde.enroll_agent(state)
    started = time.monotonic()
    sonde.start_agent(state)
    record = sonde.wait_online(agent_id, timeout=2.0)
    assert time.monotonic() - started <= 2.0
    assert record.hostname == socket.gethostname()
    assert record.platform == "linux"
    assert record.agent_version


def test_diagnostic_agrees_with_the_os_and_lands_on_the_ticket(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    agent_id = sonde.enroll_agent(state)
    sonde.start_agent(state)
    sonde.wait_online(agent_id)
    with sonde.console() as console:
        ticket = console.OpenTicket(
            console_pb2.OpenTicketRequest(
                title="PC is slow since this morning",
                channel=console_pb2.TICKET_CHANNEL_PHONE,
                requester="Marie Dupont",
                priority=console_pb2.TICKET_PRIORITY_P3,
                agent=agent_id[:8],
            ),
            timeout=10,
        ).ticket
        reply = console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=socket.gethostname(), ticket_id=ticket.id),
            timeout=60,
        )
        timeline = console.GetTicket(console_pb2.GetTicketRequest(id=ticket.id), timeout=10)

    stored = reply.snapshot
    snapshot = stored.snapshot
    assert stored.summary.agent_id == agent_id
    assert stored.summary.ticket_id == ticket.id
    assert snapshot.system.hostname == socket.gethostname()
    assert snapshot.cpu.logical_cores == os.cpu_count()
    assert snapshot.memory.total_bytes == meminfo_total_bytes()

    root = next(p for p in snapshot.disks.partitions if p.mountpoint == "/")
    statvfs = os.statvfs("/")
    assert root.total_bytes == statvfs.f_blocks * statvfs.f_frsize
    used = (statvfs.f_blocks - statvfs.f_bfree) * statvfs.f_frsize
    assert abs(root.used_bytes - used) <= max(used * 0.01, 64 * 1024 * 1024)

    checks = {finding.check for finding in stored.findings}
    assert {"disk.space", "memory.pressure", "system.clock_skew"} <= checks
    assert all(f.severity != diagnostics_pb2.SEVERITY_UNSPECIFIED for f in stored.findings)

    diagnostics = [
        event
        for event in timeline.timeline
        if event.kind == console_pb2.TICKET_EVENT_KIND_DIAGNOSTIC
    ]
    assert [event.snapshot_id for event in diagnostics] == [stored.summary.id]
    assert diagnostics[0].findings, "the timeline shows what the diagnostic found"


def test_agent_killed_shows_offline_within_the_heartbeat_window(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    agent_id = sonde.enroll_agent(state)
    agent = sonde.start_agent(state)
    sonde.wait_online(agent_id)
    agent.kill()
    window = sonde.heartbeat_interval_s * 2.5 + 1
    record = sonde.wait_offline(agent_id, timeout=window)
    assert record.last_seen_at.seconds > 0


def test_offline_agent_with_no_queue_gets_unavailable_saying_since_when(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    agent_id = sonde.enroll_agent(state)
    agent = sonde.start_agent(state)
    sonde.wait_online(agent_id)
    agent.stop()
    sonde.wait_offline(agent_id)
    with sonde.console() as console, pytest.raises(grpc.RpcError) as refused:
        console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=agent_id, no_queue=True), timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "offline since" in (refused.value.details() or "")
