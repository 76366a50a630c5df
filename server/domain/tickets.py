"""Tickets: open, list, show with the timeline, and every move of the status machine.

    new --assign--> in_progress <--set_status--> waiting
    new | in_progress | waiting --resolve--> resolved --close--> closed
    new | in_progress | waiting --close (with a note)--> closed
    resolved | closed --reopen--> in_progress (assigned) or new
Escalation moves L1 -> L2: in progress with the L2 assignee given, else new in the L2 queue.
Once a ticket is L2, resolving or closing it needs tickets.resolve_escalated (l2, admin); an L1
technician may still comment on it.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sonde.server.domain import sla
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Permission, Principal
from sonde.server.domain.text import checked_text
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventKind,
    TicketEventRecord,
    TicketLevel,
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
    user_role,
)
from sonde.server.domain.timeline import append_event
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, snapshots, tickets

MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 10_000
MAX_NAME_CHARS = 200
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000


class Tickets:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

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
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}")
        wanted = sorted(set(statuses))
        query = select(*TICKET_COLUMNS).outerjoin(agents, agents.c.id == tickets.c.agent_id)
        if wanted:
            query = query.where(tickets.c.status.in_([status.value for status in wanted]))
        elif not include_closed:
            query = query.where(tickets.c.status != TicketStatus.CLOSED.value)
        if level is not None:
            query = query.where(tickets.c.level == level.value)
        if agent_id is not None:
            query = query.where(tickets.c.agent_id == agent_id)
        async with self._db.reading() as session:
            if assignee is not None:
                await user_role(session, assignee)
                query = query.where(tickets.c.assignee == assignee)
            query = query.order_by(tickets.c.priority, tickets.c.id).limit(limit)
            return [ticket_from_row(row) for row in (await session.execute(query)).all()]

    async def ticket(self, ticket_id: int) -> TicketRecord:
        """The ticket alone (NotFound when there is none)."""
        async with self._db.reading() as session:
            return await load_ticket(session, ticket_id)

    async def get(self, ticket_id: int) -> tuple[TicketRecord, builtins.list[TicketEventRecord]]:
        """The ticket and its timeline in order; DIAGNOSTIC events carry their snapshot."""
        async with self._db.reading() as session:
            return await load_ticket(session, ticket_id), await load_timeline(session, ticket_id)

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
        agent_id: str | None = None,
        assignee: str | None = None,
        snapshot_id: int | None = None,
    ) -> TicketRecord:
        title = checked_text(
            "the title", title, max_chars=MAX_TITLE_CHARS, required=True, multiline=False
        )
        description = checked_text("the description", description, max_chars=MAX_BODY_CHARS)
        requester = checked_text(
            "the requester", requester, max_chars=MAX_NAME_CHARS, multiline=False
        )
        now = self._clock()
        due = sla.due_times(priority, now)
        async with self._db.transaction() as session:
            if assignee is not None:
                await user_role(session, assignee)
            of_snapshot = await snapshot_agent(session, snapshot_id)
            if of_snapshot is not None:
                if agent_id is not None and agent_id != of_snapshot:
                    raise InvalidArgument(
                        f"snapshot {snapshot_id} is of agent {of_snapshot}, not of {agent_id}"
                    )
                agent_id = of_snapshot
            if agent_id is not None:
                found = await session.execute(select(agents.c.id).where(agents.c.id == agent_id))
                if found.first() is None:
                    raise NotFound(f"no agent with id {agent_id[:40]!r}")
            status = TicketStatus.IN_PROGRESS if assignee else TicketStatus.NEW
            ticket_id = (
                await session.execute(
                    tickets.insert()
                    .values(
                        title=title,
                        description=description,
                        channel=channel.value,
                        requester=requester,
                        priority=priority.value,
                        level=TicketLevel.L1.value,
                        status=status.value,
                        assignee=assignee,
                        agent_id=agent_id,
                        created_by=actor.name,
                        created_at=now,
                        updated_at=now,
                        response_due_at=due.response_due_at,
                        resolve_due_at=due.resolve_due_at,
                    )
                    .returning(tickets.c.id)
                )
            ).scalar_one()
            await append_event(
                session,
                ticket_id,
                TicketEventKind.OPENED,
                actor.name,
                now,
                body=title,
                to_status=status.value,
                assignee=assignee,
            )
            if snapshot_id is not None:
                await session.execute(
                    update(snapshots)
                    .where(snapshots.c.id == snapshot_id, snapshots.c.ticket_id.is_(None))
                    .values(ticket_id=ticket_id)
                )
                await append_event(
                    session,
                    ticket_id,
                    TicketEventKind.DIAGNOSTIC,
                    actor.name,
                    now,
                    snapshot_id=snapshot_id,
                )
            return await load_ticket(session, int(ticket_id))

    async def comment(
        self, actor: Principal, ticket_id: int, body: str
    ) -> tuple[TicketRecord, TicketEventRecord]:
        """Add a comment; returns the ticket and the new timeline event."""
        body = checked_text("the comment", body, max_chars=MAX_BODY_CHARS, required=True)
        async with self._db.transaction() as session:
            ticket = await load_ticket(session, ticket_id, lock=True)
            if ticket.status is TicketStatus.CLOSED:
                raise Conflict(f"ticket {ticket_id} is closed: reopen it first")
            now = self._clock()
            event_id = await append_event(
                session,
                ticket_id,
                TicketEventKind.COMMENT,
                actor.name,
                now,
                body=body,
                touch_ticket=False,
            )
            ticket = await self._save(session, ticket, now, responded=True)
        event = TicketEventRecord(
            event_id, ticket_id, TicketEventKind.COMMENT, actor.name, now, body
        )
        return ticket, event

    async def assign(
        self, actor: Principal, ticket_id: int, assignee: str | None = None
    ) -> TicketRecord:
        """Give the ticket to `assignee` (the actor when None); a new ticket goes in progress."""
        assignee = assignee or actor.name
        async with self._db.transaction() as session:
            ticket = await load_ticket(session, ticket_id, lock=True)
            self._require_open(ticket, "assign")
            role = await user_role(session, assignee)
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
            await append_event(
                session,
                ticket_id,
                TicketEventKind.ASSIGNED,
                actor.name,
                now,
                touch_ticket=False,
                from_status=ticket.status.value,
                to_status=status.value,
                assignee=assignee,
            )
            return await self._save(
                session, ticket, now, responded=True, assignee=assignee, status=status
            )

    async def escalate(
        self, actor: Principal, ticket_id: int, reason: str, assignee: str | None = None
    ) -> TicketRecord:
        """Move an L1 ticket to L2, saying why; optionally straight to an L2 technician."""
        reason = checked_text(
            "the escalation reason", reason, max_chars=MAX_BODY_CHARS, required=True
        )
        async with self._db.transaction() as session:
            ticket = await load_ticket(session, ticket_id, lock=True)
            self._require_open(ticket, "escalate")
            if ticket.level is TicketLevel.L2:
                raise Conflict(f"ticket {ticket_id} is already at L2")
            if assignee is not None:
                role = await user_role(session, assignee)
                if not role.may(Permission.TICKETS_RESOLVE_ESCALATED):
                    raise InvalidArgument(
                        f"an escalated ticket goes to an l2 technician or an admin; "
                        f"{assignee} is {role.label}"
                    )
            # The L1 assignee hands over: the ticket goes to the L2 queue (new) unless given to
            # someone, who then has it in progress.
            status = TicketStatus.IN_PROGRESS if assignee else TicketStatus.NEW
            now = self._clock()
            await append_event(
                session,
                ticket_id,
                TicketEventKind.ESCALATED,
                actor.name,
                now,
                touch_ticket=False,
                body=reason,
                from_status=ticket.status.value,
                to_status=status.value,
                assignee=assignee,
            )
            return await self._save(
                session,
                ticket,
                now,
                responded=True,
                level=TicketLevel.L2,
                assignee=assignee,
                status=status,
            )

    async def set_status(
        self, actor: Principal, ticket_id: int, status: TicketStatus, note: str = ""
    ) -> TicketRecord:
        """Move an open ticket between new, in progress and waiting."""
        if not status.is_open:
            raise InvalidArgument(f"use resolve or close to make a ticket {status.value}")
        note = checked_text("the note", note, max_chars=MAX_BODY_CHARS)
        async with self._db.transaction() as session:
            ticket = await load_ticket(session, ticket_id, lock=True)
            self._require_open(ticket, f"mark {status.value}")
            if ticket.status is status:
                raise Conflict(f"ticket {ticket_id} is already {status.value}")
            now = self._clock()
            await append_event(
                session,
                ticket_id,
                TicketEventKind.STATUS_CHANGED,
                actor.name,
                now,
                touch_ticket=False,
                body=note,
                from_status=ticket.status.value,
                to_status=status.value,
            )
            return await self._save(session, ticket, now, responded=True, status=status)

    async def resolve(self, actor: Principal, ticket_id: int, resolution: str) -> TicketRecord:
        resolution = checked_text(
            "the resolution note", resolution, max_chars=MAX_BODY_CHARS, required=True
        )
        async with self._db.transaction() as session:
            ticket = await load_ticket(session, ticket_id, lock=True)
            self._require_open(ticket, "resolve")
            self._require_level(actor, ticket, "resolve")
            now = self._clock()
            await append_event(
                session,
                ticket_id,
                TicketEventKind.RESOLVED,
                actor.name,
                now,
                touch_ticket=False,
                body=resolution,
                from_status=ticket.status.value,
                to_status=TicketStatus.RESOLVED.value,
            )
            return await self._save(
                session,
                ticket,
                now,
                responded=True,
                status=TicketStatus.RESOLVED,
                resolution=resolution,
                resolved_at=now,
            )

    async def close(self, actor: Principal, ticket_id: int, note: str = "") -> TicketRecord:
        """Close a resolved ticket, or an open one with a note saying why (duplicate, ...)."""
        note = checked_text("the closing note", note, max_chars=MAX_BODY_CHARS)
        async with self._db.transaction() as session:
            ticket = await load_ticket(session, ticket_id, lock=True)
            if ticket.status is TicketStatus.CLOSED:
                raise Conflict(f"ticket {ticket_id} is already closed")
            self._require_level(actor, ticket, "close")
            if ticket.status is not TicketStatus.RESOLVED and not note:
                raise InvalidArgument(
                    f"ticket {ticket_id} is {ticket.status.value}, not resolved: "
                    "closing it needs a note saying why"
                )
            now = self._clock()
            await append_event(
                session,
                ticket_id,
                TicketEventKind.CLOSED,
                actor.name,
                now,
                touch_ticket=False,
                body=note,
                from_status=ticket.status.value,
                to_status=TicketStatus.CLOSED.value,
            )
            return await self._save(session, ticket, now, status=TicketStatus.CLOSED, closed_at=now)

    async def reopen(self, actor: Principal, ticket_id: int, reason: str) -> TicketRecord:
        reason = checked_text(
            "the reason to reopen", reason, max_chars=MAX_BODY_CHARS, required=True
        )
        async with self._db.transaction() as session:
            ticket = await load_ticket(session, ticket_id, lock=True)
            if ticket.status.is_open:
                raise Conflict(
                    f"ticket {ticket_id} is {ticket.status.value}: "
                    "only a resolved or closed ticket can be reopened"
                )
            status = TicketStatus.IN_PROGRESS if ticket.assignee else TicketStatus.NEW
            now = self._clock()
            await append_event(
                session,
                ticket_id,
                TicketEventKind.REOPENED,
                actor.name,
                now,
                touch_ticket=False,
                body=reason,
                from_status=ticket.status.value,
                to_status=status.value,
            )
            return await self._save(
                session, ticket, now, status=status, resolution="", resolved_at=None, closed_at=None
            )

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _require_open(ticket: TicketRecord, verb: str) -> None:
        if ticket.status is TicketStatus.CLOSED:
            raise Conflict(f"ticket {ticket.id} is closed: reopen it first")
        if ticket.status is TicketStatus.RESOLVED:
            raise Conflict(f"ticket {ticket.id} is resolved: reopen it before you {verb} it")

    @staticmethod
    def _require_level(actor: Principal, ticket: TicketRecord, verb: str) -> None:
        if ticket.level is TicketLevel.L2 and not actor.may(Permission.TICKETS_RESOLVE_ESCALATED):
            raise PermissionDenied(
                f"ticket {ticket.id} is escalated to L2: an L1 technician may comment on it "
                f"but not {verb} it"
            )

    @staticmethod
    async def _save(
        session: AsyncSession,
        ticket: TicketRecord,
        now: datetime,
        *,
        responded: bool = False,
        **changes: Any,
    ) -> TicketRecord:
        """Write `changes` to the ticket and return it as it now is (no read back)."""
        changes["updated_at"] = now
        if responded and ticket.first_response_at is None:
            changes["first_response_at"] = now
        stored = {
            key: value.value if isinstance(value, TicketStatus | TicketLevel) else value
            for key, value in changes.items()
        }
        await session.execute(update(tickets).where(tickets.c.id == ticket.id).values(**stored))
        return dataclasses.replace(ticket, **changes)
