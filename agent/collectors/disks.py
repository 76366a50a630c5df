"""Disk facts: partitions with usage and inodes, IO counters, SMART."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
from psutil._ntuples import sdiskpart

from sonde.agent.collectors import smart
from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.v1 import diagnostics_pb2

DARWIN_DATA_VOLUME = "/System/Volumes/Data"  # where a Mac's free space is (Catalina and later)


def _is_system(mountpoint: str) -> bool:
    if sys.platform == "win32":
        drive = os.environ.get("SYSTEMDRIVE", "C:").rstrip("\\").upper()
        return mountpoint.rstrip("\\").upper() == drive
    if sys.platform == "darwin":  # "/" is the sealed, read-only system volume
        return mountpoint in ("/", DARWIN_DATA_VOLUME)
    return mountpoint == "/"


def partition_facts(part: sdiskpart) -> diagnostics_pb2.Partition | None:
    """One mounted filesystem, or None when it cannot be read (no media, no rights)."""
    try:
        usage = psutil.disk_usage(part.mountpoint)
    except OSError:
        return None  # an empty card reader or a mount we may not read: not a fault
    facts = diagnostics_pb2.Partition(
        device=part.device,
        mountpoint=part.mountpoint,
        filesystem=part.fstype,
        total_bytes=usage.total,
        used_bytes=usage.used,
        free_bytes=usage.free,
        used_percent=usage.percent,
        is_system=_is_system(part.mountpoint),
        read_only="ro" in part.opts.split(","),
    )
    if hasattr(os, "statvfs"):
        try:
            stat = os.statvfs(part.mountpoint)
        except OSError:
            return facts
        # Filesystems without a fixed inode table (btrfs, zfs) report 0 files.
        if stat.f_files > 0:
            used = stat.f_files - stat.f_ffree
            facts.has_inodes = True
            facts.inodes_total = stat.f_files
            facts.inodes_used = used
            facts.inodes_used_percent = round(100.0 * used / stat.f_files, 1)
    return facts


def collect_disks(ctx: CollectContext) -> diagnostics_pb2.DiskFacts:
    facts = diagnostics_pb2.DiskFacts()
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        partition = partition_facts(part)
        if partition is not None:
            facts.partitions.append(partition)
    try:
        counters = psutil.disk_io_counters(perdisk=True) or {}
    except (OSError, RuntimeError):
        counters = {}
    for device, io in sorted(counters.items()):
        if io.read_count == 0 and io.write_count == 0:
            continue  # idle loop and ram devices only add noise
        facts.io.add(
            device=device,
            read_bytes=io.read_bytes,
            write_bytes=io.write_bytes,
            read_count=io.read_count,
            write_count=io.write_count,
            busy_ms=getattr(io, "busy_time", 0),
        )
    try:
        facts.smart.extend(smart.smart_statuses())
    except CollectorUnavailable as unavailable:
        facts.smart_unavailable = unavailable.reason
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        facts.smart_unavailable = f"smartctl did not answer usably: {error}"
    return facts
