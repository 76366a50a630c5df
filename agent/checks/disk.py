"""disk.space and disk.inodes: a drive almost full."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import (
    CRITICAL,
    OK,
    WARNING,
    disk_name,
    finding,
    percent,
    size,
    worse,
)
from sonde.v1 import diagnostics_pb2


def _writable(snapshot: diagnostics_pb2.Snapshot) -> list[diagnostics_pb2.Partition]:
    # Read-only images (snaps, ISO) are always "100 % full" and mean nothing.
    return [p for p in snapshot.disks.partitions if not p.read_only and p.total_bytes > 0]


def _space_severity(
    part: diagnostics_pb2.Partition, ctx: CheckContext
) -> diagnostics_pb2.Severity.ValueType:
    limits = ctx.thresholds
    severity = OK
    if part.used_percent >= limits.disk_used_warning_percent:
        severity = WARNING
    if part.used_percent >= limits.disk_used_critical_percent:
        severity = CRITICAL
    if part.is_system and part.free_bytes < limits.system_disk_free_warning_bytes:
        severity = worse(severity, WARNING)
    if part.is_system and part.free_bytes < limits.system_disk_free_critical_bytes:
        severity = CRITICAL
    return severity


def disk_space(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    partitions = _writable(snapshot) if snapshot.HasField("disks") else []
    if not partitions:
        return None
    rated = [(_space_severity(p, ctx), p.used_percent, p) for p in partitions]
    severity, _, worst = max(rated, key=lambda r: (r[0], r[1]))
    evidence = {
        p.mountpoint: f"{percent(p.used_percent)} used, {size(p.free_bytes)} free of "
        f"{size(p.total_bytes)}"
        for p in partitions
    }
    name = disk_name(worst.mountpoint)
    state = f"{percent(worst.used_percent)} full: {size(worst.free_bytes)} free of "
    state += f"{size(worst.total_bytes)}."
    if severity == OK:
        summary = f"Every disk has room; the fullest, {name[0].lower()}{name[1:]}, is {state}"
    else:
        summary = f"{name} is {state}"
    return finding("disk.space", severity, summary, evidence, fix_for("disk.space", snapshot))


def disk_inodes(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    partitions = [p for p in _writable(snapshot) if p.has_inodes and p.inodes_total > 0]
    if not snapshot.HasField("disks") or not partitions:
        return None
    limits = ctx.thresholds
    worst = max(partitions, key=lambda p: p.inodes_used_percent)
    severity = OK
    if worst.inodes_used_percent >= limits.inodes_used_warning_percent:
        severity = WARNING
    if worst.inodes_used_percent >= limits.inodes_used_critical_percent:
        severity = CRITICAL
    evidence = {
        p.mountpoint: f"{p.inodes_used} of {p.inodes_total} file entries used "
        f"({percent(p.inodes_used_percent)})"
        for p in partitions
    }
    name = disk_name(worst.mountpoint)
    if severity == OK:
        summary = (
            f"Every disk can take new files; the most used file table, on "
            f"{worst.mountpoint}, is {percent(worst.inodes_used_percent)} full."
        )
    else:
        summary = (
            f"{name} has used {percent(worst.inodes_used_percent)} of its file entries: "
            "new files will soon be refused even with free space."
        )
    return finding("disk.inodes", severity, summary, evidence)
