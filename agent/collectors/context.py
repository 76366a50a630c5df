"""What a snapshot is asked to collect: the settings every collector may read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CollectContext:
    # "host:port" of the server's agent listener; TCP-connect probe.
    server_address: str | None = None
    # "host:port" of a configured extra target; TCP-connect probe.
    target_address: str | None = None
    # Host names whose resolution time is measured (the server host is added automatically).
    resolve_names: tuple[str, ...] = ()
    top_processes: int = 10
    # Each collector's own limit (a collector may declare a shorter one).
    collector_timeout_s: float = 5.0
    # Where the software inventory cache lives (None: no cache file, memory only).
    state_dir: Path | None = None
    software_max_age_s: float = 6 * 3600
