"""Agent groups for monitoring (docs/monitoring.md): each group's interval, light collectors,
clear rule and threshold overrides, and which group each agent is in.

An agent in no group is monitored as the group named `default` says when an admin set one,
else every DEFAULT_INTERVAL with DEFAULT_COLLECTORS. Every change is audited
(`monitoring.group.set`, `monitoring.group.assign`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sonde.agent.checks.sources import CHECK_SOURCES
from sonde.agent.checks.thresholds import Thresholds
from sonde.server.domain.agents import resolve_agent
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Principal
from sonde.server.errors import InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agent_groups, monitoring_agents

DEFAULT_GROUP = "default"  # the group that governs agents in none, when an admin sets it
DEFAULT_INTERVAL = timedelta(minutes=15)
MIN_INTERVAL = timedelta(minutes=1)  # the server's --monitoring-min-interval may lower it
MAX_INTERVAL = timedelta(days=7)
DEFAULT_COLLECTORS = ("cpu", "disks", "memory", "services", "system")  # the light set
DEFAULT_CLEAR_CHECKS = 3
MAX_CLEAR_CHECKS = 100
MAX_ASSIGN = 1000  # agents named in one assignment
# Every collector a check reads, and `system`: what a group may collect.
KNOWN_COLLECTORS = frozenset(
    {"system"} | {name for names in CHECK_SOURCES.values() for name in names}
)
THRESHOLD_NAMES = frozenset(field.name for field in dataclasses.fields(Thresholds))
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class AgentGroup:
    name: str
    interval: timedelta  # zero: monitoring off
    collectors: tuple[str, ...]
    clear_checks: int
    thresholds: Mapping[str, float]  # Thresholds fields an admin set; the rest are defaults
    updated_by: str = ""
    updated_at: datetime | None = None
    members: tuple[str, ...] = ()  # agent ids, where the query reads them

    @property
    def off(self) -> bool:
        return self.interval <= timedelta(0)

    def check_thresholds(self) -> Thresholds:
        """The checks' thresholds with this group's overrides."""
        defaults = Thresholds()
        values = {
            name: type(getattr(defaults, name))(value) for name, value in self.thresholds.items()
        }
        return dataclasses.replace(defaults, **values)


BUILT_IN_DEFAULT = AgentGroup(
    DEFAULT_GROUP, DEFAULT_INTERVAL, DEFAULT_COLLECTORS, DEFAULT_CLEAR_CHECKS, {}
)


def checked_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"a group name is 1 to 64 letters, digits, '.', '_' or '-', got {name[:80]!r}"
        )
    return name


def checked_collectors(names: Sequence[str]) -> tuple[str, ...]:
    wanted = sorted({name.strip() for name in names if name.strip()})
    unknown = [name for name in wanted if name not in KNOWN_COLLECTORS]
    if unknown:
        raise InvalidArgument(
            f"no collector {', '.join(unknown)[:200]}: choose among "
            + ", ".join(sorted(KNOWN_COLLECTORS))
        )
    return tuple(wanted) or DEFAULT_COLLECTORS


def checked_thresholds(values: Mapping[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, value in sorted(values.items()):
        if name not in THRESHOLD_NAMES:
            raise InvalidArgument(
                f"no threshold {name[:80]!r}: the names are the fields of "
                "sonde.agent.checks.thresholds.Thresholds (docs/monitoring.md)"
            )
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"threshold {name} must be a number of 0 or more, got {value}")
        checked[name] = float(value)
    return checked


def group_from_row(row: object) -> AgentGroup:
    values = row._mapping  # type: ignore[attr-defined]
    return AgentGroup(
        name=values["name"],
        interval=timedelta(seconds=int(values["interval_s"])),
        collectors=tuple(n for n in str(values["collectors"]).split(",") if n)
        or DEFAULT_COLLECTORS,
        clear_checks=int(values["clear_checks"]),
        thresholds=json.loads(values["thresholds"]) if values["thresholds"] else {},
        updated_by=values["updated_by"],
        updated_at=values["updated_at"],
    )


def group_of(connection: Connection, group_name: str | None) -> AgentGroup:
    """The group an agent in `group_name` (None: in none) is monitored by."""
    row = connection.execute(
        select(agent_groups).where(agent_groups.c.name == (group_name or DEFAULT_GROUP))
    ).first()
    return BUILT_IN_DEFAULT if row is None else group_from_row(row)


class AgentGroups:
    def __init__(
        self,
        db: Database,
        audited: AuditedWrites,
        *,
        min_interval: timedelta = MIN_INTERVAL,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._audited = audited
        self._min_interval = min_interval
        self._clock = clock

    async def set_group(
        self,
        principal: Principal,
        name: str,
        *,
        interval: timedelta | None = None,
        collectors: Sequence[str] | None = None,
        clear_checks: int = 0,
        thresholds: Mapping[str, float] | None = None,
    ) -> AgentGroup:
        """Create or change a group, setting only what is given and keeping the rest as stored
        (the defaults for a new group): `interval` None: keep, zero: monitoring off;
        `collectors` None: keep, empty: the default light set; `clear_checks` 0: keep;
        `thresholds` None: keep them, {}: none. Read and written in one transaction, with the
        row locked, so two admins changing different settings both keep theirs. Its members'
        next check comes within the new interval."""
        name = checked_name(name)
        if (
            interval is not None
            and interval != timedelta(0)
            and not self._min_interval <= interval <= MAX_INTERVAL
        ):
            raise InvalidArgument(
                f"an interval is {_shown(self._min_interval)} to {MAX_INTERVAL.days} days (or off)"
            )
        if not 0 <= clear_checks <= MAX_CLEAR_CHECKS:
            raise InvalidArgument(f"the clear checks are 1 to {MAX_CLEAR_CHECKS} in a row")
        wanted_collectors = None if collectors is None else checked_collectors(collectors)
        wanted_thresholds = None if thresholds is None else checked_thresholds(thresholds)
        now = self._clock()

        def unit(connection: Connection, entry: AuditEntry) -> AgentGroup:
            row = connection.execute(
                select(agent_groups).where(agent_groups.c.name == name).with_for_update()
            ).first()
            before = (
                dataclasses.replace(BUILT_IN_DEFAULT, name=name)
                if row is None
                else group_from_row(row)
            )
            group = dataclasses.replace(
                before,
                interval=before.interval if interval is None else interval,
                collectors=before.collectors if wanted_collectors is None else wanted_collectors,
                clear_checks=clear_checks or before.clear_checks,
                thresholds=dict(before.thresholds)
                if wanted_thresholds is None
                else wanted_thresholds,
                updated_by=principal.name,
                updated_at=now,
            )
            settings = _stored(group)
            values: dict[str, object] = {
                **settings,
                "updated_by": principal.name,
                "updated_at": now,
            }
            if row is None:
                connection.execute(agent_groups.insert().values(name=name, **values))
            else:
                connection.execute(
                    update(agent_groups).where(agent_groups.c.name == name).values(values)
                )
            if not group.off:  # members wait at most one new interval
                members = monitoring_agents.c.group_name
                in_group = members.is_(None) if name == DEFAULT_GROUP else members == name
                connection.execute(
                    update(monitoring_agents)
                    .where(in_group)
                    .where(monitoring_agents.c.next_check_at > now + group.interval)
                    .values(next_check_at=now + group.interval)
                )
            stored_before = _stored(before)
            entry.detail |= {
                "group": name,
                "interval_s": settings["interval_s"],
                "collectors": settings["collectors"],
                "clear_checks": settings["clear_checks"],
                "thresholds": str(settings["thresholds"])[:500],
                # What this command changed; a new group: every setting.
                "changed": ",".join(
                    setting
                    for setting, value in settings.items()
                    if row is None or stored_before[setting] != value
                ),
            }
            return group

        return await self._audited.run(
            principal.name, "monitoring.group.set", unit, peer=principal.peer
        )

    async def assign(
        self, principal: Principal, name: str, agent_refs: Sequence[str]
    ) -> tuple[AgentGroup, list[str]]:
        """Put the agents `agent_refs` name in the group `name` (`default`: in none); each is
        checked at the next round, then every interval. The group and the agents' ids."""
        name = checked_name(name)
        if not 1 <= len(agent_refs) <= MAX_ASSIGN:
            raise InvalidArgument(f"name 1 to {MAX_ASSIGN} agents to put in the group")
        now = self._clock()

        def unit(connection: Connection, entry: AuditEntry) -> tuple[AgentGroup, list[str]]:
            row = connection.execute(
                select(agent_groups).where(agent_groups.c.name == name)
            ).first()
            if row is None and name != DEFAULT_GROUP:
                raise NotFound(
                    f"no agent group {name}: create it first (sonde group set {name} "
                    "--interval 15m)"
                )
            group = BUILT_IN_DEFAULT if row is None else group_from_row(row)
            found = [resolve_agent(connection, ref) for ref in agent_refs]
            agentless = [agent.hostname for agent in found if agent.reached_by]
            if agentless:
                raise InvalidArgument(
                    f"{', '.join(agentless)[:200]}: reached without an agent, not monitored"
                )
            ids = list(dict.fromkeys(agent.id for agent in found))
            stored_name = None if name == DEFAULT_GROUP else name
            for agent_id in ids:
                changed = connection.execute(
                    update(monitoring_agents)
                    .where(monitoring_agents.c.agent_id == agent_id)
                    .values(group_name=stored_name, next_check_at=now)
                ).rowcount
                if not changed:
                    connection.execute(
                        monitoring_agents.insert().values(
                            agent_id=agent_id, group_name=stored_name, next_check_at=now
                        )
                    )
            entry.agent_id = ids[0] if len(ids) == 1 else None
            entry.detail |= {"group": name, "agents": ",".join(ids)[:1000], "count": len(ids)}
            return group, ids

        return await self._audited.run(
            principal.name, "monitoring.group.assign", unit, peer=principal.peer
        )

    async def list(self) -> list[AgentGroup]:
        """Every group an admin set, by name, with its members."""

        def unit(connection: Connection) -> list[AgentGroup]:
            groups = [
                group_from_row(row)
                for row in connection.execute(select(agent_groups).order_by(agent_groups.c.name))
            ]
            members: dict[str | None, list[str]] = {}
            for row in connection.execute(
                select(monitoring_agents.c.agent_id, monitoring_agents.c.group_name).order_by(
                    monitoring_agents.c.agent_id
                )
            ):
                members.setdefault(row.group_name, []).append(row.agent_id)
            return [
                dataclasses.replace(
                    group,
                    members=tuple(
                        members.get(None if group.name == DEFAULT_GROUP else group.name, [])
                    ),
                )
                for group in groups
            ]

        return await self._db.read(unit)


def _stored(group: AgentGroup) -> dict[str, int | str]:
    """A group's settings as the agent_groups row holds them."""
    return {
        "interval_s": int(group.interval.total_seconds()),
        "collectors": ",".join(group.collectors),
        "clear_checks": group.clear_checks,
        "thresholds": json.dumps(dict(group.thresholds), sort_keys=True)
        if group.thresholds
        else "",
    }


def _shown(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
