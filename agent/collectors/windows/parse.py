"""Pure parsers for Windows: registry values, `route print`, `ipconfig /all`, powercfg XML.

The agent runs as LocalSystem in session 0: per-user settings are read under HKU\\<SID>.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from xml.etree import ElementTree

from sonde.agent.collectors.platform_parts import BatteryCapacity, DefaultRoute, OsRelease
from sonde.agent.collectors.windows.registry_view import RegistryValue, RegistryView
from sonde.v1 import diagnostics_pb2

CURRENT_VERSION = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
CPU_KEY = r"HKLM\HARDWARE\DESCRIPTION\System\CentralProcessor\0"
TCPIP_INTERFACES = r"HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces"
UNINSTALL = r"Software\Microsoft\Windows\CurrentVersion\Uninstall"
UNINSTALL_ROOTS = (
    rf"HKLM\{UNINSTALL}",
    r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",  # 32-bit
)
INTERNET_SETTINGS = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings"
_USER_SID = re.compile(r"^S-1-5-21-[\d-]+$")  # real accounts, not *_Classes or services
_WINDOWS_11_BUILD = 22000
_ANY_IPV4 = "0.0.0.0"  # noqa: S104 - the default route's destination, not a bind
_ADDRESS = re.compile(r"[0-9a-fA-F:.%]+")

# Automatic services that stop by design once their work is done (trigger or delayed start).
STOPPED_BY_DESIGN = frozenset(
    {
        "gupdate",
        "edgeupdate",
        "MapsBroker",
        "RemoteRegistry",
        "sppsvc",
        "WbioSrvc",
        "TrustedInstaller",
        "clr_optimization_v4.0.30319_32",
        "clr_optimization_v4.0.30319_64",
    }
)


def _text(values: Mapping[str, RegistryValue] | None, name: str) -> str:
    value = (values or {}).get(name)
    if isinstance(value, list):
        return " ".join(value)
    return value.strip() if isinstance(value, str) else ""


def _number(values: Mapping[str, RegistryValue] | None, name: str) -> int | None:
    value = (values or {}).get(name)
    return value if isinstance(value, int) else None


def os_release(view: RegistryView) -> OsRelease:
    """ "Windows 11 Pro 23H2", "10.0.22631.4037" from HKLM\\...\\Windows NT\\CurrentVersion."""
    values = view.values(CURRENT_VERSION) or {}
    product = _text(values, "ProductName") or "Windows"
    build = _text(values, "CurrentBuild") or _text(values, "CurrentBuildNumber")
    # ProductName still says "Windows 10" on Windows 11; the build number tells them apart.
    if build.isdigit() and int(build) >= _WINDOWS_11_BUILD:
        product = product.replace("Windows 10", "Windows 11")
    display = _text(values, "DisplayVersion") or _text(values, "ReleaseId")
    name = f"{product} {display}".strip()
    major = _number(values, "CurrentMajorVersionNumber")
    minor = _number(values, "CurrentMinorVersionNumber")
    ubr = _number(values, "UBR")
    prefix = f"{major}.{minor}." if major is not None and minor is not None else "10.0."
    version = f"{prefix}{build}" + (f".{ubr}" if ubr is not None else "") if build else ""
    return OsRelease(name=name, version=version)


def cpu_model(view: RegistryView) -> str:
    return _text(view.values(CPU_KEY), "ProcessorNameString")


def route_print_default(text: str) -> DefaultRoute | None:
    """The lowest-metric 0.0.0.0/0 route in `route print -4`'s "Active Routes" table.

    Only the numeric columns are read, so a localized Windows parses the same.
    """
    best: tuple[int, DefaultRoute] | None = None
    for line in text.splitlines():
        cols = line.split()
        if len(cols) == 5 and cols[0] == cols[1] == _ANY_IPV4:
            gateway, interface, metric = cols[2], cols[3], cols[4]
            if not metric.isdigit() or not re.fullmatch(r"[\d.]+", gateway):
                continue  # "On-link" rows have no gateway
            if best is None or int(metric) < best[0]:
                best = (int(metric), DefaultRoute(gateway=gateway, interface=interface))
    return None if best is None else best[1]


def _split_servers(value: str) -> list[str]:
    return [s for s in re.split(r"[\s,]+", value) if s]


def dns_servers(view: RegistryView) -> list[str]:
    """Per-interface NameServer (static) or DhcpNameServer under Tcpip\\Parameters\\Interfaces."""
    servers: list[str] = []
    for interface in view.subkeys(TCPIP_INTERFACES):
        values = view.values(rf"{TCPIP_INTERFACES}\{interface}")
        static = _text(values, "NameServer")
        servers.extend(_split_servers(static or _text(values, "DhcpNameServer")))
    return list(dict.fromkeys(servers))


def ipconfig_dns_servers(text: str) -> list[str]:
    """DNS servers from `ipconfig /all`: the labelled line and its indented continuation lines.

    Labels are localized ("DNS Servers", "Serveurs DNS", "DNS-Server"); addresses are not.
    """
    servers: list[str] = []
    collecting = False
    for line in text.splitlines():
        label, sep, value = line.partition(" : ")
        if sep and ". ." in label:
            lowered = label.lower()
            collecting = "dns" in lowered and ("server" in lowered or "serveur" in lowered)
            if collecting:
                servers.extend(_split_servers(value))
        elif collecting and _ADDRESS.fullmatch(line.strip()):
            servers.append(line.strip())
        else:
            collecting = False
    return list(dict.fromkeys(servers))


def user_sids(view: RegistryView) -> list[str]:
    return [sid for sid in view.subkeys("HKU") if _USER_SID.match(sid)]


def proxy_settings(view: RegistryView) -> diagnostics_pb2.ProxySettings | None:
    """The first logged-on user's WinINet proxy (what their browser uses), if one is set."""
    for sid in user_sids(view):
        values = view.values(rf"HKU\{sid}\{INTERNET_SETTINGS}")
        enabled = _number(values, "ProxyEnable") == 1
        server = _text(values, "ProxyServer") if enabled else ""
        pac = _text(values, "AutoConfigURL")
        if not server and not pac:
            continue
        proxy = diagnostics_pb2.ProxySettings(
            no_proxy=_text(values, "ProxyOverride") if server else "",
            auto_config_url=pac,
            source=f"registry HKU\\{sid}",
        )
        # "host:port" for every scheme, or "http=host:port;https=host:port".
        if "=" in server:
            for part in server.split(";"):
                scheme, _, address = part.partition("=")
                if scheme.strip().lower() == "http":
                    proxy.http_proxy = address.strip()
                elif scheme.strip().lower() == "https":
                    proxy.https_proxy = address.strip()
        else:
            proxy.http_proxy = proxy.https_proxy = server
        return proxy
    return None


def installed_software(view: RegistryView) -> list[diagnostics_pb2.SoftwarePackage]:
    """Uninstall keys, 64-bit, 32-bit and per user; never Win32_Product (it repairs MSIs)."""
    roots = [*UNINSTALL_ROOTS, *(rf"HKU\{sid}\{UNINSTALL}" for sid in user_sids(view))]
    found: dict[tuple[str, str], diagnostics_pb2.SoftwarePackage] = {}
    for root in roots:
        for key in view.subkeys(root):
            values = view.values(rf"{root}\{key}")
            name = _text(values, "DisplayName")
            # Components and updates of another product are not software a user installed.
            if not name or _number(values, "SystemComponent") == 1:
                continue
            if _text(values, "ParentKeyName"):
                continue
            version = _text(values, "DisplayVersion")
            found.setdefault(
                (name.lower(), version),
                diagnostics_pb2.SoftwarePackage(
                    name=name,
                    version=version,
                    publisher=_text(values, "Publisher"),
                    install_date=_text(values, "InstallDate"),
                ),
            )
    return list(found.values())


_CBS = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing"
_WU = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate"
_SESSION_MANAGER = r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager"
_NETLOGON = r"HKLM\SYSTEM\CurrentControlSet\Services\Netlogon"
_COMPUTER_NAME = r"HKLM\SYSTEM\CurrentControlSet\Control\ComputerName"


def pending_reboot_flags(view: RegistryView) -> list[str]:
    """Which of the well-known registry flags say Windows waits for a restart."""
    flags = []
    if view.values(rf"{_CBS}\RebootPending") is not None:
        flags.append("Component Based Servicing\\RebootPending")
    if view.values(rf"{_WU}\Auto Update\RebootRequired") is not None:
        flags.append("WindowsUpdate\\Auto Update\\RebootRequired")
    if view.values(rf"{_WU}\Auto Update\PostRebootReporting") is not None:
        flags.append("WindowsUpdate\\Auto Update\\PostRebootReporting")
    if view.subkeys(rf"{_WU}\Services\Pending"):
        flags.append("WindowsUpdate\\Services\\Pending")
    session = view.values(_SESSION_MANAGER) or {}
    for name in ("PendingFileRenameOperations", "PendingFileRenameOperations2"):
        if session.get(name):
            flags.append(f"Session Manager\\{name}")
    volatile = _number(view.values(r"HKLM\SOFTWARE\Microsoft\Updates"), "UpdateExeVolatile")
    if volatile:
        flags.append("Updates\\UpdateExeVolatile")
    netlogon = view.values(_NETLOGON) or {}
    for name in ("JoinDomain", "AvoidSpnSet"):
        if name in netlogon:
            flags.append(f"Netlogon\\{name} (domain join)")
    active = _text(view.values(rf"{_COMPUTER_NAME}\ActiveComputerName"), "ComputerName")
    pending = _text(view.values(rf"{_COMPUTER_NAME}\ComputerName"), "ComputerName")
    if active and pending and active.upper() != pending.upper():
        flags.append(f"ComputerName renamed {active} -> {pending}")
    return flags


def failed_services(
    services: Iterable[Mapping[str, object]],
) -> list[diagnostics_pb2.ServiceStatus]:
    """Automatic services that are not running, from psutil's WindowsService.as_dict()."""
    failed = []
    for service in services:
        name = str(service.get("name", ""))
        if service.get("start_type") != "automatic" or service.get("status") == "running":
            continue
        if name in STOPPED_BY_DESIGN:
            continue
        failed.append(
            diagnostics_pb2.ServiceStatus(
                name=name,
                display_name=str(service.get("display_name", "")),
                state=str(service.get("status", "")),
                start_type="automatic",
                detail=str(service.get("binpath", ""))[:200],
            )
        )
    return failed


def powercfg_battery(xml_text: str) -> BatteryCapacity | None:
    """Design and full-charge capacity (mWh) from `powercfg /batteryreport /xml`."""
    # Written by powercfg on this machine into the agent's own folder, not remote input.
    root = ElementTree.fromstring(xml_text)  # noqa: S314
    for battery in root.iter():
        if not battery.tag.endswith("}Battery") and battery.tag != "Battery":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in battery}
        try:
            design = int(fields.get("DesignCapacity", "0"))
            full = int(fields.get("FullChargeCapacity", "0"))
            cycles = int(fields.get("CycleCount", "0") or 0)
        except ValueError:
            continue
        if design > 0:
            return BatteryCapacity(design_mwh=design, full_mwh=full, cycle_count=cycles)
    return None
