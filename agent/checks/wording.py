"""Building findings and the words in them: sizes, durations, drive names."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sonde.v1 import diagnostics_pb2

Severity = diagnostics_pb2.Severity
OK = Severity.SEVERITY_OK
WARNING = Severity.SEVERITY_WARNING
CRITICAL = Severity.SEVERITY_CRITICAL


def finding(
    check: str,
    severity: diagnostics_pb2.Severity.ValueType,
    summary: str,
    evidence: Mapping[str, object],
    fix_script_id: str = "",
) -> diagnostics_pb2.Finding:
    result = diagnostics_pb2.Finding(check=check, severity=severity, summary=summary)
    for key, value in evidence.items():
        result.evidence.add(key=key, value=str(value))
    if severity != OK:
        result.fix_script_id = fix_script_id  # a hint only where something is wrong
    return result


def size(byte_count: int) -> str:
    """Binary units, said as such: "3.1 GiB", "237 GiB", "512 MiB" (the one size wording of
    findings and of the CLI; Windows Explorer shows the same numbers as "GB")."""
    value = float(byte_count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def duration(seconds: float) -> str:
    """ "3 days 4 h", "7 min 12 s", "45 s"."""
    whole = int(abs(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def percent(value: float) -> str:
    return f"{value:.0f} %"


def disk_name(mountpoint: str) -> str:
    """ "Drive C:" on Windows, "The disk mounted at /home" elsewhere."""
    if re.fullmatch(r"[A-Za-z]:\\?", mountpoint):
        return f"Drive {mountpoint[:2].upper()}"
    return f"The disk mounted at {mountpoint}"


def worse(
    a: diagnostics_pb2.Severity.ValueType, b: diagnostics_pb2.Severity.ValueType
) -> diagnostics_pb2.Severity.ValueType:
    return a if a >= b else b
