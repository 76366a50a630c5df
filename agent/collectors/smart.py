"""SMART health through `smartctl --json`, when it is installed.

smartctl spins up nothing but still costs ~100 ms a drive, and SMART moves slowly:
results are kept in memory for ten minutes.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from typing import Any

from sonde.agent.collectors.command import run_command
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.v1 import diagnostics_pb2

CACHE_SECONDS = 600.0
_RUN_TIMEOUT_S = 3.0
# smartctl exit status bits: 1 command line, 2 device open failed (often: not root).
_OPEN_FAILED = 0b10
_REALLOCATED_SECTORS_ID = 5

_lock = threading.Lock()
_cache: tuple[float, list[diagnostics_pb2.SmartStatus]] | None = None


def parse_scan(report: dict[str, Any]) -> list[str]:
    """Device names from `smartctl --scan --json`."""
    return [str(device["name"]) for device in report.get("devices", []) if device.get("name")]


def parse_device(report: dict[str, Any]) -> diagnostics_pb2.SmartStatus:
    """One drive from `smartctl --json -H -A -i DEVICE` (ATA or NVMe)."""
    device = report.get("device", {})
    status = diagnostics_pb2.SmartStatus(
        device=str(device.get("name", "")),
        model=str(report.get("model_name", "")),
        passed=bool(report.get("smart_status", {}).get("passed", False)),
        temperature_celsius=int(report.get("temperature", {}).get("current", 0)),
        power_on_hours=int(report.get("power_on_time", {}).get("hours", 0)),
    )
    for attribute in report.get("ata_smart_attributes", {}).get("table", []):
        if attribute.get("id") == _REALLOCATED_SECTORS_ID:
            status.reallocated_sectors = int(attribute.get("raw", {}).get("value", 0))
    nvme = report.get("nvme_smart_health_information_log", {})
    status.percentage_used = int(nvme.get("percentage_used", 0))
    if "smart_status" in report:
        status.raw_status = "PASSED" if status.passed else "FAILED"
    else:
        status.raw_status = "unknown"
    return status


def refusal(report: dict[str, Any]) -> str | None:
    """Why smartctl could not read the drive, from its exit status bits; None when it could."""
    status = int(report.get("smartctl", {}).get("exit_status", 0))
    if status & _OPEN_FAILED:
        messages = [m.get("string", "") for m in report.get("smartctl", {}).get("messages", [])]
        if any("permission" in m.lower() for m in messages):
            return "smartctl cannot open the drives: it needs administrator rights"
        return "smartctl cannot open the drive: " + ("; ".join(messages) or "no detail")
    return None


def _smartctl(*args: str) -> dict[str, Any]:
    completed = run_command(["smartctl", "--json", *args], _RUN_TIMEOUT_S)
    report: dict[str, Any] = json.loads(completed.stdout or "{}")
    reason = refusal(report)
    if reason is not None:
        raise CollectorUnavailable(reason)
    return report


def smart_statuses() -> list[diagnostics_pb2.SmartStatus]:
    """Every drive's SMART status; CollectorUnavailable when smartctl cannot say."""
    global _cache  # noqa: PLW0603 - one cache per agent process
    with _lock:
        if _cache is not None and time.monotonic() - _cache[0] < CACHE_SECONDS:
            return list(_cache[1])
    if shutil.which("smartctl") is None:
        raise CollectorUnavailable("smartctl is not installed")
    statuses = [
        parse_device(_smartctl("-H", "-A", "-i", name)) for name in parse_scan(_smartctl("--scan"))
    ]
    with _lock:
        _cache = (time.monotonic(), statuses)
    return list(statuses)
