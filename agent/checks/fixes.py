"""The catalog script that fixes a finding, per platform: one table, so that a test can prove
every id a check can name is a script in scripts/<platform>/ (the ids differ where the fix
does). The platform is the snapshot's own (system.os_family), since the server evaluates
snapshots of every platform; a snapshot that does not say names no fix."""

from __future__ import annotations

from sonde.v1 import diagnostics_pb2

# (check id, os_family) -> catalog script id. macOS has no catalog scripts yet.
FIXES: dict[tuple[str, str], str] = {
    ("disk.space", "windows"): "clear-temp-files-windows",
    ("disk.space", "linux"): "clear-temp-files-linux",
    ("network.dns", "windows"): "flush-dns-cache-windows",
    ("network.dns", "linux"): "flush-dns-cache-linux",
    ("services.failed", "windows"): "restart-service-windows",
    ("services.failed", "linux"): "restart-failed-unit",
    ("system.clock_skew", "windows"): "resync-clock-windows",
    ("system.clock_skew", "linux"): "resync-clock-linux",
    ("updates.reboot_pending", "windows"): "reboot-with-notice-windows",
    ("updates.reboot_pending", "linux"): "reboot-with-notice-linux",
    ("memory.pressure", "windows"): "kill-hung-process-windows",
    ("memory.pressure", "linux"): "kill-hung-process-linux",
    ("cpu.saturation", "windows"): "kill-hung-process-windows",
    ("cpu.saturation", "linux"): "kill-hung-process-linux",
    ("windows.update", "windows"): "repair-windows-update",
    ("windows.defender", "windows"): "update-defender-and-scan",
    ("print.stuck_jobs", "windows"): "restart-print-spooler",
    ("time.sync", "windows"): "resync-clock-windows",
}


def fix_for(check: str, snapshot: diagnostics_pb2.Snapshot) -> str:
    """The catalog script id that addresses `check` on the snapshot's platform, or ""."""
    return FIXES.get((check, snapshot.system.os_family), "")
