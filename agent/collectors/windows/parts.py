"""The Windows half of the collectors: registry reads, psutil, `route print`, powercfg.

Thin on purpose: each function reads, then hands the values to a pure parser in parse.py.
No WMIC (deprecated, absent on current Windows 11) and never Win32_Product.
"""

from __future__ import annotations

import platform
import tempfile
import threading
import time
from pathlib import Path

import psutil

from sonde.agent.collectors.command import command_output
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.platform_parts import BatteryCapacity, DefaultRoute, OsRelease
from sonde.agent.collectors.windows import command_text, parse
from sonde.agent.collectors.windows.winreg_view import WinregView
from sonde.v1 import diagnostics_pb2

_COMMAND_TIMEOUT_S = 10.0
_BATTERY_CACHE_S = 3600.0  # powercfg takes seconds and capacities change over months
_registry = WinregView()
_battery_lock = threading.Lock()
_battery_cache: tuple[float, BatteryCapacity | None] | None = None


def _run(argv: list[str]) -> str:
    return command_output(argv, _COMMAND_TIMEOUT_S)


def os_release() -> OsRelease:
    release = parse.os_release(_registry)
    return release if release.version else OsRelease(release.name, platform.version())


def cpu_model() -> str:
    return parse.cpu_model(_registry) or platform.processor()


def default_route() -> DefaultRoute | None:
    return parse.route_print_default(_run(["route", "print", "-4"]))


def dns_servers() -> list[str]:
    return parse.dns_servers(_registry) or parse.ipconfig_dns_servers(_run(["ipconfig", "/all"]))


def proxy_settings() -> diagnostics_pb2.ProxySettings | None:
    return parse.proxy_settings(_registry)


def machine_proxy() -> diagnostics_pb2.ProxySettings | None:
    """WinHTTP's proxy (services, Windows Update, Defender), from `netsh winhttp show proxy`."""
    return command_text.winhttp_proxy(_run(["netsh", "winhttp", "show", "proxy"]))


def battery_capacity() -> BatteryCapacity | None:
    global _battery_cache  # noqa: PLW0603 - one cache per agent process
    with _battery_lock:
        if _battery_cache and time.monotonic() - _battery_cache[0] < _BATTERY_CACHE_S:
            return _battery_cache[1]
    if psutil.sensors_battery() is None:
        return None  # a desktop: do not spend seconds in powercfg
    with tempfile.TemporaryDirectory(prefix="sonde-battery-") as folder:
        report = Path(folder) / "battery.xml"
        _run(["powercfg", "/batteryreport", "/xml", "/output", str(report)])
        try:
            capacity = parse.powercfg_battery(report.read_text(encoding="utf-8", errors="replace"))
        except (OSError, SyntaxError) as error:
            raise CollectorUnavailable(f"powercfg gave no battery report: {error}") from error
    with _battery_lock:
        _battery_cache = (time.monotonic(), capacity)
    return capacity


def service_facts() -> diagnostics_pb2.ServiceFacts:
    iterate = getattr(psutil, "win_service_iter", None)
    if iterate is None:
        raise CollectorUnavailable("psutil has no Windows service support here")
    described = []
    for service in iterate():
        try:
            described.append(service.as_dict())
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue  # a service removed while listing, or one we may not query
    return diagnostics_pb2.ServiceFacts(
        manager="windows", failed=parse.failed_services(described), total=len(described)
    )


def software_inventory() -> diagnostics_pb2.SoftwareFacts:
    return diagnostics_pb2.SoftwareFacts(
        source="registry", packages=parse.installed_software(_registry)
    )


def update_facts() -> diagnostics_pb2.UpdateFacts:
    flags = parse.pending_reboot_flags(_registry)
    return diagnostics_pb2.UpdateFacts(
        reboot_required=bool(flags),
        reboot_reasons=flags,
        source="registry",
        pending_updates_known=False,  # a Windows Update search takes minutes: not cheap
    )
