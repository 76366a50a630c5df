"""Every collector, listed explicitly: name, the Snapshot field it fills, function, time limit.

Nothing registers itself on import. The OS-specific half (linux/, windows/, macos/) is
imported here, lazily, only on the OS it serves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial

from google.protobuf.message import Message

from sonde.agent.collectors import (
    battery,
    cpu,
    disks,
    memory,
    network,
    processes,
    services,
    software,
    system,
    updates,
)
from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.platform_parts import PlatformParts


@dataclass(frozen=True)
class Collector:
    name: str
    field: str  # the Snapshot field it fills
    collect: Callable[[CollectContext], Message]
    timeout_s: float  # its own limit; the context's limit applies when shorter
    # The context's limit does not shorten it: it waits on one PowerShell run that takes
    # longer than a collector usually may (the Windows-only collectors).
    own_limit: bool = False


def platform_parts() -> PlatformParts:
    if sys.platform == "win32":
        from sonde.agent.collectors.windows import parts as windows_parts

        return windows_parts
    if sys.platform == "darwin":
        from sonde.agent.collectors.macos import parts as macos_parts

        return macos_parts
    # Linux, and the other POSIX systems as far as /proc and /etc take them.
    from sonde.agent.collectors.linux import parts as linux_parts

    return linux_parts


def windows_only_collectors() -> tuple[Collector, ...]:
    """The facts only collect.ps1 gives (Defender, BitLocker, the event log, printing, ...):
    one PowerShell run serves them all (windows/collection.py)."""
    from sonde.agent.collectors.windows.document import WINDOWS_ONLY_FIELDS

    return tuple(
        Collector(name, name, partial(_windows_field, field=name), 30.0, own_limit=True)
        for name in WINDOWS_ONLY_FIELDS
    )


def _windows_field(ctx: CollectContext, field: str) -> Message:
    from sonde.agent.collectors.windows import collection

    return collection.collect_field(field)


def macos_only_collectors() -> tuple[Collector, ...]:
    """FileVault (fdesetup status): the encryption field, which Linux does not fill."""
    from sonde.agent.collectors.macos import parts as macos_parts

    return (Collector("encryption", "encryption", lambda ctx: macos_parts.encryption_facts(), 3.0),)


@cache
def registered_collectors() -> tuple[Collector, ...]:
    parts = platform_parts()
    extra: tuple[Collector, ...] = ()
    if sys.platform == "win32":
        extra = windows_only_collectors()
    elif sys.platform == "darwin":
        extra = macos_only_collectors()
    return (
        Collector("system", "system", partial(system.collect_system, parts=parts), 2.0),
        Collector("cpu", "cpu", partial(cpu.collect_cpu, parts=parts), 2.0),
        Collector("memory", "memory", memory.collect_memory, 1.0),
        Collector("disks", "disks", disks.collect_disks, 5.0),
        Collector("battery", "battery", partial(battery.collect_battery, parts=parts), 3.0),
        Collector("network", "network", partial(network.collect_network, parts=parts), 5.0),
        Collector("processes", "processes", processes.collect_processes, 3.0),
        Collector("services", "services", partial(services.collect_services, parts=parts), 5.0),
        Collector("software", "software", partial(software.collect_software, parts=parts), 30.0),
        Collector("updates", "updates", partial(updates.collect_updates, parts=parts), 3.0),
        *extra,
    )
