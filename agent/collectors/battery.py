"""Battery facts: charge, plugged in, time left, and wear from design vs full capacity."""

from __future__ import annotations

import psutil

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.platform_parts import BatteryCapacity, PlatformParts
from sonde.v1 import diagnostics_pb2


def wear_percent(capacity: BatteryCapacity) -> float:
    """How much of its design capacity the battery has lost (0 when it holds it all)."""
    if capacity.design_mwh <= 0:
        return 0.0
    return round(max(0.0, 100.0 * (1 - capacity.full_mwh / capacity.design_mwh)), 1)


def collect_battery(ctx: CollectContext, parts: PlatformParts) -> diagnostics_pb2.BatteryFacts:
    read = getattr(psutil, "sensors_battery", None)
    if read is None:
        raise CollectorUnavailable("psutil cannot read the battery on this OS")
    state = read()
    try:
        capacity = parts.battery_capacity()
        wear_unavailable = "" if capacity else "the OS gives no design and full capacities"
    except CollectorUnavailable as unavailable:
        capacity, wear_unavailable = None, unavailable.reason
    if state is None and capacity is None:
        return diagnostics_pb2.BatteryFacts(present=False)  # a desktop: nothing to worry about
    facts = diagnostics_pb2.BatteryFacts(present=True, seconds_left=-1)
    if state is not None:
        facts.charge_percent = round(float(state.percent), 1)
        facts.plugged_in = bool(state.power_plugged)
        if not state.power_plugged and isinstance(state.secsleft, int) and state.secsleft >= 0:
            facts.seconds_left = state.secsleft
    if capacity is not None:
        facts.design_capacity_mwh = capacity.design_mwh
        facts.full_capacity_mwh = capacity.full_mwh
        facts.cycle_count = capacity.cycle_count
        facts.condition = capacity.condition
        facts.wear_percent = wear_percent(capacity)
        if capacity.design_mwh <= 0:
            facts.wear_unavailable = "the battery does not report its design capacity"
    else:
        facts.wear_unavailable = wear_unavailable
    return facts
