"""Tickets asked for from the workstation itself: `sonde-agent help "my printer doesn't print"`.

The agent sends the user's words, the user name its kernel gave for the caller and a fresh
snapshot (agent.proto HelpRequest). One unit of work stores the snapshot with its findings,
opens the ticket (channel workstation, requester the local user, linked to the agent of the
stream's certificate, never to anything the message says), puts the snapshot on its timeline
and writes the audit row `ticket.open` by `agent:<id>`. An agent can lie only about its own
machine: the user name is its word, shown as such on the ticket.

At most HELP_TICKETS_PER_HOUR such tickets per agent in any hour, counted from the tickets
themselves (so across replicas and restarts); the next one is refused, and audited as a
refusal, with a message the user can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.diagnostics import insert_snapshot
from sonde.server.domain.local_users import local_requester
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.text import fitted, sanitized
from sonde.server.domain.ticket_model import TicketChannel, TicketRecord
from sonde.server.domain.tickets import MAX_TITLE_CHARS, Tickets
from sonde.server.errors import InvalidArgument, ResourceExhausted
from sonde.server.storage.tables import agents, tickets
from sonde.v1 import diagnostics_pb2

HELP_TICKETS_PER_HOUR = 5
HELP_WINDOW = timedelta(hours=1)
MAX_DESCRIPTION_CHARS = 4000  # as the agent's socket refuses (agent/help_socket.py)
TITLE_CHARS = 100


@dataclass(frozen=True)
class HelpAsked:
    """What an agent sent for its user, its id taken from the stream's certificate."""

    agent_id: str
    description: str
    local_user: str
    snapshot: diagnostics_pb2.Snapshot | None
    found: Sequence[diagnostics_pb2.Finding]
    received_at: datetime


def _title(description: str) -> str:
    first = sanitized(description.strip().splitlines()[0], max_chars=TITLE_CHARS + 1)
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1] + "…"


def _recent(connection: Connection, agent_id: str, since: datetime) -> tuple[int, datetime | None]:
    """How many workstation tickets the agent opened since `since`, and the oldest's time."""
    row = connection.execute(
        select(func.count(), func.min(tickets.c.created_at))
        .where(tickets.c.agent_id == agent_id)
        .where(tickets.c.channel == TicketChannel.WORKSTATION.value)
        .where(tickets.c.created_at >= since)
    ).one()
    return int(row[0]), row[1]


class WorkstationHelp:
    def __init__(self, tickets_: Tickets, writes: AuditedWrites) -> None:
        self._tickets = tickets_
        self._writes = writes

    async def open(self, asked: HelpAsked) -> TicketRecord:
        """Open the ticket, or refuse: InvalidArgument (no words), ResourceExhausted (the
        agent's hourly limit)."""
        agent_id = asked.agent_id
        actor = Principal(0, f"agent:{agent_id}", Role.L1)
        user = local_requester(asked.local_user)
        description = fitted(asked.description, MAX_DESCRIPTION_CHARS).strip()

        def unit(connection: Connection, entry: AuditEntry) -> TicketRecord:
            entry.agent_id = agent_id
            entry.detail |= {"channel": TicketChannel.WORKSTATION.value, "local_user": user}
            if not description:
                raise InvalidArgument("a request for help needs a description of the problem")
            # The agent's row locked (PostgreSQL): its requests count one after the other.
            hostname = connection.execute(
                select(agents.c.hostname).where(agents.c.id == agent_id).with_for_update()
            ).scalar()
            count, oldest = _recent(connection, agent_id, asked.received_at - HELP_WINDOW)
            if count >= HELP_TICKETS_PER_HOUR:
                free_at = (oldest or asked.received_at) + HELP_WINDOW
                wait_s = max(60, int((free_at - asked.received_at).total_seconds()))
                raise ResourceExhausted(
                    f"this computer already asked for help {count} times in the last hour "
                    f"(at most {HELP_TICKETS_PER_HOUR}); a technician will see those tickets. "
                    f"Call the helpdesk if it is urgent, or try again in {wait_s // 60} min",
                    retry_after_ms=wait_s * 1000,
                )
            shown = sanitized(str(hostname or ""), max_chars=80) or agent_id
            snapshot_id = None
            if asked.snapshot is not None:
                stored = insert_snapshot(
                    connection,
                    agent_id,
                    asked.snapshot,
                    asked.found,
                    received_at=asked.received_at,
                    command_id=None,
                    ticket_id=None,
                    requested_by=actor.name,
                    agent_hostname=shown,
                )
                snapshot_id = stored.summary.id
                entry.detail["snapshot_id"] = snapshot_id
                entry.detail["findings"] = len(asked.found)
            body = (
                f"{description}\n\nAsked from the workstation {shown} ({agent_id}) by its local "
                f"user {user} (as the agent reports it), with `sonde-agent help`."
            )
            return self._tickets.open_in(
                connection,
                entry,
                actor,
                title=_title(description)[:MAX_TITLE_CHARS],
                description=body,
                channel=TicketChannel.WORKSTATION,
                requester=user,
                agent=agent_id,
                snapshot_id=snapshot_id,
                tell_requester=False,  # a local user name, not an address
            )

        return await self._writes.run(actor.name, "ticket.open", unit, agent_id=agent_id)
