"""Monitoring (docs/monitoring.md): a light collection on each agent's schedule, and the tickets
its critical findings open and, once cleared, close.

The schedule: every round (ROUND_S) each replica takes the online agents whose next check is due
(at most MAX_PER_ROUND) and moves each one's next_check_at on with a conditional UPDATE (the
value it read): of several replicas on one database only the one whose update matched queues
the collection (kind collect, requested by `monitoring`, no ticket, the group's collectors).
An agent with a monitoring collection still open gets no other: an offline machine piles none
up. An agent seen online for the first time is checked one interval later.

What a collection's result opens, reopens and closes: monitoring_tickets.py. Each scheduled
collection is a command row, not an audit row.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from sonde.agent.checks.sources import collectors_for
from sonde.server.domain.agent_groups import AgentGroup, group_of
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.commands import (
    OPEN_STATES,
    CommandKind,
    insert_command,
    new_command,
)
from sonde.server.domain.monitoring_tickets import MONITOR_ACTOR
from sonde.server.domain.wakeups import Wake, WakeKind, Wakeups, emit
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, commands, monitoring_agents

log = logging.getLogger(__name__)

ROUND_S = 5.0
MAX_PER_ROUND = 200
OFF_RECHECK = timedelta(hours=1)  # an agent whose group is off is looked at again this late
MIN_EXPIRY = timedelta(seconds=30)


def _insert_ignoring_present(connection: Connection) -> object:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(monitoring_agents)


class MonitoringScheduler:
    """Queues each due online agent's light collection, once however many replicas run it."""

    def __init__(
        self,
        db: Database,
        wakeups: Wakeups,
        *,
        clock: Clock = utc_now,
        round_s: float = ROUND_S,
    ) -> None:
        self._db = db
        self._wakeups = wakeups
        self._clock = clock
        self._round_s = round_s

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:  # a round's bug must not end the schedule
                log.exception("monitoring: a round failed")
            await asyncio.sleep(self._round_s)

    async def round(self) -> list[str]:
        """One round: the ids of the collections this replica queued."""
        now = self._clock()
        wakes: list[Wake] = []

        def unit(connection: Connection) -> list[str]:
            _take_in_new_agents(connection, now)
            due = connection.execute(
                select(
                    monitoring_agents.c.agent_id,
                    monitoring_agents.c.group_name,
                    monitoring_agents.c.next_check_at,
                    agents.c.hostname,
                )
                .join(agents, agents.c.id == monitoring_agents.c.agent_id)
                .where(monitoring_agents.c.next_check_at <= now)
                .where(agents.c.connected.is_(True))
                .where(agents.c.revoked_at.is_(None))
                .where(agents.c.removed_at.is_(None))
                .order_by(monitoring_agents.c.next_check_at, monitoring_agents.c.agent_id)
                .limit(MAX_PER_ROUND)
            ).all()
            groups: dict[str | None, AgentGroup] = {}
            queued: list[str] = []
            for row in due:
                if row.group_name not in groups:
                    groups[row.group_name] = group_of(connection, row.group_name)
                group = groups[row.group_name]
                wait = OFF_RECHECK if group.off else group.interval
                taken = connection.execute(
                    update(monitoring_agents)
                    .where(monitoring_agents.c.agent_id == row.agent_id)
                    .where(monitoring_agents.c.next_check_at == row.next_check_at)
                    .values(next_check_at=now + wait)
                ).rowcount
                if taken != 1 or group.off or _collection_open(connection, row.agent_id):
                    continue  # another replica's, off, or the last one is still open
                command_id = _queue_collection(connection, row.agent_id, row.hostname, group, now)
                connection.execute(
                    update(monitoring_agents)
                    .where(monitoring_agents.c.agent_id == row.agent_id)
                    .values(last_command_id=command_id)
                )
                emit(connection, wakes, Wake(WakeKind.COMMANDS_DUE, row.agent_id, command_id))
                queued.append(command_id)
            return queued

        if not await self._db.read(lambda connection: _anything_to_do(connection, now)):
            return []  # most rounds: no write transaction at all
        queued = await self._db.write(unit)
        self._wakeups.publish(wakes)
        return queued


def _online() -> list[ColumnElement[bool]]:
    return [
        agents.c.connected.is_(True),
        agents.c.revoked_at.is_(None),
        agents.c.removed_at.is_(None),
    ]


def _anything_to_do(connection: Connection, now: datetime) -> bool:
    new = select(agents.c.id).where(
        *_online(),
        agents.c.reached_by == "",
        ~exists().where(monitoring_agents.c.agent_id == agents.c.id),
    )
    due = (
        select(monitoring_agents.c.agent_id)
        .join(agents, agents.c.id == monitoring_agents.c.agent_id)
        .where(monitoring_agents.c.next_check_at <= now, *_online())
    )
    return connection.execute(select(exists(new) | exists(due))).scalar_one() is True


def _take_in_new_agents(connection: Connection, now: datetime) -> None:
    """Online agents with no schedule get one: first checked one default interval from now."""
    first = now + group_of(connection, None).interval
    if first <= now:
        first = now + OFF_RECHECK
    new = (
        select(agents.c.id, literal(first, monitoring_agents.c.next_check_at.type))
        .where(agents.c.connected.is_(True))
        .where(agents.c.revoked_at.is_(None))
        .where(agents.c.removed_at.is_(None))
        .where(agents.c.reached_by == "")
        .where(~exists().where(monitoring_agents.c.agent_id == agents.c.id))
    )
    statement = _insert_ignoring_present(connection)
    connection.execute(
        statement.from_select(["agent_id", "next_check_at"], new).on_conflict_do_nothing()  # type: ignore[attr-defined]
    )


def _collection_open(connection: Connection, agent_id: str) -> bool:
    return (
        connection.execute(
            select(commands.c.id)
            .where(commands.c.agent_id == agent_id)
            .where(commands.c.requested_by == MONITOR_ACTOR)
            .where(commands.c.state.in_(sorted(state.value for state in OPEN_STATES)))
            .limit(1)
        ).first()
        is not None
    )


def _queue_collection(
    connection: Connection, agent_id: str, hostname: str, group: AgentGroup, now: datetime
) -> str:
    record = new_command(
        agent_id=agent_id,
        agent_hostname=hostname,
        kind=CommandKind.COLLECT,
        ticket_id=None,
        requested_by=MONITOR_ACTOR,
        now=now,
        expires_at=now + max(group.interval, MIN_EXPIRY),
        collectors=tuple(collectors_for(group.collectors)),
    )
    insert_command(connection, record)
    return record.id


# -- the result ---------------------------------------------------------------------------
