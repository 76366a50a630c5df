"""cpu.saturation (sustained, not a momentary spike) and cpu.temperature."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding, percent
from sonde.v1 import diagnostics_pb2

# A sensor's own high mark below this is a firmware placeholder, not a real limit.
_PLAUSIBLE_LIMIT_CELSIUS = 40.0


def cpu_saturation(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    cpu = snapshot.cpu
    if not snapshot.HasField("cpu") or cpu.logical_cores == 0:
        return None
    limits = ctx.thresholds
    per_core_5m = cpu.load_5m / cpu.logical_cores
    per_core_15m = cpu.load_15m / cpu.logical_cores
    severity = OK
    if per_core_5m >= limits.cpu_load_per_core_warning and (
        cpu.usage_percent >= limits.cpu_usage_warning_percent
    ):
        severity = WARNING
    if per_core_15m >= limits.cpu_load_per_core_critical and (
        cpu.usage_percent >= limits.cpu_usage_critical_percent
    ):
        severity = CRITICAL
    evidence = {
        "usage": percent(cpu.usage_percent),
        "load 1/5/15 min": f"{cpu.load_1m:.2f} / {cpu.load_5m:.2f} / {cpu.load_15m:.2f}",
        "logical cores": cpu.logical_cores,
        "sample": f"{cpu.sample_ms} ms",
    }
    if severity == OK:
        summary = (
            f"The processor keeps up: {percent(cpu.usage_percent)} busy, "
            f"load {cpu.load_5m:.1f} over 5 minutes for {cpu.logical_cores} cores."
        )
    else:
        summary = (
            f"The processor is overloaded: {percent(cpu.usage_percent)} busy and a load of "
            f"{cpu.load_5m:.1f} over 5 minutes for {cpu.logical_cores} cores."
        )
    return finding(
        "cpu.saturation", severity, summary, evidence, fix_for("cpu.saturation", snapshot)
    )


def _rate(
    reading: diagnostics_pb2.Temperature, ctx: CheckContext
) -> diagnostics_pb2.Severity.ValueType:
    limits = ctx.thresholds
    critical = limits.cpu_temperature_critical_celsius
    if reading.critical_celsius > _PLAUSIBLE_LIMIT_CELSIUS:
        critical = min(critical, reading.critical_celsius)
    warning = limits.cpu_temperature_warning_celsius
    if reading.high_celsius > _PLAUSIBLE_LIMIT_CELSIUS:
        warning = min(warning, reading.high_celsius)
    if reading.celsius >= critical:
        return CRITICAL
    if reading.celsius >= warning:
        return WARNING
    return OK


def cpu_temperature(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    readings = list(snapshot.cpu.temperatures) if snapshot.HasField("cpu") else []
    if not readings:
        return None
    severity, _, hottest = max(
        ((_rate(r, ctx), r.celsius, r) for r in readings), key=lambda r: (r[0], r[1])
    )
    where = " ".join(part for part in (hottest.sensor, hottest.label) if part)
    evidence = {f"{r.sensor} {r.label}".strip(): f"{r.celsius:.0f} °C" for r in readings}
    if severity == OK:
        summary = (
            f"Temperatures are normal: the hottest sensor ({where}) reads {hottest.celsius:.0f} °C."
        )
    else:
        summary = (
            f"The computer is running hot: {where} reads {hottest.celsius:.0f} °C; "
            "check the fan and the air vents."
        )
    return finding("cpu.temperature", severity, summary, evidence)
