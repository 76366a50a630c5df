"""`system_profiler -json SPHardwareDataType SPSoftwareDataType SPStorageDataType
SPPowerDataType SPNetworkDataType` into Snapshot facts: system, disks, battery, network.

The report is read like any other untrusted document: bounded in size, each data type read
on its own, a value of the wrong type skipped. A data type that is missing or malformed
makes only the facts it feeds unavailable (CollectorUnavailable with the reason), never an
exception of another kind.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.v1 import diagnostics_pb2

MAX_REPORT_BYTES = 16 * 1024 * 1024
_MAX_TEXT = 200
MAX_COUNT = 2**63 - 1  # the largest a Snapshot's counters hold; a larger value is a lie
_UPTIME = re.compile(r"up\s+(\d{1,6}):(\d{1,2}):(\d{1,2}):(\d{1,2})")
_PERCENT = re.compile(r"^\s*(\d{1,3})\s*%\s*$")
# The volume whose free space is the Mac's: the Data volume of the boot container (Catalina
# and later), or "/" when it is writable (older systems, where they are one volume).
DATA_VOLUME = "/System/Volumes/Data"

Report = dict[str, list[dict[str, Any]]]


def report_of(text: str | bytes) -> Report:
    """The data types of a report; CollectorUnavailable when it is not one."""
    if len(text) > MAX_REPORT_BYTES:
        raise CollectorUnavailable(
            f"system_profiler's report is {len(text):,} bytes, over {MAX_REPORT_BYTES:,}"
        )
    try:
        document = json.loads(text)
    except ValueError as error:
        raise CollectorUnavailable(f"system_profiler gave no JSON report: {error}") from None
    except RecursionError:
        raise CollectorUnavailable("system_profiler's report is nested too deeply") from None
    if not isinstance(document, dict):
        raise CollectorUnavailable("system_profiler's report is not a JSON object")
    report: Report = {}
    for name, items in document.items():
        if isinstance(name, str) and isinstance(items, list):
            report[name] = [item for item in items if isinstance(item, dict)]
    return report


def _items(report: Report, data_type: str) -> list[dict[str, Any]]:
    items = report.get(data_type)
    if not items:
        raise CollectorUnavailable(f"system_profiler's report has no {data_type}")
    return items


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return value.strip()[:_MAX_TEXT] if isinstance(value, str) else ""


def _number(item: dict[str, Any], key: str) -> int:
    value = item.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return 0


def _strings(item: dict[str, Any], key: str) -> list[str]:
    """A list of strings; anything else (a number, one string) is no list at all."""
    value = item.get(key)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _table(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    return value if isinstance(value, dict) else {}


def _yes(value: Any) -> bool:
    return isinstance(value, str) and value.strip().upper() in ("TRUE", "YES")


def system_facts(report: Report) -> diagnostics_pb2.SystemFacts:
    """SPSoftwareDataType (name, version, kernel, uptime) and the chip for the architecture."""
    software = _items(report, "SPSoftwareDataType")[0]
    os_version = _text(software, "os_version")  # "macOS 14.5 (23F79)"
    if not os_version:
        raise CollectorUnavailable("system_profiler's SPSoftwareDataType gives no os_version")
    facts = diagnostics_pb2.SystemFacts(
        hostname=_text(software, "local_host_name"),
        os_family="darwin",
        os_name=os_version.split(" (", 1)[0],
        os_version=_text(software, "kernel_version").removeprefix("Darwin ").strip(),
    )
    uptime = _UPTIME.search(_text(software, "uptime"))
    if uptime:
        days, hours, minutes, seconds = (int(part) for part in uptime.groups())
        facts.uptime_seconds = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    hardware = (report.get("SPHardwareDataType") or [{}])[0]
    if _text(hardware, "chip_type").startswith("Apple"):
        facts.architecture = "arm64"
    elif "intel" in _text(hardware, "cpu_type").lower():
        facts.architecture = "x86_64"
    return facts


def hardware_model(report: Report) -> str:
    """ "MacBook Air (Mac14,2), Apple M2, 16 GB", for a technician reading the evidence."""
    hardware = _items(report, "SPHardwareDataType")[0]
    parts = [
        _text(hardware, "machine_name")
        + (f" ({_text(hardware, 'machine_model')})" if _text(hardware, "machine_model") else ""),
        _text(hardware, "chip_type") or _text(hardware, "cpu_type"),
        _text(hardware, "physical_memory"),
    ]
    return ", ".join(part for part in parts if part)


def _partition(volume: dict[str, Any], writable_root: bool) -> diagnostics_pb2.Partition | None:
    mount = _text(volume, "mount_point")
    total = _number(volume, "size_in_bytes")
    if not mount or total <= 0:
        return None
    free = min(_number(volume, "free_space_in_bytes"), total)
    read_only = _text(volume, "writable").lower() != "yes"
    bsd_name = _text(volume, "bsd_name")
    return diagnostics_pb2.Partition(
        device=f"/dev/{bsd_name}" if bsd_name else _text(volume, "_name"),
        mountpoint=mount,
        filesystem=_text(volume, "file_system"),
        total_bytes=total,
        used_bytes=total - free,
        free_bytes=free,
        used_percent=round(100.0 * (total - free) / total, 1),
        is_system=mount == DATA_VOLUME or (mount == "/" and writable_root and not read_only),
        read_only=read_only,
    )


def disk_facts(report: Report) -> diagnostics_pb2.DiskFacts:
    """SPStorageDataType: each mounted volume, and each drive's SMART verdict where given."""
    volumes = _items(report, "SPStorageDataType")
    writable_root = not any(_text(v, "mount_point") == DATA_VOLUME for v in volumes)
    facts = diagnostics_pb2.DiskFacts()
    drives: dict[str, diagnostics_pb2.SmartStatus] = {}
    for volume in volumes:
        partition = _partition(volume, writable_root)
        if partition is not None:
            facts.partitions.append(partition)
        drive = _table(volume, "physical_drive")
        status = _text(drive, "smart_status")
        name = _text(drive, "device_name")
        if name and status and status != "Not Supported" and name not in drives:
            drives[name] = diagnostics_pb2.SmartStatus(
                device=name, model=name, passed=status == "Verified", raw_status=status
            )
    if not facts.partitions:
        raise CollectorUnavailable("system_profiler's SPStorageDataType lists no mounted volume")
    facts.smart.extend(drives.values())
    if not drives:
        facts.smart_unavailable = "system_profiler gives no SMART status for these drives"
    return facts


def battery_facts(report: Report) -> diagnostics_pb2.BatteryFacts:
    """SPPowerDataType: charge, charger, cycle count, condition and maximum capacity.

    A report with power information and no battery is a desktop (present false)."""
    power = {_text(item, "_name"): item for item in _items(report, "SPPowerDataType")}
    battery = power.get("spbattery_information")
    if battery is None:
        return diagnostics_pb2.BatteryFacts(present=False)
    charge = _table(battery, "sppower_battery_charge_info")
    health = _table(battery, "sppower_battery_health_info")
    charger = power.get("sppower_ac_charger_information", {})
    facts = diagnostics_pb2.BatteryFacts(
        present=True,
        charge_percent=float(min(_number(charge, "sppower_battery_state_of_charge"), 100)),
        plugged_in=_yes(charger.get("sppower_battery_charger_connected")),
        seconds_left=-1,
        cycle_count=min(_number(health, "sppower_battery_cycle_count"), 2**32 - 1),
        condition=_text(health, "sppower_battery_health"),
    )
    maximum = _PERCENT.match(_text(health, "sppower_battery_health_maximum_capacity"))
    if maximum and int(maximum.group(1)) <= 100:
        facts.wear_percent = float(100 - int(maximum.group(1)))
    else:
        facts.wear_unavailable = "macOS gives no maximum capacity for this battery"
    return facts


def _interface(service: dict[str, Any]) -> diagnostics_pb2.NetworkInterface | None:
    name = _text(service, "interface")
    if not name:
        return None
    ipv4 = _table(service, "IPv4")
    addresses, masks = _strings(ipv4, "Addresses"), _strings(ipv4, "SubnetMasks")
    interface = diagnostics_pb2.NetworkInterface(name=name, is_up=bool(addresses))
    for index, address in enumerate(addresses[:16]):
        mask = masks[index] if index < len(masks) else ""
        interface.addresses.add(family="ipv4", address=address[:64], netmask=mask[:64])
    mac = _text(_table(service, "Ethernet"), "MAC Address")
    if mac:
        interface.addresses.add(family="mac", address=mac)
    return interface


def network_facts(report: Report) -> diagnostics_pb2.NetworkFacts:
    """SPNetworkDataType: each service's interface and IPv4 addresses; the gateway and DNS
    servers of the first service, in the service order, that has a router."""
    services = sorted(
        _items(report, "SPNetworkDataType"),
        key=lambda s: _number(s, "spnetwork_service_order"),
    )
    facts = diagnostics_pb2.NetworkFacts()
    for service in services:
        interface = _interface(service)
        if interface is not None:
            facts.interfaces.append(interface)
    primary = next((s for s in services if _text(_table(s, "IPv4"), "Router")), None)
    if primary is None:
        return facts  # no service has a router: no default gateway
    facts.default_gateway = _text(_table(primary, "IPv4"), "Router")
    facts.default_interface = _text(primary, "interface")
    facts.dns_servers.extend(s[:64] for s in _strings(_table(primary, "DNS"), "ServerAddresses"))
    if not facts.dns_servers:
        facts.dns_unavailable = f"system_profiler lists no DNS server for {_text(primary, '_name')}"
    return facts
