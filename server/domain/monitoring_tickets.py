"""Monitoring's tickets (docs/monitoring.md): what a scheduled collection's result opens,
reopens and closes, in the unit of work that stores it (as the closed loop's verify_check).

The findings are those the server's checks give, with the group's threshold overrides. Per
check the CHECKS registry knows (an id an agent made up is ignored):

- critical, no open monitoring ticket for (machine, check): the ticket the rule resolved for
  it within REOPEN_WINDOW is reopened (flapping keeps to one ticket), else a ticket is opened
  (channel monitoring, priority p2, the snapshot attached); at most MAX_OPENED_PER_RESULT per
  result. monitoring_findings' unique (agent, check) row holds the slot, so one however many
  results come at once; once the rule frees it, it stays (`cleared_at` set) to find the ticket;
- ok, with an open one: its clear streak grows; at the group's clear_checks the server resolves
  it (outcome no_fault_found, or fixed when a technician worked on it) with a timeline note, and
  closes it when nobody worked on it; the slot is freed;
- warning or critical again, with an open one: the streak starts over;
- no finding (its collector did not run): nothing changes.

A ticket resolved or closed by hand frees its slot at the next result, for good: the finding's
return opens a new ticket (a technician's closing is not undone). Openings, reopenings and
resolutions are audited as `monitoring.ticket_open`, `monitoring.ticket_reopen` and
`monitoring.ticket_resolve` (actor `monitoring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Row

from sonde.agent.checks import CHECKS, CheckContext, evaluate
from sonde.server.domain.agent_groups import AgentGroup, group_of
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.commands import CommandRecord
from sonde.server.domain.diagnostics import (
    MONITOR_REQUESTER,
    MonitorResult,
    StoredSnapshotRecord,
    replace_findings_in,
)
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
from sonde.server.domain.ticket_resolution import reopen_in, resolve_in, save_ticket
from sonde.server.domain.tickets import MAX_TITLE_CHARS, Tickets, attach_snapshot_in
from sonde.server.domain.timeline import append_event
from sonde.server.storage.tables import monitoring_agents, monitoring_findings
from sonde.v1 import diagnostics_pb2

MONITOR_ACTOR = MONITOR_REQUESTER
MONITOR_PRINCIPAL = Principal(0, MONITOR_ACTOR, Role.L1)
MAX_OPENED_PER_RESULT = 5  # a result with many critical findings opens the rest later
# A finding critical again this soon after its ticket was freed reopens that ticket.
REOPEN_WINDOW = timedelta(hours=24)
KNOWN_CHECKS = frozenset(check_id for check_id, _ in CHECKS)
_CRITICAL = diagnostics_pb2.SEVERITY_CRITICAL
_OK = diagnostics_pb2.SEVERITY_OK


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
    connection: Connection, group: AgentGroup, stored: StoredSnapshotRecord, now: datetime
) -> dict[str, diagnostics_pb2.Finding]:
    """The findings by check; judged with the group's thresholds when it has some, and then
    stored so, in place of those the default thresholds gave."""
    found: Sequence[diagnostics_pb2.Finding] = stored.findings
    if group.thresholds:
        context = CheckContext(reference_time=now, thresholds=group.check_thresholds())
        found = evaluate(stored.snapshot, context)
        replace_findings_in(connection, stored.summary.id, found)
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
    by_check = _findings_by_check(connection, group, stored, now)
    slots = {
        row.check_id: row
        for row in connection.execute(
            select(monitoring_findings)
            .where(monitoring_findings.c.agent_id == agent_id)
            .with_for_update()
        )
    }
    open_rows = {check_id: row for check_id, row in slots.items() if row.cleared_at is None}
    freed_at = {c: row.cleared_at for c, row in slots.items() if row.cleared_at is not None}
    changed = 0
    for check_id, row in sorted(open_rows.items()):
        ticket = load_ticket(connection, row.ticket_id, lock=True)
        if not ticket.status.is_open:  # resolved or closed by hand: the slot is free
            _forget(connection, row.id)  # a technician's word stands: no reopening it
            del open_rows[check_id], slots[check_id]
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
        _free(connection, row.id, now)
        changed += 1
    opened = 0
    for check_id, finding in by_check.items():
        if finding.severity != _CRITICAL or check_id in open_rows:
            continue
        if opened == MAX_OPENED_PER_RESULT:
            break
        raised = Raised(command, check_id, finding, stored, group, now)
        known, freed = slots.get(check_id), freed_at.get(check_id)
        if known is not None and freed is not None and freed > now - REOPEN_WINDOW:
            _reopen(audited, connection, raised, known, freed)
        else:
            _open(audited, tickets, connection, raised, known)
        opened += 1
    return changed + opened


def _set_streak(connection: Connection, row_id: int, streak: int) -> None:
    connection.execute(
        update(monitoring_findings)
        .where(monitoring_findings.c.id == row_id)
        .values(clear_streak=streak)
    )


def _forget(connection: Connection, row_id: int) -> None:
    connection.execute(delete(monitoring_findings).where(monitoring_findings.c.id == row_id))


def _free(connection: Connection, row_id: int, now: datetime) -> None:
    """The slot freed by the rule: the row stays, with when, so that the finding's return
    within REOPEN_WINDOW finds its ticket."""
    connection.execute(
        update(monitoring_findings)
        .where(monitoring_findings.c.id == row_id)
        .values(cleared_at=now, clear_streak=0)
    )


@dataclass(frozen=True)
class Raised:
    """A critical finding of a monitoring collection with no open ticket."""

    command: CommandRecord
    check_id: str
    finding: diagnostics_pb2.Finding
    stored: StoredSnapshotRecord
    group: AgentGroup
    now: datetime


def _take_slot(
    connection: Connection, raised: Raised, ticket_id: int, row: Row[Any] | None
) -> None:
    """The (machine, check) slot held by `ticket_id`: a new row, or `row`, freed, again."""
    if row is None:
        connection.execute(
            monitoring_findings.insert().values(
                agent_id=raised.command.agent_id,
                check_id=raised.check_id,
                ticket_id=ticket_id,
                clear_streak=0,
                opened_at=raised.now,
            )
        )
        return
    connection.execute(
        update(monitoring_findings)
        .where(monitoring_findings.c.id == row.id)
        .values(ticket_id=ticket_id, clear_streak=0, opened_at=raised.now, cleared_at=None)
    )


def _since(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def _open(
    audited: AuditedWrites,
    tickets: Tickets,
    connection: Connection,
    raised: Raised,
    row: Row[Any] | None,
) -> None:
    command, check_id, group = raised.command, raised.check_id, raised.group
    hostname = sanitized(command.agent_hostname, max_chars=80) or command.agent_id
    summary = sanitized(raised.finding.summary, max_chars=1000) or check_id
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
        snapshot_id=raised.stored.summary.id,
        tell_requester=False,
    )
    _take_slot(connection, raised, ticket.id, row)
    snapshot_id = raised.stored.summary.id
    entry.detail |= {"check": check_id, "snapshot_id": snapshot_id, "group": group.name}
    audited.append_in(connection, MONITOR_ACTOR, "monitoring.ticket_open", entry)


def _reopen(
    audited: AuditedWrites,
    connection: Connection,
    raised: Raised,
    row: Row[Any],
    freed_at: datetime,
) -> None:
    """The finding is back within REOPEN_WINDOW of its ticket being freed at `freed_at`: that
    ticket again, reopened (unless someone did already), with this snapshot on its timeline."""
    check_id, now, snapshot_id = raised.check_id, raised.now, raised.stored.summary.id
    ticket = load_ticket(connection, int(row.ticket_id), lock=True)
    after = now - freed_at
    if not ticket.status.is_open:
        reason = (
            f"{check_id} is critical again {_since(after)} after this ticket was "
            f"{ticket.status.value} (snapshot {snapshot_id}): reopened by monitoring. It "
            f"resolves itself once {check_id} is ok {raised.group.clear_checks} checks in a row."
        )
        reopen_in(connection, MONITOR_ACTOR, ticket, reason, now)
    attach_snapshot_in(connection, ticket.id, snapshot_id, MONITOR_ACTOR, now)
    _take_slot(connection, raised, ticket.id, row)
    entry = AuditEntry(
        ticket.agent_id,
        ticket.id,
        {
            "check": check_id,
            "snapshot_id": snapshot_id,
            "group": raised.group.name,
            "after_s": int(after.total_seconds()),
        },
    )
    audited.append_in(connection, MONITOR_ACTOR, "monitoring.ticket_reopen", entry)


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
