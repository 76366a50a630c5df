"""Heartbeats are frequent and small: they are written in batches, not one transaction each."""

from __future__ import annotations

import asyncio
import logging

from sonde.server.domain.agents import AgentRegistry, HeartbeatRecord
from sonde.server.domain.batching import flush_in_batches

log = logging.getLogger(__name__)


class HeartbeatBatcher:
    """Collects heartbeats and writes them every `flush_interval_s`, or sooner when many wait."""

    def __init__(
        self, agents: AgentRegistry, flush_interval_s: float = 1.0, max_batch: int = 2000
    ) -> None:
        self._agents = agents
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        # Only the latest heartbeat of each agent matters for last-seen and gauges.
        self._pending: dict[str, HeartbeatRecord] = {}
        self._full = asyncio.Event()

    def add(self, beat: HeartbeatRecord) -> None:
        self._pending[beat.agent_id] = beat
        if len(self._pending) >= self._max_batch:
            self._full.set()

    async def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        self._full.clear()
        try:
            await self._agents.record_heartbeats(list(batch.values()))
        except BaseException:
            # Keep what failed unless a newer heartbeat of the same agent came meanwhile.
            for agent_id, beat in batch.items():
                self._pending.setdefault(agent_id, beat)
            raise
        return len(batch)

    async def run(self) -> None:
        """Flush until cancelled; a failed write is logged and retried with the next batch."""
        await flush_in_batches(self.flush, self._full, self._flush_interval_s, "heartbeats")
