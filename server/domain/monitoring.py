"""Monitoring (docs/monitoring.md): a light collection on each agent's schedule, and the tickets
its critical findings open and, once cleared, close.

The schedule: every round (ROUND_S) each replica takes the online agents whose next check is due
(at most MAX_PER_ROUND) and moves each one's next_check_at on with a conditional UPDATE (the
value it read): of several replicas on one database only the one whose update matched queues
the collection (kind collect, requested by `monitoring`, no ticket, the group's collectors).
An agent with a monitoring collection still open gets no other: an offline machine piles none
up. An agent seen online for the first time is checked one interval later.

The result (`record`, in the unit of work that stores it, as the closed loop's verify_check):
the findings are those the server's checks give, with the group's threshold overrides. Per check
the CHECKS registry knows (an id an agent made up is ignored):

- critical, no open monitoring ticket for (machine, check): a ticket is opened (channel
  monitoring, priority p2, the snapshot attached), at most MAX_OPENED_PER_RESULT per result;
  monitoring_findings' unique (agent, check) keeps it one however many results come at once;
- ok, with an open one: its clear streak grows; at the group's clear_checks the server resolves
  it (outcome no_fault_found, or fixed when a technician worked on it) with a timeline note, and
  closes it when nobody worked on it; the row goes, freeing the slot;
- warning or critical again, with an open one: the streak starts over;
- no finding (its collector did not run): nothing changes.

A ticket resolved or closed by hand frees its slot at the next result. Ticket openings and
resolutions are audited as `monitoring.ticket_open` and `monitoring.ticket_resolve` (actor
`monitoring`); each scheduled collection is a command row, not an audit row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from sonde.agent.checks import CHECKS, CheckContext, evaluate
from sonde.agent.checks.sources import collectors_for
from sonde.server.domain.agent_groups import AgentGroup, group_of
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.commands import (
    OPEN_STATES,
    CommandKind,
    CommandRecord,
    CommandState,
    insert_command,
    new_command_id,
)
from sonde.server.domain.diagnostics import MONITOR_REQUESTER, MonitorResult, StoredSnapshotRecord
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.text import sanitized
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventKind,
    TicketOutcome,
    TicketPriority,
    TicketRecord,
    TicketStatus,
)
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.domain.ticket_resolution import resolve_in, save_ticket
from sonde.server.domain.tickets import MAX_TITLE_CHARS, Tickets
from sonde.server.domain.timeline import append_event
from sonde.server.domain.wakeups import Wake, WakeKind, Wakeups, emit
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, commands, monitoring_agents, monitoring_findings
from sonde.v1 import diagnostics_pb2

log = logging.getLogger(__name__)

MONITOR_ACTOR = MONITOR_REQUESTER
MONITOR_PRINCIPAL = Principal(0, MONITOR_ACTOR, Role.L1)
ROUND_S = 5.0
MAX_PER_ROUND = 200
MAX_OPENED_PER_RESULT = 5  # a result with many critical findings opens the rest later
OFF_RECHECK = timedelta(hours=1)  # an agent whose group is off is looked at again this late
MIN_EXPIRY = timedelta(seconds=30)
KNOWN_CHECKS = frozenset(check_id for check_id, _ in CHECKS)
_CRITICAL = diagnostics_pb2.SEVERITY_CRITICAL
_OK = diagnostics_pb2.SEVERITY_OK


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
    record = CommandRecord(
        id=new_command_id(),
        agent_id=agent_id,
        agent_hostname=hostname,
        kind=CommandKind.COLLECT,
        state=CommandState.QUEUED,
        ticket_id=None,
        requested_by=MONITOR_ACTOR,
        created_at=now,
        expires_at=now + max(group.interval, MIN_EXPIRY),
        delivered_at=None,
        started_at=None,
        finished_at=None,
        reason="",
        cancelled_by="",
        deliveries=0,
        snapshot_id=None,
        collectors=tuple(collectors_for(group.collectors)),
    )
    insert_command(connection, record)
    return record.id


# -- the result ---------------------------------------------------------------------------


def record_result(audited: AuditedWrites, tickets: Tickets) -> MonitorResult:
    """`record` as the diagnostics' monitor_result hook."""

    def monitor_result(
        connection: Connection,
        command: CommandRecord,
        stored: StoredSnapshotRecord,
        at: datetime,
    ) -> int:
        return record(audited, tickets, connection, command, stored, now=at)

    return monitor_result


def _findings_by_check(
    group: AgentGroup, stored: StoredSnapshotRecord, now: datetime
) -> dict[str, diagnostics_pb2.Finding]:
    found: Sequence[diagnostics_pb2.Finding] = stored.findings
    if group.thresholds:
        context = CheckContext(reference_time=now, thresholds=group.check_thresholds())
        found = evaluate(stored.snapshot, context)
    by_check: dict[str, diagnostics_pb2.Finding] = {}
    for finding in found:
        if finding.check in KNOWN_CHECKS and finding.check not in by_check:
            by_check[finding.check] = finding
    return by_check


def record(
    audited: AuditedWrites,
    tickets: Tickets,
    connection: Connection,
    command: CommandRecord,
    stored: StoredSnapshotRecord,
    *,
    now: datetime,
) -> int:
    """Open and close the agent's monitoring tickets for this monitoring collection's snapshot;
    how many tickets it opened or resolved."""
    agent_id = command.agent_id
    schedule = connection.execute(
        select(monitoring_agents.c.group_name, monitoring_agents.c.last_command_id)
        .where(monitoring_agents.c.agent_id == agent_id)
        .with_for_update()  # one result of an agent at a time (PostgreSQL)
    ).first()
    if schedule is None or schedule.last_command_id != command.id:
        return 0  # not the schedule's collection (a user who calls themself `monitoring`)
    group = group_of(connection, schedule.group_name)
    by_check = _findings_by_check(group, stored, now)
    open_rows = {
        row.check_id: row
        for row in connection.execute(
            select(monitoring_findings)
            .where(monitoring_findings.c.agent_id == agent_id)
            .with_for_update()
        )
    }
    changed = 0
    for check_id, row in sorted(open_rows.items()):
        ticket = load_ticket(connection, row.ticket_id, lock=True)
        if not ticket.status.is_open:  # resolved or closed by hand: the slot is free
            _free(connection, row.id)
            del open_rows[check_id]
            continue
        finding = by_check.get(check_id)
        if finding is None:
            continue  # its collector did not run: no news
        if finding.severity != _OK:
            if row.clear_streak:
                _set_streak(connection, row.id, 0)
            continue
        streak = row.clear_streak + 1
        if streak < group.clear_checks:
            _set_streak(connection, row.id, streak)
            continue
        _resolve(
            audited,
            connection,
            ticket=ticket,
            check_id=check_id,
            streak=streak,
            stored=stored,
            now=now,
        )
        _free(connection, row.id)
        changed += 1
    opened = 0
    for check_id, finding in by_check.items():
        if finding.severity != _CRITICAL or check_id in open_rows:
            continue
        if opened == MAX_OPENED_PER_RESULT:
            break
        _open(
            audited,
            tickets,
            connection,
            command=command,
            check_id=check_id,
            finding=finding,
            stored=stored,
            group=group,
            now=now,
        )
        opened += 1
    return changed + opened


def _set_streak(connection: Connection, row_id: int, streak: int) -> None:
    connection.execute(
        update(monitoring_findings)
        .where(monitoring_findings.c.id == row_id)
        .values(clear_streak=streak)
    )


def _free(connection: Connection, row_id: int) -> None:
    connection.execute(delete(monitoring_findings).where(monitoring_findings.c.id == row_id))


def _open(
    audited: AuditedWrites,
    tickets: Tickets,
    connection: Connection,
    *,
    command: CommandRecord,
    check_id: str,
    finding: diagnostics_pb2.Finding,
    stored: StoredSnapshotRecord,
    group: AgentGroup,
    now: datetime,
) -> None:
    hostname = sanitized(command.agent_hostname, max_chars=80) or command.agent_id
    summary = sanitized(finding.summary, max_chars=1000) or check_id
    title = sanitized(f"{hostname}: {summary}", max_chars=MAX_TITLE_CHARS)
    entry = AuditEntry(command.agent_id)
    description = (
        f"Monitoring found {check_id} critical on {hostname} ({command.agent_id}): {summary}\n"
        f"This ticket resolves itself once {check_id} is ok {group.clear_checks} checks in a "
        "row (docs/monitoring.md)."
    )
    ticket = tickets.open_in(
        connection,
        entry,
        MONITOR_PRINCIPAL,
        title=title,
        description=description,
        channel=TicketChannel.MONITORING,
        requester=MONITOR_ACTOR,
        priority=TicketPriority.P2,
        agent=command.agent_id,
        snapshot_id=stored.summary.id,
        tell_requester=False,
    )
    connection.execute(
        monitoring_findings.insert().values(
            agent_id=command.agent_id,
            check_id=check_id,
            ticket_id=ticket.id,
            clear_streak=0,
            opened_at=now,
        )
    )
    entry.detail |= {"check": check_id, "snapshot_id": stored.summary.id, "group": group.name}
    audited.append_in(connection, MONITOR_ACTOR, "monitoring.ticket_open", entry)


def _worked(ticket: TicketRecord) -> bool:
    return ticket.assignee is not None or ticket.time_spent_s > 0


def _resolve(
    audited: AuditedWrites,
    connection: Connection,
    *,
    ticket: TicketRecord,
    check_id: str,
    streak: int,
    stored: StoredSnapshotRecord,
    now: datetime,
) -> None:
    """Resolve the ticket as cleared; close it too when no technician worked on it (closure's
    record rules are for a technician's work: ticket_closure.py)."""
    worked = _worked(ticket)
    note = f"{check_id} cleared {streak} checks in a row (snapshot {stored.summary.id})"
    outcome = TicketOutcome.FIXED if worked else TicketOutcome.NO_FAULT_FOUND
    resolved = resolve_in(connection, MONITOR_ACTOR, ticket, note, now, outcome=outcome)
    if not worked:
        append_event(
            connection,
            ticket.id,
            TicketEventKind.CLOSED,
            MONITOR_ACTOR,
            now,
            touch_ticket=False,
            body="closed by monitoring: nobody worked on it and its finding cleared",
            from_status=resolved.status.value,
            to_status=TicketStatus.CLOSED.value,
        )
        save_ticket(connection, resolved, now, status=TicketStatus.CLOSED, closed_at=now)
    entry = AuditEntry(
        ticket.agent_id,
        ticket.id,
        {
            "check": check_id,
            "clear_checks": streak,
            "snapshot_id": stored.summary.id,
            "outcome": outcome.value,
            "closed": int(not worked),
        },
    )
    audited.append_in(connection, MONITOR_ACTOR, "monitoring.ticket_resolve", entry)
