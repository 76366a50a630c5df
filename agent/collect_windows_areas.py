"""The Windows-only facts as `collect`'s text shows them, one area each: Windows Update,
antivirus, BitLocker, the event log, printing, time sync, Wi-Fi and disk health. Inert
printing is collect_cmd's: these rows go through it like the others."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from sonde.agent.checks.wording import size
from sonde.v1 import diagnostics_pb2

Rows = list[tuple[str, str]]
_EVENT_ROWS = 5
_JOB_ROWS = 10


def _when(moment: Timestamp) -> str:
    return moment.ToJsonString() if moment.seconds else "never"


def _windows_update(facts: diagnostics_pb2.WindowsUpdateFacts) -> Rows:
    return [
        ("Last install", _when(facts.last_install_success_at)),
        ("Last search", _when(facts.last_search_success_at)),
        ("Hotfixes", ", ".join(facts.recent_hotfixes[:5]) or "none listed"),
    ]


def _antivirus(facts: diagnostics_pb2.AntivirusFacts) -> Rows:
    realtime = "on" if facts.real_time_protection else "off"
    return [
        (
            facts.product or "Antivirus",
            f"{facts.running_mode or 'unknown mode'}, real time {realtime}",
        ),
        ("Signatures", f"{facts.signature_version}, {facts.signature_age_days} days old"),
    ]


def _encryption(facts: diagnostics_pb2.EncryptionFacts) -> Rows:
    return [
        (v.mount_point, f"{v.volume_status}, protection {v.protection_status}")
        for v in facts.volumes
    ] or [("Volumes", "none reported")]


def _event_log(facts: diagnostics_pb2.EventLogFacts) -> Rows:
    more = "+" if facts.truncated else ""
    rows = [("Errors", f"{facts.error_count}{more} in {facts.window_hours} h")]
    for event in facts.events[:_EVENT_ROWS]:
        rows.append((f"{event.provider} {event.event_id}", f"{event.count} x: {event.message}"))
    return rows


def _printing(facts: diagnostics_pb2.PrintFacts) -> Rows:
    rows = [("Spooler", facts.spooler_state or "unknown")]
    rows += [(p.name, p.status) for p in facts.printers]
    for job in facts.jobs[:_JOB_ROWS]:
        rows.append((f"Job {job.job_id}", f"{job.status}: {job.document} ({size(job.size_bytes)})"))
    return rows


def _time_sync(facts: diagnostics_pb2.TimeSyncFacts) -> Rows:
    synced = "synchronised" if facts.synchronized else "not synchronised"
    return [
        ("Source", f"{facts.source or 'none'} ({synced})"),
        ("Last sync", facts.last_sync_text or "never"),
    ]


def _wifi(facts: diagnostics_pb2.WifiFacts) -> Rows:
    if not facts.connected:
        return [("Wi-Fi", "not connected")]
    return [(facts.ssid, f"{facts.signal_percent} %, {facts.band} channel {facts.channel}")]


def _disk_health(facts: diagnostics_pb2.DiskHealthFacts) -> Rows:
    rows = [(d.name, f"{d.health_status}, {', '.join(d.operational_status)}") for d in facts.disks]
    if facts.counters_unavailable:
        rows.append(("Counters", facts.counters_unavailable))
    return rows


def windows_areas(snapshot: diagnostics_pb2.Snapshot) -> Iterable[tuple[str, Rows]]:
    if snapshot.HasField("windows_update"):
        yield "Windows Update", _windows_update(snapshot.windows_update)
    if snapshot.HasField("antivirus"):
        yield "Antivirus", _antivirus(snapshot.antivirus)
    if snapshot.HasField("encryption"):
        method = "FileVault" if snapshot.encryption.method == "filevault" else "BitLocker"
        yield method, _encryption(snapshot.encryption)
    if snapshot.HasField("event_log"):
        yield "Event log", _event_log(snapshot.event_log)
    if snapshot.HasField("printing"):
        yield "Printing", _printing(snapshot.printing)
    if snapshot.HasField("time_sync"):
        yield "Time sync", _time_sync(snapshot.time_sync)
    if snapshot.HasField("wifi"):
        yield "Wi-Fi", _wifi(snapshot.wifi)
    if snapshot.HasField("disk_health"):
        yield "Disk health", _disk_health(snapshot.disk_health)
