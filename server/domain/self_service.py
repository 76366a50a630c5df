"""Self-service fixes: `sonde-agent fix [SCRIPT_ID]` on the workstation (docs/agent.md).

The machine's own user may run a published catalog script when its manifest says
`self_service = true` and its risk is low, on the machine of the agent's certificate only:
that rule is the whole authorization. No technician's permission is granted or borrowed; the
run is an ordinary signed script run (ScriptRuns.request with `self_service`), requested by
`user:<name>@<agent id prefix>`, the name being the agent's word for its caller (SO_PEERCRED).

Each run lands on a ticket of that machine: the one given, if it is about this agent and not
resolved or closed; else the user's own open workstation ticket of the last day; else a new one,
"Self-service fix: <title>". At most RUNS_PER_HOUR self-service runs per agent in any hour,
counted from the runs themselves (so across replicas and restarts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from sonde.catalog.manifest import Manifest, Risk
from sonde.server.domain.audit_rows import DetailValue
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.commands import CommandKind
from sonde.server.domain.local_users import local_requester
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.run_records import published_manifest
from sonde.server.domain.ticket_model import TicketChannel, TicketStatus
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.domain.tickets import MAX_TITLE_CHARS, Tickets
from sonde.server.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SondeError,
)
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, catalog_scripts, commands, tickets

if TYPE_CHECKING:
    from sonde.server.domain.script_runs import ScriptRuns

RUNS_PER_HOUR = 3
RUN_WINDOW = timedelta(hours=1)
REUSE_WINDOW = timedelta(hours=24)  # a ticket the user opened this long ago is reused
ACTOR_PREFIX = "user:"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._\\-]")
MAX_NAME_CHARS = 40


@dataclass(frozen=True)
class SelfServiceScript:
    id: str
    version: str
    title: str
    description: str


@dataclass(frozen=True)
class SelfServiceRun:
    command_id: str
    ticket_id: int
    script_title: str


def actor_name(local_user: str, agent_id: str) -> str:
    """`user:<name>@<agent id prefix>`: never a technician's name (they have no `:`)."""
    name = _NAME_CHARS.sub("_", local_user.strip())[:MAX_NAME_CHARS] or "unknown"
    return f"{ACTOR_PREFIX}{name}@{agent_id[:8]}"


def allowed(manifest: Manifest) -> bool:
    return manifest.self_service and manifest.risk is Risk.LOW


def check_self_service(
    connection: Connection,
    manifest: Manifest,
    agent_id: str,
    now: datetime,
    ticket_id: int | None = None,
) -> None:
    """Refused, saying why, unless the machine's user may run this script now (the rule, the
    ticket, the hourly limit); inside the run's unit, the agent's row locked (PostgreSQL)."""
    if not manifest.self_service:
        raise PermissionDenied(
            f"{manifest.id} is not a self-service script: ask the helpdesk to run it "
            "(sonde-agent help)"
        )
    if manifest.risk is not Risk.LOW:
        raise PermissionDenied(
            f"{manifest.id} is of {manifest.risk.value} risk: only low-risk scripts are "
            "self-service; ask the helpdesk to run it"
        )
    if ticket_id is not None:
        check_ticket(connection, ticket_id, agent_id)
    connection.execute(select(agents.c.id).where(agents.c.id == agent_id).with_for_update())
    since = now - RUN_WINDOW
    row = connection.execute(
        select(func.count(), func.min(commands.c.created_at))
        .where(commands.c.agent_id == agent_id)
        .where(commands.c.kind == CommandKind.RUN_SCRIPT.value)
        .where(commands.c.requested_by.like(f"{ACTOR_PREFIX}%"))
        .where(commands.c.created_at >= since)
    ).one()
    count, oldest = int(row[0]), row[1]
    if count >= RUNS_PER_HOUR:
        free_at = (oldest or now) + RUN_WINDOW
        wait_s = max(60, int((free_at - now).total_seconds()))
        raise ResourceExhausted(
            f"this computer already ran {count} self-service fixes in the last hour (at most "
            f"{RUNS_PER_HOUR}): try again in {wait_s // 60} min, or call the helpdesk",
            retry_after_ms=wait_s * 1000,
        )


def _newest_for(connection: Connection, platform: str) -> list[Manifest]:
    """The newest published version of each script for `platform`."""
    rows = connection.execute(
        select(
            catalog_scripts.c.script_id, catalog_scripts.c.platforms, catalog_scripts.c.manifest
        ).order_by(catalog_scripts.c.script_id, catalog_scripts.c.version_order.desc())
    ).all()
    chosen: dict[str, Manifest] = {}
    for row in rows:
        if row.script_id not in chosen and platform in row.platforms.split(","):
            chosen[row.script_id] = published_manifest(bytes(row.manifest))
    return list(chosen.values())


def _platform(connection: Connection, agent_id: str) -> str:
    platform = connection.execute(select(agents.c.platform).where(agents.c.id == agent_id)).scalar()
    if platform is None:
        raise NotFound(f"no agent {agent_id}")
    return str(platform)


class SelfService:
    def __init__(
        self,
        db: Database,
        script_runs: ScriptRuns,
        tickets_: Tickets,
        writes: AuditedWrites,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._runs = script_runs
        self._tickets = tickets_
        self._writes = writes
        self._clock = clock

    async def scripts(self, agent_id: str) -> list[SelfServiceScript]:
        """What this machine's user may run: published, self-service, low risk, its platform."""

        def unit(connection: Connection) -> list[SelfServiceScript]:
            platform = _platform(connection, agent_id)
            return [
                SelfServiceScript(m.id, m.version, m.title, m.description)
                for m in _newest_for(connection, platform)
                if allowed(m) and all(not p.required or p.default is not None for p in m.parameters)
            ]

        return await self._db.read(unit)

    async def fix(
        self, agent_id: str, script_id: str, local_user: str, ticket_id: int | None
    ) -> SelfServiceRun:
        """Queue the run, on its ticket; refused (SondeError, the message for the user)."""
        local_user = local_requester(local_user)
        actor = Principal(0, actor_name(local_user, agent_id), Role.L1)
        now = self._clock()
        try:
            manifest = await self._db.read(
                lambda connection: self._precheck(connection, agent_id, script_id, now, ticket_id)
            )
        except SondeError as refused:  # audited as the run's own refusals are
            detail: dict[str, DetailValue] = {"script": script_id[:64], "self_service": 1}
            if ticket_id is not None:
                detail["ticket"] = ticket_id  # not the row's ticket: it may not exist
            entry = AuditEntry(agent_id, None, detail)
            await self._writes.refused(actor.name, "script.run", refused, entry=entry)
            raise

        def ticket_for(connection: Connection) -> int:
            return self._ticket_in(connection, actor, agent_id, manifest, local_user)

        run = await self._runs.request(
            actor,
            agent_id,
            script_id,
            ticket_id=ticket_id,
            self_service=True,
            ticket_for=ticket_for,
        )
        assert run.command.ticket_id is not None  # given, or chosen by ticket_for
        return SelfServiceRun(run.command.id, run.command.ticket_id, manifest.title)

    def _precheck(
        self,
        connection: Connection,
        agent_id: str,
        script_id: str,
        now: datetime,
        ticket_id: int | None,
    ) -> Manifest:
        """The script this machine would run, checked before the run is asked for (the run's
        own unit checks again)."""
        if not script_id or len(script_id) > 64:
            raise InvalidArgument("name a script by its id (sonde-agent fix lists them)")
        platform = _platform(connection, agent_id)
        found = [m for m in _newest_for(connection, platform) if m.id == script_id]
        if not found:
            raise NotFound(
                f"no script {script_id!r} is published for this computer "
                "(sonde-agent fix lists those you may run)"
            )
        check_self_service(connection, found[0], agent_id, now, ticket_id)
        return found[0]

    def _ticket_in(
        self,
        connection: Connection,
        actor: Principal,
        agent_id: str,
        manifest: Manifest,
        local_user: str,
    ) -> int:
        """The run's ticket when none is given, inside the run's transaction (the agent's row
        locked): the user's open one of the last day, else a new one (audited `ticket.open`)."""
        now = self._clock()
        recent = _recent_ticket(connection, agent_id, local_user, now - REUSE_WINDOW)
        if recent is not None:
            return recent
        entry = AuditEntry(agent_id)
        entry.detail |= {"channel": TicketChannel.WORKSTATION.value, "script": manifest.id}
        title = f"Self-service fix: {manifest.title}"[:MAX_TITLE_CHARS]
        opened = self._tickets.open_in(
            connection,
            entry,
            actor,
            title=title,
            description=(
                f"The workstation's user {local_user} (as the agent reports it) ran the "
                f"self-service script {manifest.id} with `sonde-agent fix`."
            ),
            channel=TicketChannel.WORKSTATION,
            requester=local_user,
            agent=agent_id,
            tell_requester=False,
        )
        self._writes.append_in(connection, actor.name, "ticket.open", entry)
        return opened.id


def check_ticket(connection: Connection, ticket_id: int, agent_id: str) -> None:
    try:
        ticket = load_ticket(connection, ticket_id)
    except NotFound:
        raise NotFound(f"no ticket #{ticket_id}") from None
    if ticket.agent_id != agent_id:
        # Not "about another machine": that would tell a user which tickets exist elsewhere.
        raise PermissionDenied(f"ticket #{ticket_id} is not about this computer")
    if not ticket.status.is_open:
        raise PermissionDenied(
            f"ticket #{ticket_id} is {ticket.status.value.replace('_', ' ')}: run it without "
            "--ticket (a new ticket is opened), or ask the helpdesk to reopen it"
        )


def _recent_ticket(
    connection: Connection, agent_id: str, local_user: str, since: datetime
) -> int | None:
    found = connection.execute(
        select(tickets.c.id)
        .where(tickets.c.agent_id == agent_id)
        .where(tickets.c.channel == TicketChannel.WORKSTATION.value)
        .where(tickets.c.requester == local_user)
        .where(tickets.c.created_at >= since)
        .where(tickets.c.status.in_([s.value for s in TicketStatus if s.is_open]))
        .order_by(tickets.c.created_at.desc(), tickets.c.id.desc())
        .limit(1)
    ).scalar()
    return int(found) if found is not None else None
