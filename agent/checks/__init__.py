"""Checks: pure functions from a Snapshot's facts to Findings. The server reuses them.

Every check is listed here explicitly. A check returns one Finding when its facts are
present and None when the collector behind them did not run or was unavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sonde.agent.checks import (
    battery,
    cpu,
    disk,
    disk_health,
    events,
    memory,
    network,
    printing,
    proxy,
    security,
    services,
    system,
    time_sync,
    updates,
    wifi,
)
from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.thresholds import Thresholds
from sonde.v1 import diagnostics_pb2

__all__ = ["CHECKS", "CheckContext", "Thresholds", "evaluate", "worst_severity"]

Check = Callable[[diagnostics_pb2.Snapshot, CheckContext], diagnostics_pb2.Finding | None]

# (stable id, check); the id is also the Finding.check the function returns.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("disk.space", disk.disk_space),
    ("disk.inodes", disk.disk_inodes),
    ("memory.pressure", memory.memory_pressure),
    ("cpu.saturation", cpu.cpu_saturation),
    ("cpu.temperature", cpu.cpu_temperature),
    ("battery.wear", battery.battery_wear),
    ("services.failed", services.services_failed),
    ("network.gateway", network.network_gateway),
    ("network.dns", network.network_dns),
    ("network.server", network.network_server),
    ("network.target", network.network_target),
    ("system.uptime", system.system_uptime),
    ("system.clock_skew", system.system_clock_skew),
    ("updates.reboot_pending", updates.reboot_pending),
    ("windows.update", updates.windows_update),
    ("windows.defender", security.windows_defender),
    ("windows.bitlocker", security.windows_bitlocker),
    ("events.errors", events.events_errors),
    ("print.stuck_jobs", printing.print_stuck_jobs),
    ("time.sync", time_sync.time_sync),
    ("disk.health", disk_health.disk_health),
    ("network.proxy", proxy.network_proxy),
    ("wifi.signal", wifi.wifi_signal),
    ("macos.updates", updates.macos_updates),
    ("macos.filevault", security.macos_filevault),
)


_DEFAULT_CONTEXT = CheckContext()  # frozen, so sharing one is safe


def evaluate(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext = _DEFAULT_CONTEXT
) -> list[diagnostics_pb2.Finding]:
    """Every check's Finding for this snapshot, in CHECKS order."""
    findings = []
    for _check_id, check in CHECKS:
        result = check(snapshot, ctx)
        if result is not None:
            findings.append(result)
    return findings


def worst_severity(
    findings: Sequence[diagnostics_pb2.Finding],
) -> diagnostics_pb2.Severity.ValueType:
    """The most serious severity among the findings; SEVERITY_OK when there are none."""
    worst = diagnostics_pb2.Severity.SEVERITY_OK
    for found in findings:
        worst = max(worst, found.severity)
    return worst
