"""The Linux collectors on this machine agree with what the OS says by other means."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from sonde.agent.collectors.runner import CollectContext, collect_snapshot, collector_names
from sonde.v1 import diagnostics_pb2

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads this Linux machine")
OK = diagnostics_pb2.CollectorState.COLLECTOR_STATE_OK


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> diagnostics_pb2.Snapshot:
    state = tmp_path_factory.mktemp("state")
    return asyncio.run(collect_snapshot(CollectContext(state_dir=state)))


def _meminfo_kib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/meminfo")


def test_every_collector_reports_once(snapshot: diagnostics_pb2.Snapshot) -> None:
    assert [c.name for c in snapshot.collectors] == collector_names()
    for report in snapshot.collectors:
        assert report.state != diagnostics_pb2.CollectorState.COLLECTOR_STATE_UNSPECIFIED
        if report.state != OK:
            assert report.reason, f"{report.name} says {report.state} without a reason"
            assert "Traceback" not in report.reason


def test_system_agrees_with_the_os(snapshot: diagnostics_pb2.Snapshot) -> None:
    assert snapshot.system.hostname == socket.gethostname()
    assert snapshot.system.os_family == "linux"
    assert snapshot.system.os_version == os.uname().release
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(snapshot.system.uptime_seconds - uptime) < 30


def test_memory_total_agrees_with_proc_meminfo(snapshot: diagnostics_pb2.Snapshot) -> None:
    assert snapshot.memory.total_bytes == _meminfo_kib("MemTotal") * 1024
    assert snapshot.memory.swap_total_bytes == _meminfo_kib("SwapTotal") * 1024


def test_cpu_agrees_with_the_os(snapshot: diagnostics_pb2.Snapshot) -> None:
    assert snapshot.cpu.logical_cores == os.cpu_count()
    assert len(snapshot.cpu.per_core_percent) == os.cpu_count()
    assert 0.0 <= snapshot.cpu.usage_percent <= 100.0
    assert snapshot.cpu.sample_ms >= 90
    assert snapshot.cpu.temperatures or snapshot.cpu.temperatures_unavailable


def test_root_disk_agrees_with_statvfs(snapshot: diagnostics_pb2.Snapshot) -> None:
    root = next(p for p in snapshot.disks.partitions if p.mountpoint == "/")
    stat = os.statvfs("/")
    assert root.is_system
    assert root.total_bytes == stat.f_blocks * stat.f_frsize
    # Usage moves while the suite writes files: allow 256 MiB of drift.
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    assert abs(root.used_bytes - used) < 256 * 1024**2
    assert root.has_inodes == (stat.f_files > 0)
    assert root.inodes_total == stat.f_files


def test_network_lists_interfaces_and_the_gateway_of_proc_net_route(
    snapshot: diagnostics_pb2.Snapshot,
) -> None:
    names = {nic.name for nic in snapshot.network.interfaces}
    assert names == set(os.listdir("/sys/class/net"))
    has_default = any(
        line.split()[1] == "00000000"
        for line in Path("/proc/net/route").read_text().splitlines()[1:]
    )
    assert bool(snapshot.network.default_gateway) == has_default


def test_processes_count_and_top_lists(snapshot: diagnostics_pb2.Snapshot) -> None:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    assert abs(snapshot.processes.total - len(pids)) < 50
    assert 0 < len(snapshot.processes.top_by_memory) <= 10
    rss = [p.rss_bytes for p in snapshot.processes.top_by_memory]
    assert rss == sorted(rss, reverse=True)
    assert snapshot.processes.sample_ms >= 90


def test_software_matches_dpkg_when_present(snapshot: diagnostics_pb2.Snapshot) -> None:
    status = Path("/var/lib/dpkg/status")
    if not status.exists():
        pytest.skip("no dpkg database here")
    installed = status.read_text(errors="replace").count("Status: install ok installed")
    assert snapshot.software.source == "dpkg"
    assert snapshot.software.total == installed


def test_services_say_why_without_systemd(snapshot: diagnostics_pb2.Snapshot) -> None:
    report = next(c for c in snapshot.collectors if c.name == "services")
    if Path("/run/systemd/system").is_dir():
        assert report.state == OK
        assert snapshot.services.manager == "systemd"
    else:
        assert report.state == diagnostics_pb2.CollectorState.COLLECTOR_STATE_UNAVAILABLE
        assert "systemd" in report.reason
