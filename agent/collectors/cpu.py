"""CPU facts: model, cores, load, usage over a short window, frequency, temperatures."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.platform_parts import PlatformParts
from sonde.agent.collectors.sampling import SAMPLE_WINDOW_S
from sonde.v1 import diagnostics_pb2

# Guest time is already counted in user time on Linux; psutil does the same.
_NOT_WORK = ("idle", "iowait", "guest", "guest_nice")


def busy_percent(before: Any, after: Any) -> float:
    """Share of CPU time spent working between two psutil cpu_times samples."""

    def split(sample: Any) -> tuple[float, float]:
        fields = sample._asdict()
        total = sum(v for k, v in fields.items() if k not in ("guest", "guest_nice"))
        idle = sum(fields.get(k, 0.0) for k in _NOT_WORK if k not in ("guest", "guest_nice"))
        return total, idle

    total_before, idle_before = split(before)
    total_after, idle_after = split(after)
    elapsed = total_after - total_before
    if elapsed <= 0:
        return 0.0
    busy = elapsed - (idle_after - idle_before)
    return round(min(100.0, max(0.0, 100.0 * busy / elapsed)), 1)


def temperatures_of(sensors: dict[str, Sequence[Any]]) -> list[diagnostics_pb2.Temperature]:
    """psutil.sensors_temperatures() entries as messages, skipping sensors reading 0."""
    found = []
    for sensor, readings in sorted(sensors.items()):
        for reading in readings:
            if not reading.current:
                continue
            found.append(
                diagnostics_pb2.Temperature(
                    sensor=sensor,
                    label=reading.label or "",
                    celsius=float(reading.current),
                    high_celsius=float(reading.high or 0.0),
                    critical_celsius=float(reading.critical or 0.0),
                )
            )
    return found


def _temperatures(facts: diagnostics_pb2.CpuFacts) -> None:
    read = getattr(psutil, "sensors_temperatures", None)
    if read is None:
        facts.temperatures_unavailable = (
            "this OS gives no CPU temperature without a vendor tool"
            if sys.platform in ("win32", "darwin")
            else "psutil cannot read temperatures on this OS"
        )
        return
    try:
        sensors = read()
    except (OSError, RuntimeError) as error:
        facts.temperatures_unavailable = f"temperature sensors unreadable: {error}"
        return
    facts.temperatures.extend(temperatures_of(sensors))
    if not facts.temperatures:
        facts.temperatures_unavailable = (
            "no temperature sensor is exposed (virtual machine or no hwmon driver)"
        )


def collect_cpu(ctx: CollectContext, parts: PlatformParts) -> diagnostics_pb2.CpuFacts:
    before_total = psutil.cpu_times()
    before_cores = psutil.cpu_times(percpu=True)
    started = time.perf_counter()
    facts = diagnostics_pb2.CpuFacts(
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 0,
        physical_cores=psutil.cpu_count(logical=False) or 0,
    )
    try:
        facts.model = parts.cpu_model()
    except CollectorUnavailable:
        facts.model = ""
    facts.load_1m, facts.load_5m, facts.load_15m = psutil.getloadavg()
    try:
        frequency = psutil.cpu_freq()
    except (OSError, NotImplementedError):
        frequency = None
    if frequency is not None:
        facts.frequency_mhz = round(frequency.current, 1)
    _temperatures(facts)
    # Sleep only what is left of the window once the cheap reads above are done.
    time.sleep(max(0.0, SAMPLE_WINDOW_S - (time.perf_counter() - started)))
    after_total = psutil.cpu_times()
    after_cores = psutil.cpu_times(percpu=True)
    facts.sample_ms = round((time.perf_counter() - started) * 1000)
    facts.usage_percent = busy_percent(before_total, after_total)
    facts.per_core_percent.extend(
        busy_percent(b, a) for b, a in zip(before_cores, after_cores, strict=False)
    )
    return facts
