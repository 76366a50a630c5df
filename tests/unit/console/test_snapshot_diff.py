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
    changes = fact_changes(_snapshot(100, 40.0), _snapshot(5, 92.5, usb=True)).changes
    assert [(c.path, c.before, c.after) for c in changes] == [
        ("disks.partitions[/home].free_bytes", "100", "5"),
        ("disks.partitions[/media/usb].device", "", "/dev/sdb1"),
        ("disks.partitions[/media/usb].mountpoint", "", "/media/usb"),
        ("memory.used_percent", "40.0", "92.5"),
    ]
    assert fact_changes(_snapshot(100, 40.0), _snapshot(100, 40.0)).changes == []


def test_what_moves_at_every_collection_is_left_out_unless_asked_for() -> None:
    def moving(load: float, sent: int, used: float, free: int, agent_rss: int) -> d.Snapshot:
        snapshot = _snapshot(free, used)
        snapshot.cpu.load_1m = load
        snapshot.network.interfaces.add(name="eth0", bytes_sent=sent)
        snapshot.processes.top_by_memory.add(name="sonde-agent", rss_bytes=agent_rss)
        return snapshot

    before = moving(0.4, 1_000, 40.0, 100_000, 30_000_000)
    after = moving(1.9, 9_000, 41.0, 98_000, 31_000_000)  # jitter: 40 -> 41 %, 2 % less free
    quiet = fact_changes(before, after)
    assert quiet.changes == []
    assert quiet.left_out == 5
    everything = fact_changes(before, after, everything=True)
    assert [c.path for c in everything.changes] == [
        "cpu.load_1m",
        "disks.partitions[/home].free_bytes",
        "memory.used_percent",
        "network.interfaces[eth0].bytes_sent",
        "processes.top_by_memory[sonde-agent].rss_bytes",
    ]
    assert everything.left_out == 0
    # A real move of a gauge is listed: the disk went from 100 kB free to 50.
    freed = fact_changes(before, moving(1.9, 9_000, 41.0, 50_000, 31_000_000))
    assert [c.path for c in freed.changes] == ["disks.partitions[/home].free_bytes"]


def test_findings_are_new_cleared_worse_better_or_reworded() -> None:
    def finding(check: str, severity: d.Severity.ValueType, summary: str = "s") -> d.Finding:
        return d.Finding(check=check, severity=severity, summary=summary)

    before = [
        finding("disk.space", d.SEVERITY_WARNING),
        finding("memory.pressure", d.SEVERITY_CRITICAL),
        finding("time.sync", d.SEVERITY_WARNING),
        finding("updates.pending", d.SEVERITY_OK, "3 updates"),
        finding("disk.inodes", d.SEVERITY_WARNING, "91 % of inodes used"),
    ]
    after = [
        finding("disk.space", d.SEVERITY_CRITICAL),
        finding("memory.pressure", d.SEVERITY_WARNING),
        finding("network.dns", d.SEVERITY_WARNING),
        finding("updates.pending", d.SEVERITY_OK, "5 updates"),  # still fine: not a change
        finding("disk.inodes", d.SEVERITY_WARNING, "97 % of inodes used"),
    ]
    assert [(c.check, c.change) for c in finding_changes(before, after)] == [
        ("disk.inodes", "changed"),
        ("disk.space", "worse"),
        ("memory.pressure", "better"),
        ("network.dns", "new"),
        ("time.sync", "cleared"),
    ]
