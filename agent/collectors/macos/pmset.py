"""`pmset -g batt` into the battery's charge, power source and time left.

    Now drawing from 'Battery Power'
     -InternalBattery-0 (id=15925347)	82%; discharging; 5:48 remaining present: true

A Mac without a battery prints the first line only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sonde.agent.collectors.errors import CollectorUnavailable

_SOURCE = re.compile(r"Now drawing from '(?P<source>[^']+)'")
_BATTERY = re.compile(
    r"-InternalBattery-\d+.*?\t?\s*(?P<percent>\d{1,3})%;\s*(?P<state>[^;]+);\s*(?P<left>[^\n]*)"
)
_LEFT = re.compile(r"(\d+):(\d{2}) remaining")


@dataclass(frozen=True)
class PowerState:
    on_battery_power: bool
    battery_present: bool
    charge_percent: float = 0.0
    state: str = ""  # charging, discharging, charged, finishing charge, AC attached
    seconds_left: int = -1  # -1: no estimate, or on AC power


def power_state(text: str) -> PowerState:
    source = _SOURCE.search(text)
    if source is None:
        raise CollectorUnavailable("pmset -g batt did not say where the power comes from")
    on_battery = source.group("source") == "Battery Power"
    battery = _BATTERY.search(text)
    if battery is None:
        return PowerState(on_battery_power=on_battery, battery_present=False)
    left = _LEFT.search(battery.group("left"))
    seconds = (int(left.group(1)) * 60 + int(left.group(2))) * 60 if left else -1
    return PowerState(
        on_battery_power=on_battery,
        battery_present=True,
        charge_percent=float(min(int(battery.group("percent")), 100)),
        state=battery.group("state").strip()[:40],
        seconds_left=seconds if on_battery and seconds > 0 else -1,
    )
