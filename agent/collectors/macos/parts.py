"""The macOS half of the collectors: sw_vers, route, scutil, ioreg, launchctl, system_profiler.

Thin on purpose: each function runs a command, then hands the text to parse.py.
"""

from __future__ import annotations

import json
import platform

from sonde.agent.collectors.command import command_output
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.macos import parse
from sonde.agent.collectors.platform_parts import BatteryCapacity, DefaultRoute, OsRelease
from sonde.v1 import diagnostics_pb2

_COMMAND_TIMEOUT_S = 10.0
_INVENTORY_TIMEOUT_S = 120.0  # system_profiler is slow, but runs in the background


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
    return parse.ioreg_battery(_run(["ioreg", "-r", "-c", "AppleSmartBattery"]))


def service_facts() -> diagnostics_pb2.ServiceFacts:
    failed, total = parse.launchctl_failed(_run(["launchctl", "list"]))
    return diagnostics_pb2.ServiceFacts(manager="launchd", failed=failed, total=total)


def software_inventory() -> diagnostics_pb2.SoftwareFacts:
    text = _run(["system_profiler", "-json", "SPApplicationsDataType"], _INVENTORY_TIMEOUT_S)
    try:
        report = json.loads(text)
    except ValueError as error:
        raise CollectorUnavailable(f"system_profiler gave no usable list: {error}") from error
    return diagnostics_pb2.SoftwareFacts(
        source="system_profiler", packages=parse.system_profiler_apps(report)
    )


def update_facts() -> diagnostics_pb2.UpdateFacts:
    raise CollectorUnavailable(
        "macOS has no cheap pending-update flag (softwareupdate --list contacts Apple "
        "and takes minutes)"
    )
