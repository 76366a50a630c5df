"""disk.health: a physical disk that says it is failing or worn out. Its data should be
backed up before anything else is tried."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding, worse
from sonde.v1 import diagnostics_pb2


def _rate(
    disk: diagnostics_pb2.PhysicalDiskHealth, ctx: CheckContext
) -> tuple[diagnostics_pb2.Severity.ValueType, str]:
    limits = ctx.thresholds
    statuses = {s.lower() for s in disk.operational_status}
    if "predictive failure" in statuses:
        return CRITICAL, "predicts its own failure"
    if disk.health_status.lower() == "unhealthy":
        return CRITICAL, "reports itself unhealthy"
    severity, why = OK, ""
    if disk.health_status.lower() == "warning":
        severity, why = WARNING, "reports a health warning"
    if disk.read_errors_uncorrected or disk.write_errors_uncorrected:
        errors = disk.read_errors_uncorrected + disk.write_errors_uncorrected
        severity, why = worse(severity, WARNING), f"has {errors} uncorrected read/write errors"
    if disk.wear_percent >= limits.disk_wear_warning_percent:
        severity, why = worse(severity, WARNING), f"has used {disk.wear_percent} % of its life"
    if disk.wear_percent >= limits.disk_wear_critical_percent:
        severity, why = CRITICAL, f"has used {disk.wear_percent} % of its life"
    return severity, why


def disk_health(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    disks = list(snapshot.disk_health.disks) if snapshot.HasField("disk_health") else []
    if not disks:
        return None
    evidence: dict[str, object] = {}
    for disk in disks:
        shown = f"{disk.health_status}, {', '.join(disk.operational_status) or 'no status'}"
        if disk.counters_known:
            shown += (
                f"; wear {disk.wear_percent} %, {disk.temperature_celsius} °C, "
                f"{disk.power_on_hours} h on, "
                f"{disk.read_errors_uncorrected} uncorrected read errors"
            )
        evidence[disk.name or "disk"] = shown
    if snapshot.disk_health.counters_unavailable:
        evidence["reliability counters"] = snapshot.disk_health.counters_unavailable
    rated = [(*_rate(disk, ctx), disk) for disk in disks]
    severity, why, worst = max(rated, key=lambda r: r[0])
    if severity == OK:
        summary = f"Every disk reports itself healthy ({len(disks)} checked)."
    else:
        summary = f"The disk {worst.name} {why}: back up its data now, then replace it."
    return finding("disk.health", severity, summary, evidence)
