"""battery.wear: a battery that no longer holds much of its design charge."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding, percent
from sonde.v1 import diagnostics_pb2


def battery_wear(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    battery = snapshot.battery
    if not snapshot.HasField("battery") or not battery.present or battery.design_capacity_mwh == 0:
        return None
    limits = ctx.thresholds
    severity = OK
    if battery.wear_percent >= limits.battery_wear_warning_percent:
        severity = WARNING
    if battery.wear_percent >= limits.battery_wear_critical_percent:
        severity = CRITICAL
    holds = 100.0 - battery.wear_percent
    evidence = {
        "design capacity": f"{battery.design_capacity_mwh} mWh",
        "full charge capacity": f"{battery.full_capacity_mwh} mWh",
        "wear": percent(battery.wear_percent),
        "cycles": battery.cycle_count,
        "charge": percent(battery.charge_percent),
    }
    summary = f"The battery holds {percent(holds)} of its design capacity"
    summary += "; it is worn and should be replaced." if severity != OK else "."
    return finding("battery.wear", severity, summary, evidence)
