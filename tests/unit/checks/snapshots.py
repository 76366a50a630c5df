"""Hand-built snapshots for check tests: only the facts a check reads."""

from __future__ import annotations

from sonde.v1 import diagnostics_pb2

GIB = 1024**3
Severity = diagnostics_pb2.Severity
OK, WARNING, CRITICAL = Severity.SEVERITY_OK, Severity.SEVERITY_WARNING, Severity.SEVERITY_CRITICAL


def with_partition(
    used_percent: float,
    *,
    total: int = 500 * GIB,
    free: int | None = None,
    mountpoint: str = "/data",
    is_system: bool = False,
    read_only: bool = False,
    inodes_percent: float | None = None,
) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    free_bytes = free if free is not None else int(total * (100 - used_percent) / 100)
    part = snapshot.disks.partitions.add(
        device="/dev/x", mountpoint=mountpoint, filesystem="ext4", total_bytes=total,
        used_bytes=total - free_bytes, free_bytes=free_bytes, used_percent=used_percent,
        is_system=is_system, read_only=read_only,
    )  # fmt: skip
    if inodes_percent is not None:
        part.has_inodes = True
        part.inodes_total = 1_000_000
        part.inodes_used = int(10_000 * inodes_percent)
        part.inodes_used_percent = inodes_percent
    return snapshot


def severity_name(value: int) -> str:
    return diagnostics_pb2.Severity.Name(value)  # type: ignore[arg-type]
