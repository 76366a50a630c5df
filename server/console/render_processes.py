"""The busiest processes under a CPU or memory finding (`sonde diag`, `sonde snapshot show`).

The agent's processes collector already sends its top processes by CPU (over a short window)
and by memory with every snapshot; this shows the first few only when a CPU or memory finding
is raised, so a healthy machine's view stays short. --json carries them all in the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sonde.agent.checks.wording import size
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import text
from sonde.v1 import diagnostics_pb2

TOP_PROCESSES = 5
_RAISED = (diagnostics_pb2.SEVERITY_WARNING, diagnostics_pb2.SEVERITY_CRITICAL)


def _raised(findings: Iterable[diagnostics_pb2.Finding], area: str) -> bool:
    return any(f.check.startswith(f"{area}.") and f.severity in _RAISED for f in findings)


def _table(title: str, processes: Sequence[diagnostics_pb2.ProcessInfo]) -> ListTable:
    table = ListTable(
        title,
        [
            Column("pid", justify="right"),
            Column("process", Give.CUT),
            Column("user", Give.CUT, optional=True),
            Column("cpu", justify="right"),
            Column("memory", justify="right"),
        ],
    )
    for process in processes[:TOP_PROCESSES]:
        table.add_row(
            str(process.pid),
            text(process.name or "?"),
            text(process.username or "-"),
            f"{process.cpu_percent:.0f} %",
            f"{size(process.rss_bytes)} ({process.memory_percent:.0f} %)",
        )
    return table


def top_processes(
    findings: Iterable[diagnostics_pb2.Finding], snapshot: diagnostics_pb2.Snapshot
) -> list[ListTable]:
    """The top processes by CPU under a raised cpu.* finding, by memory under a memory.* one."""
    found = list(findings)
    processes = snapshot.processes
    tables: list[ListTable] = []
    if _raised(found, "cpu") and processes.top_by_cpu:
        tables.append(_table(f"Top {TOP_PROCESSES} processes by CPU", processes.top_by_cpu))
    if _raised(found, "memory") and processes.top_by_memory:
        tables.append(_table(f"Top {TOP_PROCESSES} processes by memory", processes.top_by_memory))
    return tables
