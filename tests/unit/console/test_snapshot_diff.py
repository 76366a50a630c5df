"""What `sonde snapshot diff` reports: facts keyed by what they are, findings by check."""

from __future__ import annotations

from sonde.server.console.snapshot_diff import fact_changes, finding_changes
from sonde.v1 import diagnostics_pb2 as d


def _snapshot(home_free: int, used_percent: float, *, usb: bool = False) -> d.Snapshot:
    partitions = [d.Partition(mountpoint="/home", device="/dev/sda2", free_bytes=home_free)]
    if usb:
        partitions.insert(0, d.Partition(mountpoint="/media/usb", device="/dev/sdb1"))
    return d.Snapshot(
        agent_id="7ry2abcdefghijklmnopqrstuv",
        duration_ms=120 if usb else 80,  # the collection's own bookkeeping: not a change
        memory=d.MemoryFacts(total_bytes=16, used_percent=used_percent),
        disks=d.DiskFacts(partitions=partitions),
    )


def test_facts_are_compared_by_what_they_are_not_where_they_sit() -> None:
    changes = fact_changes(_snapshot(100, 40.0), _snapshot(5, 92.5, usb=True))
    assert [(c.path, c.before, c.after) for c in changes] == [
        ("disks.partitions[/home].free_bytes", "100", "5"),
        ("disks.partitions[/media/usb].device", "", "/dev/sdb1"),
        ("disks.partitions[/media/usb].mountpoint", "", "/media/usb"),
        ("memory.used_percent", "40.0", "92.5"),
    ]
    assert fact_changes(_snapshot(100, 40.0), _snapshot(100, 40.0)) == []


def test_findings_are_new_cleared_worse_better_or_reworded() -> None:
    def finding(check: str, severity: d.Severity.ValueType, summary: str = "s") -> d.Finding:
        return d.Finding(check=check, severity=severity, summary=summary)

    before = [
        finding("disk.space", d.SEVERITY_WARNING),
        finding("memory.pressure", d.SEVERITY_CRITICAL),
        finding("time.sync", d.SEVERITY_WARNING),
        finding("updates.pending", d.SEVERITY_OK, "3 updates"),
    ]
    after = [
        finding("disk.space", d.SEVERITY_CRITICAL),
        finding("memory.pressure", d.SEVERITY_WARNING),
        finding("network.dns", d.SEVERITY_WARNING),
        finding("updates.pending", d.SEVERITY_OK, "5 updates"),
    ]
    assert [(c.check, c.change) for c in finding_changes(before, after)] == [
        ("disk.space", "worse"),
        ("memory.pressure", "better"),
        ("network.dns", "new"),
        ("time.sync", "cleared"),
        ("updates.pending", "changed"),
    ]
