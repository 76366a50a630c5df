"""How a ticket is handled between intake and resolve: its details set (kind, category,
requester, machine), taken from a queue, handed back from L2 to L1, and the time spent logged.

- `set_details`: L1 sets the kind and category on intake (and fixes the requester or machine);
  on an escalated ticket the category is L2's to confirm or correct (tickets.resolve_escalated)
  and whoever does is recorded as having confirmed it. The timeline says what changed from
  what.
- `take`: the technician takes an open ticket that nobody has, from the queue of its level
  (an L2 ticket needs an L2 technician or an admin); two who take the same ticket at once
  serialise on its row lock, and the second is told who has it. An L2 taking an escalated
  ticket may confirm or correct its category in the same move.
- `hand_back`: L2 gives an escalated ticket back to L1 with a note: it goes back to the
  technician who escalated it (while their account is enabled) in progress, else to the L1
  queue.
- `log_time`: time spent on a ticket, added to its total, with what it was spent on.

Each is one unit of work with its audit row, as every ticket change (tickets.py).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.server.domain.agents import resolve_agent
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Permission, Principal
from sonde.server.domain.sla_terms import clocks_again, known_contract, terms_for
from sonde.server.domain.text import checked_text
from sonde.server.domain.ticket_categories import offered_category
from sonde.server.domain.ticket_closure import checked_time_spent, shown_time
from sonde.server.domain.ticket_model import (
    TicketEventKind,
    TicketKind,
    TicketLevel,
    TicketPriority,
    TicketRecord,
    TicketStatus,
)
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.domain.ticket_resolution import save_ticket
from sonde.server.domain.ticket_waiting import current_wait, end_of_wait
from sonde.server.domain.tickets import require_open
from sonde.server.domain.timeline import append_event
from sonde.server.errors import Conflict, InvalidArgument, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import sla_alerts, ticket_events, users

MAX_NOTE_CHARS = 10_000
MAX_NAME_CHARS = 200


class TicketHandling:
    def __init__(self, db: Database, writes: AuditedWrites, clock: Clock = utc_now) -> None:
        self._db = db
        self._writes = writes
        self._clock = clock

    async def set_details(
        self,
        actor: Principal,
        ticket_id: int,
        *,
        kind: TicketKind | None = None,
        category: str | None = None,
        requester: str | None = None,
        agent: str | None = None,
        priority: TicketPriority | None = None,
        contract: str | None = None,
    ) -> TicketRecord:
        """Set what is given; on an L2 ticket a category set is confirmed by the actor. A new
        priority or contract gives the ticket that SLA policy's clocks, counted from its
        opening (sla_terms.clocks_again)."""
        given = (kind, category, requester, agent, priority, contract)
        if all(value is None for value in given):
            raise InvalidArgument(
                "say what to set: --kind, --category, --requester, --agent, --priority or "
                "--contract"
            )

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            ticket = load_ticket(connection, ticket_id, lock=True)
            if ticket.status is TicketStatus.CLOSED:
                raise Conflict(f"ticket {ticket_id} is closed: its record is final")
            changes, said = self._details(
                connection, actor, ticket, kind=kind, category=category, requester=requester
            )
            hostname = ticket.agent_hostname
            if agent is not None:
                found = resolve_agent(connection, agent)
                if found.id != ticket.agent_id:
                    changes["agent_id"] = found.id
                    hostname = found.hostname
                    said.append(f"machine {found.hostname} ({found.id[:8]})")
                    entry.agent_id = found.id
            changes |= self._sla_terms(connection, ticket, priority, contract, said)
            if not changes:
                raise Conflict(f"ticket {ticket_id} has these details already: nothing changed")
            now = self._clock()
            entry.detail |= {key: str(value) for key, value in changes.items()}
            append_event(
                connection,
                ticket_id,
                TicketEventKind.CATEGORIZED,
                actor.name,
                now,
                touch_ticket=False,
                body="; ".join(said),
            )
            saved = save_ticket(connection, ticket, now, **changes)
            return dataclasses.replace(saved, agent_hostname=hostname)

        return await self._writes.run(
            actor.name, "ticket.set", unit, ticket_id=ticket_id, peer=actor.peer
        )

    @staticmethod
    def _sla_terms(
        connection: Connection,
        ticket: TicketRecord,
        priority: TicketPriority | None,
        contract: str | None,
        said: list[str],
    ) -> dict[str, Any]:
        """The changes of a new priority or contract: it, and the clocks of its policy."""
        changes: dict[str, Any] = {}
        if priority is not None and priority is not ticket.priority:
            changes["priority"] = priority
            said.append(f"priority {priority.value.upper()} (was {ticket.priority.value.upper()})")
        if contract is not None:
            group = known_contract(connection, contract)
            if group != ticket.contract:
                changes["contract"] = group
                said.append(
                    f"contract {group or '(default)'} (was {ticket.contract or '(default)'})"
                )
        if not changes:
            return {}
        changed = dataclasses.replace(ticket, **changes)
        terms = terms_for(connection, changed.contract, changed.priority)
        clocks = clocks_again(connection, changed, terms)
        said.append(
            f"SLA {'policy ' + terms.policy.name if terms else 'default targets'}: answer by "
            f"{clocks.response_due_at:%Y-%m-%d %H:%M} UTC, resolve by "
            f"{clocks.resolve_due_at:%Y-%m-%d %H:%M} UTC"
        )
        connection.execute(sla_alerts.delete().where(sla_alerts.c.ticket_id == ticket.id))
        return changes | clocks.columns()

    def _details(
        self,
        connection: Connection,
        actor: Principal,
        ticket: TicketRecord,
        *,
        kind: TicketKind | None,
        category: str | None,
        requester: str | None,
    ) -> tuple[dict[str, Any], list[str]]:
        changes: dict[str, Any] = {}
        said: list[str] = []
        escalated = ticket.level is TicketLevel.L2
        nature = kind is not None or category is not None
        if nature and escalated and not actor.may(Permission.TICKETS_RESOLVE_ESCALATED):
            raise PermissionDenied(
                f"ticket {ticket.id} is escalated to L2: its kind and category are L2's "
                "to confirm or correct"
            )
        if kind is not None and kind is not ticket.kind:
            changes["kind"] = kind
            said.append(f"kind {kind.value} (was {ticket.kind.value})")
        if category is not None:
            path = offered_category(connection, category)
            if path != ticket.category:
                changes["category"] = path
                was = f" (was {ticket.category})" if ticket.category else ""
                said.append(f"category {path}{was}")
            elif escalated:
                said.append(f"category {path} confirmed")
            # L2's confirmation is of the category as it is now; one L1 changes is not.
            changes["category_confirmed_by"] = actor.name if escalated else None
            if not escalated and "category" not in changes:
                del changes["category_confirmed_by"]
        if requester is not None:
            name = checked_text(
                "the requester", requester, max_chars=MAX_NAME_CHARS, required=True, multiline=False
            )
            if name != ticket.requester:
                changes["requester"] = name
                said.append(f"requester {name}")
        return changes, said

    async def take(
        self, actor: Principal, ticket_id: int, *, category: str | None = None
    ) -> TicketRecord:
        """Take an open ticket nobody has; at L2, optionally confirming its category."""

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            ticket = load_ticket(connection, ticket_id, lock=True)
            require_open(ticket, "take")
            if ticket.assignee == actor.name:
                raise Conflict(f"you have ticket {ticket_id} already")
            if ticket.assignee is not None:
                raise Conflict(
                    f"{ticket.assignee} has ticket {ticket_id}: `sonde ticket assign "
                    f"{ticket_id}` takes it over, if that is agreed"
                )
            escalated = ticket.level is TicketLevel.L2
            if escalated and not actor.may(Permission.TICKETS_RESOLVE_ESCALATED):
                raise PermissionDenied(
                    f"ticket {ticket_id} waits in the L2 queue: an l2 technician takes it"
                )
            changes: dict[str, Any] = {}
            said: list[str] = []
            if category is not None:
                if not escalated:
                    raise InvalidArgument(
                        "--category on take is L2's confirmation of an escalated ticket; "
                        f"set it with `sonde ticket set {ticket_id} --category PATH`"
                    )
                changes, said = self._details(
                    connection, actor, ticket, kind=None, category=category, requester=None
                )
            status = TicketStatus.IN_PROGRESS if ticket.status is TicketStatus.NEW else None
            now = self._clock()
            append_event(
                connection,
                ticket_id,
                TicketEventKind.TAKEN,
                actor.name,
                now,
                touch_ticket=False,
                body="; ".join(said),
                from_status=ticket.status.value,
                to_status=(status or ticket.status).value,
                assignee=actor.name,
            )
            if status is not None:
                changes["status"] = status
            return save_ticket(
                connection, ticket, now, responded=True, assignee=actor.name, **changes
            )

        return await self._writes.run(
            actor.name, "ticket.take", unit, ticket_id=ticket_id, peer=actor.peer
        )

    async def hand_back(self, actor: Principal, ticket_id: int, note: str) -> TicketRecord:
        """L2 gives an escalated ticket back to L1: to whoever escalated it, else the queue."""

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            text = checked_text("the note", note, max_chars=MAX_NOTE_CHARS, required=True)
            ticket = load_ticket(connection, ticket_id, lock=True)
            require_open(ticket, "hand back")
            if ticket.level is not TicketLevel.L2:
                raise Conflict(f"ticket {ticket_id} is at L1: only an escalated one goes back")
            if not actor.may(Permission.TICKETS_RESOLVE_ESCALATED):
                raise PermissionDenied("handing a ticket back to L1 is L2's")
            back_to = self._escalated_by(connection, ticket_id)
            status = TicketStatus.IN_PROGRESS if back_to else TicketStatus.NEW
            now = self._clock()
            changes = end_of_wait(connection, current_wait(connection, ticket), ticket, now)
            append_event(
                connection,
                ticket_id,
                TicketEventKind.HANDED_BACK,
                actor.name,
                now,
                touch_ticket=False,
                body=text,
                from_status=ticket.status.value,
                to_status=status.value,
                assignee=back_to,
            )
            entry.detail["back_to"] = back_to or "the L1 queue"
            return save_ticket(
                connection,
                ticket,
                now,
                level=TicketLevel.L1,
                assignee=back_to,
                status=status,
                **changes,
            )

        return await self._writes.run(
            actor.name, "ticket.hand_back", unit, ticket_id=ticket_id, peer=actor.peer
        )

    @staticmethod
    def _escalated_by(connection: Connection, ticket_id: int) -> str | None:
        """Who escalated it last, while they are an enabled user."""
        escalator = (
            select(ticket_events.c.actor)
            .where(ticket_events.c.ticket_id == ticket_id)
            .where(ticket_events.c.kind == TicketEventKind.ESCALATED.value)
            .order_by(ticket_events.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        found = connection.execute(
            select(users.c.name).where(users.c.name == escalator, users.c.disabled_at.is_(None))
        ).scalar()
        return None if found is None else str(found)

    async def log_time(
        self, actor: Principal, ticket_id: int, spent: timedelta, on_what: str = ""
    ) -> TicketRecord:
        """Add time spent on the ticket (not closed), with what it was spent on."""

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            seconds = checked_time_spent(spent)
            text = checked_text("what it was spent on", on_what, max_chars=MAX_NOTE_CHARS)
            ticket = load_ticket(connection, ticket_id, lock=True)
            if ticket.status is TicketStatus.CLOSED:
                raise Conflict(f"ticket {ticket_id} is closed: its record is final")
            now = self._clock()
            body = shown_time(seconds) + (f": {text}" if text else "")
            append_event(
                connection, ticket_id, TicketEventKind.TIME_LOGGED, actor.name, now,
                touch_ticket=False, body=body,
            )  # fmt: skip
            entry.detail["seconds"] = seconds
            return save_ticket(connection, ticket, now, time_spent_s=ticket.time_spent_s + seconds)

        return await self._writes.run(
            actor.name, "ticket.time", unit, ticket_id=ticket_id, peer=actor.peer
        )
