"""The macOS half of the collectors: sw_vers, route, scutil, ioreg, launchctl, system_profiler.

Thin on purpose: each function runs a command, then hands the text to parse.py.
"""

from __future__ import annotations

import platform
from dataclasses import replace

from sonde.agent.collectors.command import command_output, run_command
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.macos import filevault, parse, profiler, software_update
from sonde.agent.collectors.platform_parts import BatteryCapacity, DefaultRoute, OsRelease
from sonde.v1 import diagnostics_pb2

_COMMAND_TIMEOUT_S = 10.0
_INVENTORY_TIMEOUT_S = 120.0  # system_profiler is slow, but runs in the background
_POWER_TIMEOUT_S = 1.5  # within the battery collector's 3 s, after ioreg
_UPDATES_TIMEOUT_S = 2.5  # within the updates collector's 3 s


def _run(argv: list[str], timeout: float = _COMMAND_TIMEOUT_S) -> str:
    return command_output(argv, timeout)


def os_release() -> OsRelease:
    version = platform.mac_ver()[0]
    return OsRelease(name=f"macOS {version}".strip(), version=platform.release())


def cpu_model() -> str:
    return _run(["sysctl", "-n", "machdep.cpu.brand_string"]).strip() or platform.processor()


def default_route() -> DefaultRoute | None:
    return parse.route_get_default(_run(["route", "-n", "get", "default"]))


def dns_servers() -> list[str]:
    return parse.scutil_dns_servers(_run(["scutil", "--dns"]))


def proxy_settings() -> diagnostics_pb2.ProxySettings | None:
    return parse.scutil_proxy(_run(["scutil", "--proxy"]))


def machine_proxy() -> diagnostics_pb2.ProxySettings | None:
    raise CollectorUnavailable("macOS has one proxy setting, scutil's, read as the user's")


def battery_capacity() -> BatteryCapacity | None:
    """ioreg's capacities, with the condition and cycle count System Information shows."""
    capacity = parse.ioreg_battery(_run(["ioreg", "-r", "-c", "AppleSmartBattery"]))
    try:
        text = _run(["system_profiler", "-json", "SPPowerDataType"], _POWER_TIMEOUT_S)
        battery = profiler.battery_facts(profiler.report_of(text))
    except CollectorUnavailable:
        return capacity  # the capacities alone, as before
    if capacity is None or not battery.present:
        return capacity
    return replace(
        capacity,
        cycle_count=capacity.cycle_count or battery.cycle_count,
        condition=battery.condition,
    )


def service_facts() -> diagnostics_pb2.ServiceFacts:
    failed, total = parse.launchctl_failed(_run(["launchctl", "list"]))
    return diagnostics_pb2.ServiceFacts(manager="launchd", failed=failed, total=total)


def software_inventory() -> diagnostics_pb2.SoftwareFacts:
    text = _run(["system_profiler", "-json", "SPApplicationsDataType"], _INVENTORY_TIMEOUT_S)
    return diagnostics_pb2.SoftwareFacts(
        source="system_profiler", packages=parse.system_profiler_apps(text)
    )


def update_facts() -> diagnostics_pb2.UpdateFacts:
    """The updates macOS found at its own last check (--no-scan: asking Apple again takes
    minutes); "No new software available." is printed on stderr."""
    done = run_command(["softwareupdate", "--list", "--no-scan"], _UPDATES_TIMEOUT_S)
    return software_update.update_facts(done.stdout + "\n" + done.stderr)


def encryption_facts() -> diagnostics_pb2.EncryptionFacts:
    done = run_command(["fdesetup", "status"], _COMMAND_TIMEOUT_S)
    return filevault.encryption_facts(done.stdout + "\n" + done.stderr)
