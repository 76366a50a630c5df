"""The replica's periodic upkeep: renew its lease, end dead replicas' sessions, end overdue
commands and script runs nobody approved in time (erasing the secret values of runs that
ended), end the agentless runs of lapsed replicas and start those nobody started, and wake
local sessions that have queued commands (should a wake-up have been lost).
"""

from __future__ import annotations

import asyncio
import logging

from sonde.server.domain.agentless_runs import AgentlessRuns
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.replicas import RENEW_INTERVAL_S, Replica
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.domain.wakeups import Wake, WakeKind, Wakeups

log = logging.getLogger(__name__)


class FleetUpkeep:
    def __init__(
        self,
        replica: Replica,
        commands: Commands,
        wakeups: Wakeups,
        interval_s: float = RENEW_INTERVAL_S,
        *,
        script_runs: ScriptRuns | None = None,
        agentless_runs: AgentlessRuns | None = None,
    ) -> None:
        self._replica = replica
        self._script_runs = script_runs
        self._agentless_runs = agentless_runs
        self._commands = commands
        self._wakeups = wakeups
        self._interval_s = interval_s

    async def once(self) -> None:
        sweep = await self._replica.renew_and_sweep()
        if sweep.sessions_ended:
            log.info("marked %d agents of lapsed replicas offline", sweep.sessions_ended)
        ended = await self._commands.end_overdue()
        if ended:
            log.info("ended %d overdue commands (expired or interrupted)", ended)
        if self._script_runs is not None:
            unapproved = await self._script_runs.end_unapproved()
            if unapproved:
                log.info("%d script runs expired: nobody approved them in time", unapproved)
        if self._agentless_runs is not None:
            lost, started = await self._agentless_runs.upkeep()
            if lost or started:
                log.info(
                    "agentless runs: %d of lapsed replicas ended interrupted, %d started",
                    lost,
                    started,
                )
        for agent_id in await self._commands.agents_with_queued(self._replica.id):
            self._wakeups.receive(Wake(WakeKind.COMMANDS_DUE, agent_id))

    async def run(self) -> None:
        """Until cancelled; a failed round is logged and the next one tries again."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.once()
            except Exception:
                log.exception("fleet upkeep failed; trying again in %.0f s", self._interval_s)
