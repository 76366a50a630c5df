"""disk.space, disk.inodes, memory.pressure, cpu.saturation, cpu.temperature at their limits."""

from __future__ import annotations

import pytest

from sonde.agent.checks import CheckContext, evaluate
from sonde.agent.checks.cpu import cpu_saturation, cpu_temperature
from sonde.agent.checks.disk import disk_inodes, disk_space
from sonde.agent.checks.memory import memory_pressure
from sonde.v1 import diagnostics_pb2
from tests.unit.checks.snapshots import CRITICAL, GIB, OK, WARNING, with_partition

CTX = CheckContext()


@pytest.mark.parametrize(
    ("used", "expected"),
    [(89.9, OK), (90.0, WARNING), (94.9, WARNING), (95.0, CRITICAL), (100.0, CRITICAL)],
)
def test_disk_space_by_used_share(used: float, expected: int) -> None:
    snapshot = with_partition(used)
    snapshot.system.os_family = "linux"
    found = disk_space(snapshot, CTX)
    assert found is not None
    assert found.severity == expected
    assert found.fix_script_id == ("" if expected == OK else "clear-temp-files-linux")


@pytest.mark.parametrize(
    ("free", "expected"),
    [(10 * GIB, OK), (10 * GIB - 1, WARNING), (2 * GIB, WARNING), (2 * GIB - 1, CRITICAL)],
)
def test_system_drive_by_free_bytes(free: int, expected: int) -> None:
    snapshot = with_partition(50, total=237 * GIB, free=free, mountpoint="C:\\", is_system=True)
    found = disk_space(snapshot, CTX)
    assert found is not None
    assert found.severity == expected


def test_disk_space_sentence_reads_like_explorer() -> None:
    snapshot = with_partition(
        97, total=237 * GIB, free=int(3.1 * GIB), mountpoint="C:\\", is_system=True
    )
    found = disk_space(snapshot, CTX)
    assert found is not None
    assert found.summary == "Drive C: is 97 % full: 3.1 GiB free of 237 GiB."
    assert {e.key for e in found.evidence} == {"C:\\"}


def test_read_only_images_and_missing_disks_give_no_finding() -> None:
    assert disk_space(with_partition(100, read_only=True), CTX) is None
    assert disk_space(diagnostics_pb2.Snapshot(), CTX) is None
    assert disk_inodes(diagnostics_pb2.Snapshot(), CTX) is None


@pytest.mark.parametrize(("percent", "expected"), [(89.9, OK), (90.0, WARNING), (95.0, CRITICAL)])
def test_disk_inodes(percent: float, expected: int) -> None:
    found = disk_inodes(with_partition(10, inodes_percent=percent), CTX)
    assert found is not None
    assert found.severity == expected


def test_no_inode_table_no_inode_finding() -> None:
    assert disk_inodes(with_partition(10), CTX) is None


def _memory(used: float, swap_total: int = 0, swap_used: float = 0.0) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    total = 16 * GIB
    snapshot.memory.CopyFrom(
        diagnostics_pb2.MemoryFacts(
            total_bytes=total, used_percent=used, used_bytes=int(total * used / 100),
            available_bytes=int(total * (100 - used) / 100),
            swap_total_bytes=swap_total, swap_used_percent=swap_used,
        )
    )  # fmt: skip
    return snapshot


@pytest.mark.parametrize(
    ("used", "swap_total", "swap_used", "expected"),
    [
        (89.9, 0, 0.0, OK),
        (90.0, 0, 0.0, WARNING),
        (95.0, 0, 0.0, CRITICAL),
        (60.0, 4 * GIB, 79.9, OK),
        (60.0, 4 * GIB, 80.0, WARNING),
        (60.0, 0, 99.0, OK),  # no swap configured: the percentage means nothing
    ],
)
def test_memory_pressure(used: float, swap_total: int, swap_used: float, expected: int) -> None:
    found = memory_pressure(_memory(used, swap_total, swap_used), CTX)
    assert found is not None
    assert found.severity == expected


def test_memory_missing() -> None:
    assert memory_pressure(diagnostics_pb2.Snapshot(), CTX) is None


def _cpu(usage: float, load5: float, load15: float, cores: int = 4) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.cpu.CopyFrom(
        diagnostics_pb2.CpuFacts(
            logical_cores=cores, usage_percent=usage, load_1m=load5, load_5m=load5,
            load_15m=load15, sample_ms=100,
        )
    )  # fmt: skip
    return snapshot


@pytest.mark.parametrize(
    ("usage", "load5", "load15", "expected"),
    [
        (100.0, 3.9, 3.9, OK),  # a spike: the 5-minute load is below the cores
        (79.9, 8.0, 8.0, OK),  # loaded earlier, idle now
        (80.0, 4.0, 1.0, WARNING),
        (95.0, 8.0, 5.9, WARNING),
        (95.0, 8.0, 6.0, CRITICAL),
    ],
)
def test_cpu_saturation_needs_sustained_load_and_current_use(
    usage: float, load5: float, load15: float, expected: int
) -> None:
    found = cpu_saturation(_cpu(usage, load5, load15), CTX)
    assert found is not None
    assert found.severity == expected


def _temperatures(*readings: tuple[float, float, float]) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.cpu.logical_cores = 4
    for celsius, high, critical in readings:
        snapshot.cpu.temperatures.add(
            sensor="coretemp", label="Package id 0", celsius=celsius,
            high_celsius=high, critical_celsius=critical,
        )  # fmt: skip
    return snapshot


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        ((84.9, 0, 0), OK),
        ((85.0, 0, 0), WARNING),
        ((95.0, 0, 0), CRITICAL),
        ((80.0, 80.0, 100.0), WARNING),  # the sensor's own high mark is lower
        ((90.0, 80.0, 90.0), CRITICAL),
        ((60.0, 20.0, 0), OK),  # a placeholder high mark is ignored
    ],
)
def test_cpu_temperature(reading: tuple[float, float, float], expected: int) -> None:
    found = cpu_temperature(_temperatures(reading, (40.0, 0, 0)), CTX)
    assert found is not None
    assert found.severity == expected


def test_no_sensors_no_temperature_finding() -> None:
    snapshot = _cpu(10, 0.1, 0.1)
    snapshot.cpu.temperatures_unavailable = "no hwmon driver"
    assert cpu_temperature(snapshot, CTX) is None


def test_an_empty_snapshot_gives_no_findings() -> None:
    assert evaluate(diagnostics_pb2.Snapshot()) == []
