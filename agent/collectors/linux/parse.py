"""Pure parsers for what Linux says in files and command output (tested on recordings)."""

from __future__ import annotations

import re
import socket
import struct

from sonde.agent.collectors.platform_parts import BatteryCapacity, DefaultRoute
from sonde.v1 import diagnostics_pb2

_RTF_UP, _RTF_GATEWAY = 0x1, 0x2
SYSTEMD_STUB_RESOLVER = "127.0.0.53"


def os_release_name(text: str) -> str:
    """PRETTY_NAME (else NAME VERSION) from /etc/os-release."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    pretty = fields.get("PRETTY_NAME")
    if pretty:
        return pretty
    return " ".join(p for p in (fields.get("NAME", ""), fields.get("VERSION", "")) if p)


def cpu_model(cpuinfo: str) -> str:
    """The CPU's marketing name from /proc/cpuinfo (x86 "model name", ARM "Model"/"Hardware")."""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in cpuinfo.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return ""


def default_route(proc_net_route: str) -> DefaultRoute | None:
    """The lowest-metric default route in /proc/net/route (addresses are little-endian hex)."""
    best: tuple[int, DefaultRoute] | None = None
    for line in proc_net_route.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8 or cols[1] != "00000000":
            continue
        flags = int(cols[3], 16)
        if not (flags & _RTF_UP and flags & _RTF_GATEWAY):
            continue
        gateway = socket.inet_ntoa(struct.pack("<L", int(cols[2], 16)))
        metric = int(cols[6])
        if best is None or metric < best[0]:
            best = (metric, DefaultRoute(gateway=gateway, interface=cols[0]))
    return None if best is None else best[1]


def resolv_conf_servers(text: str) -> list[str]:
    servers = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            servers.append(words[1])
    return servers


def systemctl_failed(text: str) -> list[diagnostics_pb2.ServiceStatus]:
    """`systemctl list-units --state=failed --plain --no-legend`: UNIT LOAD ACTIVE SUB DESC."""
    failed = []
    for line in text.splitlines():
        cols = line.replace("\u25cf", " ").split(None, 4)  # older systemd keeps the bullet
        if len(cols) < 4:
            continue
        unit, _load, active, sub = cols[:4]
        failed.append(
            diagnostics_pb2.ServiceStatus(
                name=unit,
                display_name=cols[4].strip() if len(cols) > 4 else unit,
                state="failed" if active == "failed" else active,
                detail=f"{active}/{sub}",
            )
        )
    return failed


def dpkg_packages(text: str) -> list[diagnostics_pb2.SoftwarePackage]:
    """`dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Maintainer}\\n'`."""
    packages = []
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) < 3 or not cols[0].startswith("ii"):
            continue  # removed-but-configured ("rc") and half-installed are not installed
        packages.append(
            diagnostics_pb2.SoftwarePackage(
                name=cols[1], version=cols[2], publisher=cols[3] if len(cols) > 3 else ""
            )
        )
    return packages


def rpm_packages(text: str) -> list[diagnostics_pb2.SoftwarePackage]:
    """`rpm -qa --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{VENDOR}\\t%{INSTALLTIME:date}\\n'`."""
    packages = []
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0] or cols[0].startswith("gpg-pubkey"):
            continue
        vendor = cols[2] if len(cols) > 2 and cols[2] != "(none)" else ""
        packages.append(
            diagnostics_pb2.SoftwarePackage(
                name=cols[0],
                version=cols[1],
                publisher=vendor,
                install_date=cols[3].strip() if len(cols) > 3 else "",
            )
        )
    return packages


def updates_available(text: str) -> tuple[int, int]:
    """(pending, security) from update-notifier's updates-available message."""
    pending = security = 0
    for line in text.splitlines():
        count = re.match(r"\s*(\d+)\s+(?:updates?|packages?)\s+can be (?:applied|updated)", line)
        if count:
            pending = int(count.group(1))
        sec = re.match(
            r"\s*(\d+)\s+(?:of these )?updates? (?:is|are) (?:a )?(?:standard )?security", line
        )
        if sec:
            security = int(sec.group(1))
    return pending, security


def power_supply_capacity(uevent: str) -> BatteryCapacity | None:
    """Design and full capacity from /sys/class/power_supply/BAT*/uevent, in mWh.

    Batteries report energy (uWh) or charge (uAh); charge is converted with the design voltage.
    """
    values: dict[str, str] = {}
    for line in uevent.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.removeprefix("POWER_SUPPLY_")] = value.strip()

    def number(key: str) -> int:
        try:
            return int(values.get(key, "0"))
        except ValueError:
            return 0

    cycles = number("CYCLE_COUNT")
    if number("ENERGY_FULL_DESIGN"):
        design, full = number("ENERGY_FULL_DESIGN"), number("ENERGY_FULL")
        return BatteryCapacity(design // 1000, full // 1000, cycles)
    volts_micro = number("VOLTAGE_MIN_DESIGN") or number("VOLTAGE_NOW")
    if number("CHARGE_FULL_DESIGN") and volts_micro:
        design = number("CHARGE_FULL_DESIGN") * volts_micro // 10**9
        full = number("CHARGE_FULL") * volts_micro // 10**9
        return BatteryCapacity(design, full, cycles)
    return None
