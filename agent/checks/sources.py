"""The collectors each check reads: what to collect again to verify a fix (a run's verify
checks), without the cost of a whole diagnostic. `system` is always among them, since a
finding names its fix by the snapshot's platform."""

from __future__ import annotations

from collections.abc import Iterable

# check id -> the collectors whose facts it reads (processes: the top processes shown under
# CPU and memory findings).
CHECK_SOURCES: dict[str, tuple[str, ...]] = {
    "disk.space": ("disks",),
    "disk.inodes": ("disks",),
    "memory.pressure": ("memory", "processes"),
    "cpu.saturation": ("cpu", "processes"),
    "cpu.temperature": ("cpu",),
    "battery.wear": ("battery",),
    "services.failed": ("services",),
    "network.gateway": ("network",),
    "network.dns": ("network",),
    "network.server": ("network",),
    "network.target": ("network",),
    "system.uptime": ("system",),
    "system.clock_skew": ("system",),
    "updates.reboot_pending": ("updates",),
    "windows.update": ("windows_update",),
    "windows.defender": ("antivirus",),
    "windows.bitlocker": ("encryption",),
    "macos.updates": ("updates",),
    "macos.filevault": ("encryption",),
    "events.errors": ("event_log",),
    "print.stuck_jobs": ("printing",),
    "time.sync": ("time_sync",),
    "disk.health": ("disk_health",),
    "network.proxy": ("network",),
    "wifi.signal": ("wifi",),
}


def collectors_for(checks: Iterable[str]) -> list[str]:
    """The collectors to run so that every check in `checks` can conclude, sorted; a name
    that is not a check is taken as a collector's own name (a manifest's verify may list
    either). Unknown names are the caller's to refuse."""
    wanted = {"system"}
    for name in checks:
        wanted.update(CHECK_SOURCES.get(name, (name,)))
    return sorted(wanted)
