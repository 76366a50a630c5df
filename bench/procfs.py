"""A process's footprint read straight from /proc (Linux): RSS, PSS and CPU time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Footprint:
    rss_bytes: int
    pss_bytes: int
    cpu_s: float  # user + system of the process and of the children it has waited for


def _kib_fields(text: str) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name.strip()] = int(parts[0]) * 1024
    return fields


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces or parentheses: split after its last ')'.
    after = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in after[11:15])
    return (utime + stime + cutime + cstime) / _TICKS_PER_S


def footprint(pid: int) -> Footprint:
    """RSS and PSS from smaps_rollup (one read, cheap), CPU time from stat."""
    memory = _kib_fields(Path(f"/proc/{pid}/smaps_rollup").read_text())
    return Footprint(memory["Rss"], memory.get("Pss", memory["Rss"]), cpu_seconds(pid))


def mib(count: float) -> float:
    return count / (1024 * 1024)
