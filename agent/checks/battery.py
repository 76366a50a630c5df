"""battery.wear: a battery that no longer holds much of its design charge, or that the OS
itself says needs service (macOS's condition: "Service Recommended")."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding, percent, worse
from sonde.v1 import diagnostics_pb2

# macOS's own words for a battery that is fine ("Good" in system_profiler's JSON).
_FINE_CONDITIONS = frozenset({"", "normal", "good"})
_REPLACE_NOW = frozenset({"replace now", "service battery"})


def _condition_severity(condition: str) -> diagnostics_pb2.Severity.ValueType:
    said = condition.strip().lower()
    if said in _FINE_CONDITIONS:
        return OK
    return CRITICAL if said in _REPLACE_NOW else WARNING


def battery_wear(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    battery = snapshot.battery
    if not snapshot.HasField("battery") or not battery.present:
        return None
    wear_known = battery.design_capacity_mwh > 0 or (
        battery.condition != "" and not battery.wear_unavailable
    )
    if not wear_known and not battery.condition:
        return None
    limits = ctx.thresholds
    severity = OK
    if wear_known and battery.wear_percent >= limits.battery_wear_warning_percent:
        severity = WARNING
    if wear_known and battery.wear_percent >= limits.battery_wear_critical_percent:
        severity = CRITICAL
    said = _condition_severity(battery.condition)
    severity = worse(severity, said)
    evidence: dict[str, object] = {}
    if battery.design_capacity_mwh:
        evidence["design capacity"] = f"{battery.design_capacity_mwh} mWh"
        evidence["full charge capacity"] = f"{battery.full_capacity_mwh} mWh"
    if wear_known:
        evidence["wear"] = percent(battery.wear_percent)
    if battery.condition:
        evidence["condition"] = battery.condition
    evidence["cycles"] = battery.cycle_count
    evidence["charge"] = percent(battery.charge_percent)
    holds = 100.0 - battery.wear_percent
    if wear_known:
        summary = f"The battery holds {percent(holds)} of its design capacity"
    else:
        summary = "The battery's capacity is not known"
    if said != OK:
        summary += (
            f"; macOS says its condition is {battery.condition!r} after "
            f"{battery.cycle_count} charge cycles: it should be serviced or replaced."
        )
    elif severity != OK:
        summary += "; it is worn and should be replaced."
    else:
        summary += "."
    return finding("battery.wear", severity, summary, evidence)
