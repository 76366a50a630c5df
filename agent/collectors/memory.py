"""Memory and swap facts."""

from __future__ import annotations

import psutil

from sonde.agent.collectors.context import CollectContext
from sonde.v1 import diagnostics_pb2


def collect_memory(ctx: CollectContext) -> diagnostics_pb2.MemoryFacts:
    memory = psutil.virtual_memory()
    facts = diagnostics_pb2.MemoryFacts(
        total_bytes=memory.total,
        available_bytes=memory.available,
        # "used" as the user feels it: what is not available to a new program
        used_bytes=max(0, memory.total - memory.available),
        used_percent=memory.percent,
    )
    try:
        swap = psutil.swap_memory()
    except (OSError, RuntimeError):
        return facts  # no swap information (some containers): memory alone still helps
    facts.swap_total_bytes = swap.total
    facts.swap_used_bytes = swap.used
    facts.swap_used_percent = swap.percent
    facts.swap_in_bytes = swap.sin
    facts.swap_out_bytes = swap.sout
    return facts
