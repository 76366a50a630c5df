"""One parser per section of the Windows collection (collect.ps1): JSON in, Snapshot facts
out. Each raises Malformed, saying where, when its section cannot be read.

The registry-backed facts (software, pending reboot, the user's proxy, the OS release) are
read through parse.py, the same parsers the agent runs on the live registry.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sonde.agent.collectors.battery import wear_percent
from sonde.agent.collectors.platform_parts import BatteryCapacity
from sonde.agent.collectors.windows import command_text, parse
from sonde.agent.collectors.windows.json_fields import Fields, Malformed
from sonde.agent.collectors.windows.json_registry import JsonRegistry
from sonde.v1 import diagnostics_pb2

MAX_EVENT_GROUPS = 200
MAX_JOBS = 1000
_START_TYPES = {"auto": "automatic", "manual": "manual", "disabled": "disabled", "boot": "boot"}
_LEVELS = {1: "critical", 2: "error"}
_UINT32 = 2**32 - 1
_NEVER = datetime.min.replace(tzinfo=UTC)


def system(
    registry: JsonRegistry, section: Fields, collected_at: datetime | None
) -> diagnostics_pb2.SystemFacts:
    release = parse.os_release(registry)
    facts = diagnostics_pb2.SystemFacts(
        hostname=section.text("hostname", limit=255),
        os_family="windows",
        os_name=release.name,
        os_version=release.version,
        architecture=section.text("architecture", limit=40),
        timezone=section.text("timezone", limit=100),
    )
    booted = section.when("boot_time")
    if booted is not None:
        facts.boot_time.FromDatetime(booted)
        if collected_at is not None:
            facts.uptime_seconds = max(0, int((collected_at - booted).total_seconds()))
    return facts


def memory(section: Fields) -> diagnostics_pb2.MemoryFacts:
    """Win32_OperatingSystem's visible and free physical memory (KiB)."""
    total = (section.integer("total_kib", high=2**44) or 0) * 1024
    free = min((section.integer("free_kib", high=2**44) or 0) * 1024, total)
    if total == 0:
        raise Malformed(f"{section.where}.total_kib is missing or 0")
    return diagnostics_pb2.MemoryFacts(
        total_bytes=total,
        available_bytes=free,
        used_bytes=total - free,
        used_percent=round(100.0 * (total - free) / total, 1),
    )


def disks(section: Fields) -> diagnostics_pb2.DiskFacts:
    """Fixed volumes (Win32_LogicalDisk DriveType=3); no inodes on Windows."""
    facts = diagnostics_pb2.DiskFacts(smart_unavailable="see disk_health")
    for volume in section.objects("volumes", limit=64):
        size = volume.integer("size") or 0
        free = min(volume.integer("free") or 0, size)
        device = volume.text("device", limit=8)
        facts.partitions.add(
            device=device,
            mountpoint=f"{device}\\" if device else "",
            filesystem=volume.text("filesystem", limit=16),
            total_bytes=size,
            used_bytes=size - free,
            free_bytes=free,
            used_percent=round(100.0 * (size - free) / size, 1) if size else 0.0,
            is_system=bool(volume.flag("is_system")),
        )
    return facts


def software(registry: JsonRegistry) -> diagnostics_pb2.SoftwareFacts:
    packages = parse.installed_software(registry)
    return diagnostics_pb2.SoftwareFacts(source="registry", total=len(packages), packages=packages)


def updates(registry: JsonRegistry) -> diagnostics_pb2.UpdateFacts:
    flags = parse.pending_reboot_flags(registry)
    return diagnostics_pb2.UpdateFacts(
        reboot_required=bool(flags), reboot_reasons=flags, source="registry"
    )


def services(section: Fields) -> diagnostics_pb2.ServiceFacts:
    """Win32_Service rows, said the way psutil says them, for parse.failed_services."""
    described: list[dict[str, object]] = []
    for row in section.objects("services"):
        described.append(
            {
                "name": row.text("name", limit=256),
                "display_name": row.text("display_name", limit=256),
                "status": row.text("state", limit=40).lower(),
                "start_type": _START_TYPES.get(row.text("start_mode", limit=40).lower(), ""),
                "binpath": row.text("path"),
            }
        )
    failed = parse.failed_services(described)
    return diagnostics_pb2.ServiceFacts(manager="windows", failed=failed, total=len(described))


def network(section: Fields, registry: JsonRegistry | None) -> diagnostics_pb2.NetworkFacts:
    facts = diagnostics_pb2.NetworkFacts()
    servers: list[str] = []
    for adapter in section.objects("ip_configuration", limit=256):
        gateway = adapter.text("gateway", limit=64)
        if gateway and not facts.default_gateway:
            facts.default_gateway = gateway
            facts.default_interface = adapter.text("interface", limit=256)
        servers.extend(adapter.texts("dns_servers", limit=32))
    facts.dns_servers.extend(dict.fromkeys(s[:64] for s in servers))
    winhttp = section.text("winhttp_proxy", limit=16384)
    facts.machine_proxy_known = bool(winhttp)
    machine = command_text.winhttp_proxy(winhttp)
    if machine is not None:
        facts.machine_proxy.CopyFrom(machine)
    user = parse.proxy_settings(registry) if registry is not None else None
    if user is not None:
        facts.proxy.CopyFrom(user)
    return facts


def battery(section: Fields) -> diagnostics_pb2.BatteryFacts:
    if not section.flag("present"):
        return diagnostics_pb2.BatteryFacts(present=False)
    facts = diagnostics_pb2.BatteryFacts(present=True, seconds_left=-1)
    facts.charge_percent = section.number("charge_percent", 0, 100) or 0.0
    facts.plugged_in = bool(section.flag("plugged_in"))
    design = section.integer("design_capacity_mwh", high=10**7) or 0
    full = section.integer("full_charge_capacity_mwh", high=10**7) or 0
    cycles = section.integer("cycle_count", high=10**6) or 0
    if design > 0:
        capacity = BatteryCapacity(design_mwh=design, full_mwh=full, cycle_count=cycles)
        facts.design_capacity_mwh, facts.full_capacity_mwh = design, full
        facts.cycle_count, facts.wear_percent = cycles, wear_percent(capacity)
    else:
        facts.wear_unavailable = "Windows gives no design capacity for this battery"
    return facts


def windows_update(section: Fields) -> diagnostics_pb2.WindowsUpdateFacts:
    facts = diagnostics_pb2.WindowsUpdateFacts(
        service_start_type=_START_TYPES.get(section.text("service_start_mode", 40).lower(), "")
    )
    for key, field in (
        ("last_search_success", facts.last_search_success_at),
        ("last_install_success", facts.last_install_success_at),
    ):
        moment = section.when(key)
        if moment is not None:
            field.FromDatetime(moment)
    hotfixes = section.objects("hotfixes", limit=100)
    dated = [(h.when("installed_on"), h.text("id", limit=40)) for h in hotfixes]
    dated.sort(key=lambda pair: pair[0] or _NEVER, reverse=True)
    facts.recent_hotfixes.extend(name for _, name in dated if name)
    if dated and dated[0][0] is not None:
        facts.latest_hotfix_at.FromDatetime(dated[0][0])
    return facts


def antivirus(section: Fields) -> diagnostics_pb2.AntivirusFacts:
    """Get-MpComputerStatus, its own property names."""
    facts = diagnostics_pb2.AntivirusFacts(
        product="Microsoft Defender",
        service_enabled=bool(section.flag("AMServiceEnabled")),
        antivirus_enabled=bool(section.flag("AntivirusEnabled")),
        real_time_protection=bool(section.flag("RealTimeProtectionEnabled")),
        tamper_protected=bool(section.flag("IsTamperProtected")),
        running_mode=section.text("AMRunningMode", limit=40),
        signatures_out_of_date=bool(section.flag("DefenderSignaturesOutOfDate")),
        signature_version=section.text("AntivirusSignatureVersion", limit=40),
    )
    facts.signature_age_days = section.integer("AntivirusSignatureAge", high=_UINT32) or 0
    quick = section.integer("QuickScanAge", low=-1, high=_UINT32)
    # Defender says 4294967295 (uint32 -1) for "never".
    facts.quick_scan_age_days = -1 if quick is None or quick >= 2**31 else quick
    updated = section.when("AntivirusSignatureLastUpdated")
    if updated is not None:
        facts.signatures_updated_at.FromDatetime(updated)
    return facts


def encryption(section: Fields) -> diagnostics_pb2.EncryptionFacts:
    """Get-BitLockerVolume's states; key protector types only (the script reads no key)."""
    facts = diagnostics_pb2.EncryptionFacts(method="bitlocker")
    for volume in section.objects("volumes", limit=64):
        facts.volumes.add(
            mount_point=volume.text("mount_point", limit=260),
            volume_type=volume.text("volume_type", limit=40),
            volume_status=volume.text("volume_status", limit=40),
            protection_status=volume.text("protection_status", limit=40),
            encryption_percent=volume.number("encryption_percentage", 0, 100) or 0.0,
            key_protector_types=volume.texts("key_protector_types", limit=32),
        )
    return facts


def event_log(section: Fields) -> diagnostics_pb2.EventLogFacts:
    read = section.integer("read", high=_UINT32) or 0
    limit = section.integer("limit", high=_UINT32) or 0
    facts = diagnostics_pb2.EventLogFacts(
        window_hours=section.integer("window_hours", high=24 * 366) or 24,
        error_count=read,
        truncated=bool(limit) and read >= limit,
    )
    groups = section.objects("groups", limit=MAX_EVENT_GROUPS)
    rows = []
    for group in groups:
        level = group.integer("level", high=255) or 0
        row = diagnostics_pb2.EventCount(
            log=group.text("log", limit=256),
            provider=group.text("provider", limit=256),
            event_id=group.integer("id", high=_UINT32) or 0,
            level=_LEVELS.get(level, str(level)),
            count=group.integer("count", high=_UINT32) or 0,
            message=group.text("message", limit=65536).split("\n", 1)[0][:300].strip(),
        )
        last = group.when("last")
        if last is not None:
            row.last_at.FromDatetime(last)
        rows.append(row)
    rows.sort(key=lambda r: r.count, reverse=True)
    facts.events.extend(rows)
    return facts


def printing(section: Fields) -> diagnostics_pb2.PrintFacts:
    spooler = section.child("spooler")
    facts = diagnostics_pb2.PrintFacts()
    if spooler is not None:
        facts.spooler_state = spooler.text("state", limit=40).lower()
        facts.spooler_start_type = _START_TYPES.get(spooler.text("start_mode", 40).lower(), "")
    for printer in section.objects("printers", limit=500):
        facts.printers.add(
            name=printer.text("name", limit=256),
            status=printer.text("status", limit=80),
            port=printer.text("port", limit=256),
            driver=printer.text("driver", limit=256),
            shared=bool(printer.flag("shared")),
        )
    for job in section.objects("jobs", limit=MAX_JOBS):
        row = facts.jobs.add(
            printer=job.text("printer", limit=256),
            job_id=job.integer("id", high=_UINT32) or 0,
            document=job.text("document", limit=1024)[:200],
            status=job.text("status", limit=200),
            size_bytes=job.integer("size") or 0,
            owner=job.text("owner", limit=256),
        )
        submitted = job.when("submitted")
        if submitted is not None:
            row.submitted_at.FromDatetime(submitted)
    return facts


def time_sync(section: Fields) -> diagnostics_pb2.TimeSyncFacts:
    offset = section.integer("utc_offset_minutes", low=-24 * 60, high=24 * 60) or 0
    facts = command_text.w32tm_status(section.text("w32tm", limit=16384), offset)
    state = section.text("service_state", limit=40).lower()
    if state:
        facts.service_state = state
    return facts


def wifi(section: Fields) -> diagnostics_pb2.WifiFacts:
    return command_text.wlan_interfaces(section.text("netsh", limit=65536))


def disk_health(section: Fields) -> diagnostics_pb2.DiskHealthFacts:
    """Get-PhysicalDisk and, where the controller gives them, its reliability counters."""
    facts = diagnostics_pb2.DiskHealthFacts()
    for disk in section.objects("disks", limit=64):
        row = facts.disks.add(
            name=disk.text("name", limit=256),
            media_type=disk.text("media_type", limit=40),
            bus_type=disk.text("bus_type", limit=40),
            health_status=disk.text("health_status", limit=40),
            operational_status=disk.texts("operational_status", limit=16),
            size_bytes=disk.integer("size") or 0,
        )
        counters = disk.child("counters")
        if counters is not None:
            row.counters_known = True
            row.temperature_celsius = counters.integer("temperature", low=-100, high=300) or 0
            row.wear_percent = counters.integer("wear", high=100) or 0
            row.read_errors_uncorrected = counters.integer("read_errors_uncorrected") or 0
            row.write_errors_uncorrected = counters.integer("write_errors_uncorrected") or 0
            row.power_on_hours = counters.integer("power_on_hours") or 0
    if facts.disks and not any(d.counters_known for d in facts.disks):
        facts.counters_unavailable = (
            "the disks' controllers give no reliability counters (or the collection was not "
            "run as an administrator)"
        )
    return facts
