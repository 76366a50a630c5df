"""Tickets: open, list, show with the timeline, and every move of the status machine.

    new --assign--> in_progress <--set_status--> waiting
    new | in_progress --wait (reason)--> waiting --resume--> the status it had
    new | in_progress | waiting --resolve--> resolved --close--> closed
    new | in_progress | waiting --close (with a note)--> closed
    resolved | closed --reopen--> in_progress (assigned) or new
Escalation moves L1 -> L2: in progress with the L2 assignee given, else new in the L2 queue.
Once a ticket is L2, resolving or closing it needs tickets.resolve_escalated (l2, admin); an L1
technician may still comment on it.

Every change is one unit of work with its audit row (AuditedWrites): the checks, the timeline
event, the ticket's new state and the row `ticket.<verb>` commit together or not at all; a
refused change is audited as a refusal. A change returns the ticket as it now is without
reading it back. On PostgreSQL a comment, the most frequent change, is one statement
(ticket_comments), in one round trip.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain.agents import resolve_agent
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.notifications import queue_to_requester
from sonde.server.domain.roles import Permission, Principal
from sonde.server.domain.satisfaction import ask_in
from sonde.server.domain.sla_terms import clocks_from, known_contract, terms_for
from sonde.server.domain.staff_notifications import queue_to_staff, staff_to_tell
from sonde.server.domain.text import checked_text
from sonde.server.domain.ticket_categories import offered_category
from sonde.server.domain.ticket_closure import checked_time_spent, missing_for_close
from sonde.server.domain.ticket_comments import (
    COMMENT_ALONE,
    COMMENTED,
    comment_values,
    commented,
)
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventKind,
    TicketEventRecord,
    TicketKind,
    TicketLevel,
    TicketOutcome,
    TicketPriority,
    TicketRecord,
    TicketStatus,
)
from sonde.server.domain.ticket_queries import (
    TICKET_COLUMNS,
    load_ticket,
    load_timeline,
    snapshot_agent,
    ticket_from_row,
    ticket_from_values,
    user_role,
)
from sonde.server.domain.ticket_resolution import reopen_in, resolve_in
from sonde.server.domain.ticket_resolution import save_ticket as _save
from sonde.server.domain.ticket_waiting import current_wait, end_of_wait, waited
from sonde.server.domain.timeline import append_event
from sonde.server.domain.workstation_rating import ask_on_workstation_in
from sonde.server.errors import Conflict, InvalidArgument, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, snapshots, tickets

MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 10_000
MAX_NAME_CHARS = 200
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
_BIGINT_END = 2**63  # ticket ids are 64-bit

# Statements built once (PERFORMANCE.md: building them per call costs 2-3x).
_INSERT_TICKET = tickets.insert().returning(tickets.c.id)
_AGENT_HOSTNAME = select(agents.c.hostname).where(agents.c.id == bindparam("agent_id"))
_LINK_SNAPSHOT = (
    update(snapshots)
    .where(snapshots.c.id == bindparam("linked_snapshot_id"), snapshots.c.ticket_id.is_(None))
    .values(ticket_id=bindparam("linked_ticket_id"))
)


@dataclasses.dataclass(frozen=True)
class Escalation:
    ticket: TicketRecord
    previous_assignee: str | None  # who had it before; the ticket tells who has it now


@dataclasses.dataclass(frozen=True)
class Resumption:
    ticket: TicketRecord
    waited: timedelta  # the resolve due time moved later by this much


@dataclasses.dataclass(frozen=True)
class TicketPage:
    tickets: builtins.list[TicketRecord]
    more: int  # matching tickets after this page


class Tickets:
    def __init__(
        self,
        db: Database,
        clock: Clock = utc_now,
        *,
        writes: AuditedWrites | None = None,
        notify: bool = False,
        rating_url: str = "",
    ) -> None:
        self._db = db
        self._clock = clock
        self._writes = writes if writes is not None else AuditedWrites(db, clock)
        # mail the requester on open and resolve (notifications.py), the assignee on an
        # assignment (staff_notifications.py)
        self._notify = notify
        # the web listener's address: a resolve mail asks for a rating there (satisfaction.py)
        self._rating_url = rating_url

    # -- reading ---------------------------------------------------------------------------

    async def list(
        self,
        *,
        statuses: Iterable[TicketStatus] = (),
        level: TicketLevel | None = None,
        assignee: str | None = None,
        agent_id: str | None = None,
        include_closed: bool = False,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[TicketRecord]:
        """Most urgent first (priority, then oldest); closed tickets only when asked."""
        found = await self.page(
            statuses=statuses,
            level=level,
            assignee=assignee,
            agent_id=agent_id,
            include_closed=include_closed,
            limit=limit,
        )
        return found.tickets

    async def page(
        self,
        *,
        statuses: Iterable[TicketStatus] = (),
        level: TicketLevel | None = None,
        assignee: str | None = None,
        agent_id: str | None = None,
        include_closed: bool = False,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> TicketPage:
        """One page of list()'s order, past `offset` matching tickets, and how many follow it."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}")
        if offset < 0:
            raise InvalidArgument(f"offset must be 0 or more, got {offset}")
        wanted = sorted(set(statuses))
        # The filters vary per call; a list is a read, not the hot path.
        query = select(*TICKET_COLUMNS).outerjoin(agents, agents.c.id == tickets.c.agent_id)
        if wanted:
            query = query.where(tickets.c.status.in_([status.value for status in wanted]))
        elif not include_closed:
            query = query.where(tickets.c.status != TicketStatus.CLOSED.value)
        if level is not None:
            query = query.where(tickets.c.level == level.value)
        if agent_id is not None:
            query = query.where(tickets.c.agent_id == agent_id)
        if assignee is not None:
            query = query.where(tickets.c.assignee == assignee)
        matching = select(func.count()).select_from(query.subquery())
        query = query.order_by(tickets.c.priority, tickets.c.id).limit(limit).offset(offset)

        def unit(connection: Connection) -> TicketPage:
            if assignee is not None:
                user_role(connection, assignee)
            found = [ticket_from_row(row) for row in connection.execute(query).all()]
            if len(found) < limit:
                return TicketPage(found, more=0)
            total = int(connection.execute(matching).scalar_one())
            return TicketPage(found, more=max(total - offset - len(found), 0))

        return await self._db.read(unit)

    async def ticket(self, ticket_id: int) -> TicketRecord:
        """The ticket alone (NotFound when there is none)."""
        return await self._db.read(lambda connection: load_ticket(connection, ticket_id))

    async def get(self, ticket_id: int) -> tuple[TicketRecord, builtins.list[TicketEventRecord]]:
        """The ticket and its timeline in order; DIAGNOSTIC events carry their snapshot."""

        def unit(connection: Connection) -> tuple[TicketRecord, builtins.list[TicketEventRecord]]:
            return load_ticket(connection, ticket_id), load_timeline(connection, ticket_id)

        return await self._db.read(unit)

    # -- changing --------------------------------------------------------------------------

    async def open(
        self,
        actor: Principal,
        *,
        title: str,
        description: str = "",
        channel: TicketChannel = TicketChannel.PHONE,
        requester: str = "",
        priority: TicketPriority = TicketPriority.P3,
        agent: str | None = None,
        assignee: str | None = None,
        snapshot_id: int | None = None,
        kind: TicketKind = TicketKind.INCIDENT,
        category: str | None = None,
        contract: str = "",
    ) -> TicketRecord:
        """Open a ticket; `agent` is an id, a host name or an unambiguous prefix of either;
        `category` a path of the tree (ticket_categories.py); `contract` the customer group
        whose SLA policy applies (sla_terms.py)."""

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            return self.open_in(
                connection,
                entry,
                actor,
                title=title,
                description=description,
                channel=channel,
                requester=requester,
                priority=priority,
                agent=agent,
                assignee=assignee,
                snapshot_id=snapshot_id,
                kind=kind,
                category=category,
                contract=contract,
            )

        return await self._writes.run(actor.name, "ticket.open", unit, peer=actor.peer)

    def open_in(
        self,
        connection: Connection,
        entry: AuditEntry,
        actor: Principal,
        *,
        title: str,
        description: str = "",
        channel: TicketChannel = TicketChannel.PHONE,
        requester: str = "",
        priority: TicketPriority = TicketPriority.P3,
        agent: str | None = None,
        assignee: str | None = None,
        snapshot_id: int | None = None,
        kind: TicketKind = TicketKind.INCIDENT,
        category: str | None = None,
        tell_requester: bool = True,
        contract: str = "",
    ) -> TicketRecord:
        """open()'s work inside the caller's unit of work (a mail's intake opens its ticket
        in the transaction that records the mail); `tell_requester` False: no mail to the
        requester (an automaton's mail is not answered)."""
        checked_title = checked_text(
            "the title", title, max_chars=MAX_TITLE_CHARS, required=True, multiline=False
        )
        checked_description = checked_text("the description", description, max_chars=MAX_BODY_CHARS)
        checked_requester = checked_text(
            "the requester", requester, max_chars=MAX_NAME_CHARS, multiline=False
        )
        agent_id, hostname = None, None
        if agent is not None:
            found = resolve_agent(connection, agent)
            agent_id, hostname = found.id, found.hostname
            entry.agent_id = agent_id
        if assignee is not None:
            user_role(connection, assignee)
        path = offered_category(connection, category) if category is not None else None
        of_snapshot = snapshot_agent(connection, snapshot_id)
        if of_snapshot is not None:
            if agent_id is not None and agent_id != of_snapshot:
                raise InvalidArgument(
                    f"snapshot {snapshot_id} is of agent {of_snapshot}, not of {agent_id}"
                )
            if agent_id is None:
                agent_id = entry.agent_id = of_snapshot
                hostname = connection.execute(_AGENT_HOSTNAME, {"agent_id": agent_id}).scalar()
        checked_contract = known_contract(connection, contract)
        now = self._clock()
        due = clocks_from(terms_for(connection, checked_contract, priority), priority, now)
        status = TicketStatus.IN_PROGRESS if assignee else TicketStatus.NEW
        values: dict[str, Any] = {
            "title": checked_title,
            "description": checked_description,
            "channel": channel.value,
            "requester": checked_requester,
            "priority": priority.value,
            "level": TicketLevel.L1.value,
            "status": status.value,
            "assignee": assignee,
            "agent_id": agent_id,
            "created_by": actor.name,
            "created_at": now,
            "updated_at": now,
            **due.columns(),
            "kind": kind.value,
            "category": path,
            "contract": checked_contract,
        }
        ticket_id = int(connection.execute(_INSERT_TICKET, values).scalar_one())
        entry.ticket_id = ticket_id
        append_event(
            connection,
            ticket_id,
            TicketEventKind.OPENED,
            actor.name,
            now,
            body=checked_title,
            to_status=status.value,
            assignee=assignee,
            touch_ticket=False,
        )
        if snapshot_id is not None:
            attach_snapshot_in(connection, ticket_id, snapshot_id, actor.name, now)
        opened = TicketRecord(
            id=ticket_id,
            title=checked_title,
            description=checked_description,
            channel=channel,
            requester=checked_requester,
            priority=priority,
            level=TicketLevel.L1,
            status=status,
            assignee=assignee,
            agent_id=agent_id,
            agent_hostname=hostname,
            created_by=actor.name,
            created_at=now,
            updated_at=now,
            response_due_at=due.response_due_at,
            resolve_due_at=due.resolve_due_at,
            first_response_at=None,
            resolution="",
            resolved_at=None,
            closed_at=None,
            kind=kind,
            category=path,
            contract=checked_contract,
            sla_policy_id=due.sla_policy_id,
            response_risk_at=due.response_risk_at,
            resolve_risk_at=due.resolve_risk_at,
        )
        if self._notify and tell_requester:
            queue_to_requester(connection, "opened", opened, now)
        self._tell_assignee(connection, opened, actor, now, f"{actor.name} opened it for you.")
        return opened

    async def comment(
        self, actor: Principal, ticket_id: int, body: str
    ) -> tuple[TicketRecord, TicketEventRecord]:
        """Add a comment; returns the ticket and the new timeline event."""
        if self._db.dialect == "postgresql":
            written = await self._comment_in_one_statement(actor, ticket_id, body)
            if written is not None:
                return written

        def unit(
            connection: Connection, entry: AuditEntry
        ) -> tuple[TicketRecord, TicketEventRecord]:
            text = checked_text("the comment", body, max_chars=MAX_BODY_CHARS, required=True)
            now = self._clock()
            rows = COMMENTED.rows(connection, {"comment_ticket_id": ticket_id, "comment_at": now})
            if not rows:
                load_ticket(connection, ticket_id)  # NotFound when there is no such ticket
                raise Conflict(f"ticket {ticket_id} is closed: reopen it first")
            event_id = append_event(
                connection,
                ticket_id,
                TicketEventKind.COMMENT,
                actor.name,
                now,
                body=text,
                touch_ticket=False,
            )
            event = TicketEventRecord(
                event_id, ticket_id, TicketEventKind.COMMENT, actor.name, now, text
            )
            return ticket_from_values(rows[0]), event

        return await self._writes.run(
            actor.name, "ticket.comment", unit, ticket_id=ticket_id, peer=actor.peer
        )

    async def _comment_in_one_statement(
        self, actor: Principal, ticket_id: int, body: str
    ) -> tuple[TicketRecord, TicketEventRecord] | None:
        """PostgreSQL: the comment in one round trip (ticket_comments). None: refused text, or
        no open ticket of that id; the unit of work then says which and audits it."""
        if not 0 < ticket_id < _BIGINT_END:
            return None
        try:
            text = checked_text("the comment", body, max_chars=MAX_BODY_CHARS, required=True)
        except InvalidArgument:
            return None
        now = self._clock()
        rows = await self._writes.run_alone(
            actor.name,
            "ticket.comment",
            COMMENT_ALONE[self._writes.keyed],
            comment_values(ticket_id, now, actor.name, text),
            ticket_id=ticket_id,
        )
        return commented(rows[0], actor.name, now, text) if rows else None

    def _tell_assignee(
        self,
        connection: Connection,
        ticket: TicketRecord,
        actor: Principal,
        now: datetime,
        body: str,
    ) -> None:
        """Mail the new assignee (when the server sends mail and they have an address), unless
        they gave it to themselves."""
        if not self._notify or ticket.assignee is None or ticket.assignee == actor.name:
            return
        people = staff_to_tell(connection, ticket.assignee, ticket.level)
        queue_to_staff(connection, "assigned", ticket=ticket, people=people, body=body, now=now)

    async def assign(
        self, actor: Principal, ticket_id: int, assignee: str | None = None
    ) -> TicketRecord:
        """Give the ticket to `assignee` (the actor when None); a new ticket goes in progress."""
        assignee = assignee or actor.name

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            ticket = load_ticket(connection, ticket_id, lock=True)
            require_open(ticket, "assign")
            role = user_role(connection, assignee)
            can_finish_l2 = role.may(Permission.TICKETS_RESOLVE_ESCALATED)
            if ticket.level is TicketLevel.L2 and not can_finish_l2:
                raise InvalidArgument(
                    f"ticket {ticket_id} is at L2: assign it to an l2 technician or an admin "
                    f"({assignee} is {role.label})"
                )
            status = (
                TicketStatus.IN_PROGRESS if ticket.status is TicketStatus.NEW else ticket.status
            )
            now = self._clock()
            append_event(
                connection,
                ticket_id,
                TicketEventKind.ASSIGNED,
                actor.name,
                now,
                touch_ticket=False,
                from_status=ticket.status.value,
                to_status=status.value,
                assignee=assignee,
            )
            saved = _save(connection, ticket, now, responded=True, assignee=assignee, status=status)
            self._tell_assignee(connection, saved, actor, now, f"{actor.name} gave it to you.")
            return saved

        return await self._writes.run(
            actor.name,
            "ticket.assign",
            unit,
            ticket_id=ticket_id,
            detail={"assignee": assignee},
            peer=actor.peer,
        )

    async def escalate(
        self,
        actor: Principal,
        ticket_id: int,
        reason: str,
        assignee: str | None = None,
        *,
        keep_assignee: bool = False,
    ) -> Escalation:
        """Move an L1 ticket to L2, saying why. It goes to `assignee` (an L2 technician or an
        admin), or stays with its assignee when `keep_assignee` (who must be one), or else
        leaves its assignee and waits in the L2 queue as new."""
        if keep_assignee and assignee is not None:
            raise InvalidArgument("escalate to a technician or keep the current assignee, not both")

        def unit(connection: Connection, entry: AuditEntry) -> Escalation:
            text = checked_text(
                "the escalation reason", reason, max_chars=MAX_BODY_CHARS, required=True
            )
            ticket = load_ticket(connection, ticket_id, lock=True)
            require_open(ticket, "escalate")
            if ticket.level is TicketLevel.L2:
                raise Conflict(f"ticket {ticket_id} is already at L2")
            kept = ticket.assignee if keep_assignee else None
            if keep_assignee and kept is None:
                raise InvalidArgument(f"ticket {ticket_id} has no assignee to keep")
            given = assignee or kept
            if given is not None:
                role = user_role(connection, given)
                if not role.may(Permission.TICKETS_RESOLVE_ESCALATED):
                    raise InvalidArgument(
                        f"an escalated ticket goes to an l2 technician or an admin; "
                        f"{given} is {role.label}"
                    )
            # The L1 assignee hands over: the ticket goes to the L2 queue (new) unless given to
            # someone, or kept, who then has it in progress (a kept waiting ticket still waits).
            status = TicketStatus.IN_PROGRESS if given else TicketStatus.NEW
            if kept is not None and ticket.status is TicketStatus.WAITING:
                status = TicketStatus.WAITING
            now = self._clock()
            still_waiting = status is TicketStatus.WAITING
            changes = (
                {}
                if still_waiting
                else end_of_wait(connection, current_wait(connection, ticket), ticket, now)
            )
            append_event(
                connection,
                ticket_id,
                TicketEventKind.ESCALATED,
                actor.name,
                now,
                touch_ticket=False,
                body=text,
                from_status=ticket.status.value,
                to_status=status.value,
                assignee=given,
            )
            escalated = _save(
                connection,
                ticket,
                now,
                responded=True,
                level=TicketLevel.L2,
                assignee=given,
                status=status,
                **changes,
            )
            if assignee is not None:
                self._tell_assignee(
                    connection, escalated, actor, now, f"{actor.name} escalated it to you: {text}"
                )
            return Escalation(escalated, ticket.assignee)

        return await self._writes.run(
            actor.name,
            "ticket.escalate",
            unit,
            ticket_id=ticket_id,
            detail={"assignee": assignee, "kept": "yes" if keep_assignee else "no"},
            peer=actor.peer,
        )

    async def set_status(
        self, actor: Principal, ticket_id: int, status: TicketStatus, note: str = ""
    ) -> TicketRecord:
        """Move an open ticket between new, in progress and waiting."""

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            if not status.is_open:
                raise InvalidArgument(f"use resolve or close to make a ticket {status.value}")
            text = checked_text("the note", note, max_chars=MAX_BODY_CHARS)
            ticket = load_ticket(connection, ticket_id, lock=True)
            require_open(ticket, f"mark {status.value}")
            if ticket.status is status:
                raise Conflict(f"ticket {ticket_id} is already {status.value}")
            now = self._clock()
            changes = end_of_wait(connection, current_wait(connection, ticket), ticket, now)
            append_event(
                connection,
                ticket_id,
                TicketEventKind.STATUS_CHANGED,
                actor.name,
                now,
                touch_ticket=False,
                body=text,
                from_status=ticket.status.value,
                to_status=status.value,
            )
            return _save(connection, ticket, now, responded=True, status=status, **changes)

        return await self._writes.run(
            actor.name,
            "ticket.set_status",
            unit,
            ticket_id=ticket_id,
            detail={"status": status.value},
            peer=actor.peer,
        )

    async def wait(self, actor: Principal, ticket_id: int, reason: str) -> TicketRecord:
        """The ticket waits on the requester (or a third party), saying for what; its resolve
        clock pauses until it is resumed, resolved or closed."""

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            text = checked_text(
                "the reason for waiting", reason, max_chars=MAX_BODY_CHARS, required=True
            )
            ticket = load_ticket(connection, ticket_id, lock=True)
            require_open(ticket, "put on hold")
            if ticket.status is TicketStatus.WAITING:
                raise Conflict(
                    f"ticket {ticket_id} is already waiting: resume it before it waits again"
                )
            now = self._clock()
            append_event(
                connection,
                ticket_id,
                TicketEventKind.WAITING,
                actor.name,
                now,
                touch_ticket=False,
                body=text,
                from_status=ticket.status.value,
                to_status=TicketStatus.WAITING.value,
            )
            return _save(connection, ticket, now, responded=True, status=TicketStatus.WAITING)

        return await self._writes.run(
            actor.name, "ticket.wait", unit, ticket_id=ticket_id, peer=actor.peer
        )

    async def resume(self, actor: Principal, ticket_id: int, note: str = "") -> Resumption:
        """A waiting ticket goes back to the status it had; its resolve due time moves later
        by the time it waited."""

        def unit(connection: Connection, entry: AuditEntry) -> Resumption:
            text = checked_text("the note", note, max_chars=MAX_BODY_CHARS)
            ticket = load_ticket(connection, ticket_id, lock=True)
            if ticket.status is not TicketStatus.WAITING:
                raise Conflict(
                    f"ticket {ticket_id} is {ticket.status.value}, not waiting: "
                    "only a waiting ticket can be resumed"
                )
            now = self._clock()
            wait = current_wait(connection, ticket)
            back_to = (
                wait.was
                if wait is not None
                else (TicketStatus.IN_PROGRESS if ticket.assignee else TicketStatus.NEW)
            )
            append_event(
                connection,
                ticket_id,
                TicketEventKind.RESUMED,
                actor.name,
                now,
                touch_ticket=False,
                body=text,
                from_status=TicketStatus.WAITING.value,
                to_status=back_to.value,
            )
            resumed = _save(
                connection,
                ticket,
                now,
                status=back_to,
                **end_of_wait(connection, wait, ticket, now),
            )
            return Resumption(resumed, waited(wait, now))

        return await self._writes.run(
            actor.name, "ticket.resume", unit, ticket_id=ticket_id, peer=actor.peer
        )

    async def resolve(
        self,
        actor: Principal,
        ticket_id: int,
        resolution: str,
        *,
        outcome: TicketOutcome,
        time_spent: timedelta,
    ) -> TicketRecord:
        """Resolve with a note, its outcome (resolution category) and the time spent on it."""

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            text = checked_text(
                "the resolution note", resolution, max_chars=MAX_BODY_CHARS, required=True
            )
            seconds = checked_time_spent(time_spent)
            ticket = load_ticket(connection, ticket_id, lock=True)
            require_open(ticket, "resolve")
            self._require_level(actor, ticket, "resolve")
            entry.detail |= {"outcome": outcome.value, "seconds": seconds}
            now = self._clock()
            resolved = resolve_in(
                connection, actor.name, ticket, text, now, outcome=outcome, time_spent_s=seconds
            )
            if self._notify:
                link = ask_in(connection, resolved, now, self._rating_url)
                queue_to_requester(
                    connection, "resolved", resolved, now, resolution=text, rating_link=link
                )
            ask_on_workstation_in(connection, resolved, now)
            return resolved

        return await self._writes.run(
            actor.name, "ticket.resolve", unit, ticket_id=ticket_id, peer=actor.peer
        )

    async def close(
        self,
        actor: Principal,
        ticket_id: int,
        note: str = "",
        *,
        outcome: TicketOutcome | None = None,
    ) -> TicketRecord:
        """Close a resolved ticket, or an open one with a note and an outcome saying why
        (duplicate, cancelled, ...), once its record is complete (ticket_closure.py)."""

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            text = checked_text("the closing note", note, max_chars=MAX_BODY_CHARS)
            ticket = load_ticket(connection, ticket_id, lock=True)
            if ticket.status is TicketStatus.CLOSED:
                raise Conflict(f"ticket {ticket_id} is already closed")
            self._require_level(actor, ticket, "close")
            resolved = ticket.status is TicketStatus.RESOLVED
            if not resolved and not text:
                raise InvalidArgument(
                    f"ticket {ticket_id} is {ticket.status.value}, not resolved: "
                    "closing it needs a note saying why"
                )
            if resolved and outcome is not None and outcome is not ticket.outcome:
                raise Conflict(
                    f"ticket {ticket_id} was resolved as {_outcome(ticket.outcome)}: reopen it "
                    "to resolve it otherwise"
                )
            ending = ticket.outcome if resolved else outcome
            missing = missing_for_close(connection, ticket, ending)
            if missing:
                raise Conflict(
                    f"ticket {ticket_id} cannot close, its record lacks: " + "; ".join(missing)
                )
            now = self._clock()
            changes = end_of_wait(connection, current_wait(connection, ticket), ticket, now)
            append_event(
                connection,
                ticket_id,
                TicketEventKind.CLOSED,
                actor.name,
                now,
                touch_ticket=False,
                body=text,
                from_status=ticket.status.value,
                to_status=TicketStatus.CLOSED.value,
            )
            return _save(
                connection,
                ticket,
                now,
                status=TicketStatus.CLOSED,
                closed_at=now,
                outcome=ending,
                **changes,
            )

        return await self._writes.run(
            actor.name, "ticket.close", unit, ticket_id=ticket_id, peer=actor.peer
        )

    async def reopen(self, actor: Principal, ticket_id: int, reason: str) -> TicketRecord:
        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            text = checked_text(
                "the reason to reopen", reason, max_chars=MAX_BODY_CHARS, required=True
            )
            ticket = load_ticket(connection, ticket_id, lock=True)
            if ticket.status.is_open:
                raise Conflict(
                    f"ticket {ticket_id} is {ticket.status.value}: "
                    "only a resolved or closed ticket can be reopened"
                )
            return reopen_in(connection, actor.name, ticket, text, self._clock())

        return await self._writes.run(
            actor.name, "ticket.reopen", unit, ticket_id=ticket_id, peer=actor.peer
        )

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _require_level(actor: Principal, ticket: TicketRecord, verb: str) -> None:
        if ticket.level is TicketLevel.L2 and not actor.may(Permission.TICKETS_RESOLVE_ESCALATED):
            raise PermissionDenied(
                f"ticket {ticket.id} is escalated to L2: an L1 technician may comment on it "
                f"but not {verb} it"
            )


def _outcome(outcome: TicketOutcome | None) -> str:
    return outcome.value.replace("_", "-") if outcome else "no outcome"


def attach_snapshot_in(
    connection: Connection, ticket_id: int, snapshot_id: int, actor: str, now: datetime
) -> None:
    """Link a snapshot of no ticket yet (the caller checked it is of the ticket's machine) to
    the ticket, as a diagnostic event on its timeline."""
    connection.execute(
        _LINK_SNAPSHOT, {"linked_snapshot_id": snapshot_id, "linked_ticket_id": ticket_id}
    )
    append_event(
        connection,
        ticket_id,
        TicketEventKind.DIAGNOSTIC,
        actor,
        now,
        snapshot_id=snapshot_id,
        touch_ticket=False,
    )


def require_open(ticket: TicketRecord, verb: str) -> None:
    """Conflict unless the ticket is open: a resolved or closed one is reopened first."""

    if ticket.status is TicketStatus.CLOSED:
        raise Conflict(f"ticket {ticket.id} is closed: reopen it first")
    if ticket.status is TicketStatus.RESOLVED:
        raise Conflict(f"ticket {ticket.id} is resolved: reopen it before you {verb} it")
