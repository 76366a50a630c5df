"""memory.pressure: not enough memory left for programs, or heavy swapping."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding, percent, size
from sonde.v1 import diagnostics_pb2


def memory_pressure(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    memory = snapshot.memory
    if not snapshot.HasField("memory") or memory.total_bytes == 0:
        return None
    limits = ctx.thresholds
    swapping = (
        memory.swap_total_bytes > 0 and memory.swap_used_percent >= limits.swap_used_warning_percent
    )
    severity = OK
    if memory.used_percent >= limits.memory_used_warning_percent or swapping:
        severity = WARNING
    if memory.used_percent >= limits.memory_used_critical_percent:
        severity = CRITICAL
    evidence = {
        "used": f"{percent(memory.used_percent)} ({size(memory.used_bytes)})",
        "available": size(memory.available_bytes),
        "total": size(memory.total_bytes),
        "swap used": f"{percent(memory.swap_used_percent)} of {size(memory.swap_total_bytes)}",
    }
    summary = (
        f"Memory is {percent(memory.used_percent)} used: {size(memory.available_bytes)} "
        f"available of {size(memory.total_bytes)}"
    )
    if swapping:
        summary += f", and swap is {percent(memory.swap_used_percent)} used."
    else:
        summary += "."
    return finding(
        "memory.pressure", severity, summary, evidence, fix_for("memory.pressure", snapshot)
    )
