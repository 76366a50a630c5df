"""Pure parsers for macOS command output: route, scutil, ioreg, launchctl, system_profiler."""

from __future__ import annotations

import re
from typing import Any

from sonde.agent.collectors.macos import profiler
from sonde.agent.collectors.platform_parts import BatteryCapacity, DefaultRoute
from sonde.v1 import diagnostics_pb2

_IOREG_NUMBER = re.compile(r'^\s*\|?\s*"(\w+)"\s*=\s*(-?\d+)\s*$')


def route_get_default(text: str) -> DefaultRoute | None:
    """`route -n get default`: "gateway: 192.168.1.1" and "interface: en0"."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    gateway = fields.get("gateway", "")
    if not gateway:
        return None
    return DefaultRoute(gateway=gateway, interface=fields.get("interface", ""))


def scutil_dns_servers(text: str) -> list[str]:
    """`scutil --dns`: nameserver[n] of the main resolvers, before the scoped section."""
    servers: list[str] = []
    for line in text.splitlines():
        if line.startswith("DNS configuration (for scoped queries)"):
            break
        match = re.match(r"\s*nameserver\[\d+\]\s*:\s*(\S+)", line)
        if match:
            servers.append(match.group(1))
    return list(dict.fromkeys(servers))


def _scutil_dictionary(text: str) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {}
    array_key: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if array_key is not None:
            if stripped == "}":
                array_key = None
                continue
            _, sep, value = stripped.partition(" : ")
            if sep:
                items = fields[array_key]
                if isinstance(items, list):
                    items.append(value.strip())
            continue
        key, sep, value = stripped.partition(" : ")
        if not sep:
            continue
        if value.strip().startswith("<array>"):
            fields[key.strip()] = []
            array_key = key.strip()
        else:
            fields[key.strip()] = value.strip()
    return fields


def scutil_proxy(text: str) -> diagnostics_pb2.ProxySettings | None:
    """`scutil --proxy`: the system proxy, when HTTP/HTTPS proxy or a PAC file is enabled."""
    fields = _scutil_dictionary(text)

    def address(prefix: str) -> str:
        if fields.get(f"{prefix}Enable") != "1":
            return ""
        host, port = fields.get(f"{prefix}Proxy", ""), fields.get(f"{prefix}Port", "")
        return f"{host}:{port}" if host and port else str(host)

    proxy = diagnostics_pb2.ProxySettings(
        http_proxy=address("HTTP"), https_proxy=address("HTTPS"), source="scutil"
    )
    if fields.get("ProxyAutoConfigEnable") == "1":
        proxy.auto_config_url = str(fields.get("ProxyAutoConfigURLString", ""))
    exceptions = fields.get("ExceptionsList", [])
    if isinstance(exceptions, list):
        proxy.no_proxy = ",".join(exceptions)
    if not (proxy.http_proxy or proxy.https_proxy or proxy.auto_config_url):
        return None
    return proxy


def ioreg_battery(text: str) -> BatteryCapacity | None:
    """`ioreg -r -c AppleSmartBattery`: capacities in mAh, converted with the voltage (mV).

    On Apple silicon "MaxCapacity" is a percentage; AppleRawMaxCapacity holds the mAh.
    """
    numbers: dict[str, int] = {}
    for line in text.splitlines():
        match = _IOREG_NUMBER.match(line)
        if match:
            numbers.setdefault(match.group(1), int(match.group(2)))
    design = numbers.get("DesignCapacity", 0)
    full = numbers.get("AppleRawMaxCapacity") or numbers.get("NominalChargeCapacity") or 0
    if not full and numbers.get("MaxCapacity", 0) > 100:
        full = numbers["MaxCapacity"]  # Intel Macs: MaxCapacity is mAh
    millivolts = numbers.get("Voltage", 0)
    if design <= 0 or millivolts <= 0:
        return None
    return BatteryCapacity(
        design_mwh=design * millivolts // 1000,
        full_mwh=full * millivolts // 1000,
        cycle_count=numbers.get("CycleCount", 0),
    )


def launchctl_failed(text: str) -> tuple[list[diagnostics_pb2.ServiceStatus], int]:
    """`launchctl list` ("PID Status Label"): jobs not running whose last exit was non-zero."""
    failed = []
    total = 0
    for line in text.splitlines()[1:]:
        cols = line.split(None, 2)
        if len(cols) != 3:
            continue
        pid, status, label = cols
        total += 1
        if pid == "-" and status not in ("0", "-"):
            code = int(status) if status.lstrip("-").isdigit() else 0
            detail = f"killed by signal {-code}" if code < 0 else f"last exit status {status}"
            failed.append(
                diagnostics_pb2.ServiceStatus(
                    name=label, display_name=label, state="failed", detail=detail
                )
            )
    return failed, total


def system_profiler_apps(text: str | bytes) -> list[diagnostics_pb2.SoftwarePackage]:
    """`system_profiler SPApplicationsDataType -json`, read as profiler reads any report
    (bounded, nesting and wrong types refused or skipped); CollectorUnavailable when it is
    not one."""
    packages = []
    for app in profiler.report_of(text).get("SPApplicationsDataType", []):
        name = _app_text(app, "_name")
        if not name:
            continue
        packages.append(
            diagnostics_pb2.SoftwarePackage(
                name=name,
                version=_app_text(app, "version"),
                publisher=_app_text(app, "obtained_from"),
                install_date=_app_text(app, "lastModified"),
            )
        )
    return packages


def _app_text(app: dict[str, Any], key: str) -> str:
    value = app.get(key)
    return value.strip()[:200] if isinstance(value, str) else ""


def sw_vers(text: str) -> tuple[str, str]:
    """`sw_vers`: ("macOS 14.5", "23F79"); ("", "") when it gives no ProductVersion."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()[:80]
    version = fields.get("ProductVersion", "")
    if not version:
        return "", ""
    return f"{fields.get('ProductName') or 'macOS'} {version}", fields.get("BuildVersion", "")
