"""wifi.signal: a weak Wi-Fi signal, the usual cause of calls that drop and pages that stall."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding
from sonde.v1 import diagnostics_pb2


def wifi_signal(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    wifi = snapshot.wifi
    if not snapshot.HasField("wifi") or not wifi.connected:
        return None  # wired, or no Wi-Fi: nothing to say
    limits = ctx.thresholds
    severity = OK
    if wifi.signal_percent < limits.wifi_signal_warning_percent:
        severity = WARNING
    if wifi.signal_percent < limits.wifi_signal_critical_percent:
        severity = CRITICAL
    evidence = {
        "network": wifi.ssid,
        "signal": f"{wifi.signal_percent} %",
        "band": f"{wifi.band}, channel {wifi.channel}",
        "radio": wifi.radio_type,
        "rate": f"{wifi.receive_mbps:.0f} Mbit/s down, {wifi.transmit_mbps:.0f} Mbit/s up",
    }
    if severity == OK:
        summary = f"The Wi-Fi signal to {wifi.ssid} is good ({wifi.signal_percent} %)."
    else:
        summary = (
            f"The Wi-Fi signal to {wifi.ssid} is weak ({wifi.signal_percent} %): move closer "
            "to the access point or use a cable."
        )
    return finding("wifi.signal", severity, summary, evidence)
