"""The SLA watch: acts once on each clock that turns at risk or is breached (docs/sla.md).

Every WATCH_INTERVAL_S the watch reads the open tickets whose response clock (until the first
answer) or resolve clock (not while waiting on the requester) passed its at-risk instant or
its due time, and that it has not acted on. For each it takes the ticket's row lock, checks
again, records the alert (sla_alerts: one per ticket, clock and state), writes a timeline
event and acts, in one audited unit:

- at risk, policy `escalate`, ticket at L1: escalated to the L2 queue, saying why;
- otherwise: the assignee is told by mail, or, for a ticket nobody has, the technicians of its
  level (at most MAX_TOLD) with a mail address; a breach is always told, never escalated.

Several replicas may watch: the row lock and the alert row make each act happen once. Mails go
through the outbox, so only when the server sends notifications (`--smtp`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, select
from sqlalchemy.engine import Connection

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.sla_terms import terms_of
from sonde.server.domain.staff_notifications import queue_to_staff, staff_to_tell
from sonde.server.domain.ticket_model import (
    TicketEventKind,
    TicketLevel,
    TicketRecord,
    TicketStatus,
)
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.domain.ticket_resolution import save_ticket
from sonde.server.domain.ticket_waiting import current_wait, end_of_wait
from sonde.server.domain.timeline import append_event
from sonde.server.storage.db import Database
from sonde.server.storage.tables import sla_alerts, tickets

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 30.0
MAX_PER_ROUND = 500
WATCH_ACTOR = "sla-watch"
_OPEN = (TicketStatus.NEW.value, TicketStatus.IN_PROGRESS.value, TicketStatus.WAITING.value)


@dataclass(frozen=True)
class Alert:
    ticket_id: int
    clock: str  # response | resolve
    state: str  # at_risk | breached


def _not_alerted(clock: str, state: str) -> object:
    return ~exists().where(
        and_(
            sla_alerts.c.ticket_id == tickets.c.id,
            sla_alerts.c.clock == clock,
            sla_alerts.c.state == state,
        )
    )


def _due_alerts(now: datetime) -> list[tuple[Alert, object]]:
    response_open = and_(tickets.c.status.in_(_OPEN), tickets.c.first_response_at.is_(None))
    resolve_running = tickets.c.status.in_((TicketStatus.NEW.value, TicketStatus.IN_PROGRESS.value))
    return [
        (Alert(0, "response", "breached"), and_(response_open, tickets.c.response_due_at < now)),
        (Alert(0, "resolve", "breached"), and_(resolve_running, tickets.c.resolve_due_at < now)),
        (
            Alert(0, "response", "at_risk"),
            and_(response_open, tickets.c.response_risk_at <= now),
        ),
        (Alert(0, "resolve", "at_risk"), and_(resolve_running, tickets.c.resolve_risk_at <= now)),
    ]


def _still_holds(ticket: TicketRecord, alert: Alert, now: datetime) -> bool:
    if not ticket.status.is_open:
        return False
    if alert.clock == "response":
        if ticket.first_response_at is not None:
            return False
        instant = ticket.response_due_at if alert.state == "breached" else ticket.response_risk_at
    else:
        if ticket.status is TicketStatus.WAITING:
            return False
        instant = ticket.resolve_due_at if alert.state == "breached" else ticket.resolve_risk_at
    if instant is None:
        return False
    return instant < now if alert.state == "breached" else instant <= now


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


class SlaWatch:
    def __init__(
        self,
        db: Database,
        writes: AuditedWrites,
        clock: Clock = utc_now,
        *,
        tell_by_mail: bool = False,
        interval_s: float = WATCH_INTERVAL_S,
    ) -> None:
        self._db = db
        self._writes = writes
        self._clock = clock
        self._tell_by_mail = tell_by_mail
        self._interval_s = interval_s

    async def run(self) -> None:
        while True:
            try:
                await self.watch_once()
            except Exception:  # a round's bug must not end the watch
                log.exception("sla watch: a round failed")
            await asyncio.sleep(self._interval_s)

    async def due(self) -> list[Alert]:
        """The alerts to act on now, breaches first, at most MAX_PER_ROUND."""
        now = self._clock()

        def unit(connection: Connection) -> list[Alert]:
            found: list[Alert] = []
            for template, condition in _due_alerts(now):
                ids = connection.execute(
                    select(tickets.c.id)
                    .where(condition, _not_alerted(template.clock, template.state))  # type: ignore[arg-type]
                    .order_by(tickets.c.id)
                    .limit(MAX_PER_ROUND - len(found))
                ).scalars()
                found.extend(Alert(int(i), template.clock, template.state) for i in ids)
                if len(found) >= MAX_PER_ROUND:
                    break
            return found

        return await self._db.read(unit)

    async def watch_once(self) -> int:
        """Act on what is due; how many acts were taken."""
        acted = 0
        for alert in await self.due():
            if await self.act(alert):
                acted += 1
        return acted

    async def act(self, alert: Alert) -> bool:
        """Act on one alert; False when it no longer holds or another replica acted on it."""

        def unit(connection: Connection, entry: AuditEntry) -> bool:
            ticket = load_ticket(connection, alert.ticket_id, lock=True)
            now = self._clock()
            noted = connection.execute(
                select(sla_alerts.c.ticket_id).where(
                    sla_alerts.c.ticket_id == ticket.id,
                    sla_alerts.c.clock == alert.clock,
                    sla_alerts.c.state == alert.state,
                )
            ).first()
            if noted is not None or not _still_holds(ticket, alert, now):
                entry.detail["acted"] = "nothing"
                return False
            acted = self._act_on(connection, ticket, alert, now)
            connection.execute(
                sla_alerts.insert(),
                {
                    "ticket_id": ticket.id,
                    "clock": alert.clock,
                    "state": alert.state,
                    "noted_at": now,
                    "acted": acted,
                },
            )
            entry.detail |= {"clock": alert.clock, "state": alert.state, "acted": acted}
            return True

        return await self._writes.run(
            WATCH_ACTOR, f"sla.{alert.state}", unit, ticket_id=alert.ticket_id
        )

    def _act_on(
        self, connection: Connection, ticket: TicketRecord, alert: Alert, now: datetime
    ) -> str:
        """Escalate or tell, and write the timeline event; what was done."""
        terms = terms_of(connection, ticket)
        policy = f"policy {terms.policy.name}" if terms is not None else "the default targets"
        due = ticket.response_due_at if alert.clock == "response" else ticket.resolve_due_at
        what = (
            f"the {alert.clock} clock is at risk: due {_when(due)} ({policy})"
            if alert.state == "at_risk"
            else f"the {alert.clock} clock is breached: it was due {_when(due)} ({policy})"
        )
        escalate = (
            alert.state == "at_risk"
            and terms is not None
            and terms.policy.on_risk == "escalate"
            and ticket.level is TicketLevel.L1
        )
        kind = (
            TicketEventKind.SLA_AT_RISK
            if alert.state == "at_risk"
            else TicketEventKind.SLA_BREACHED
        )
        if escalate:
            body = f"{what}; escalated to L2 by the policy"
            append_event(connection, ticket.id, kind, WATCH_ACTOR, now, body=body)
            self._escalate(connection, ticket, body, now)
            self._tell(connection, ticket, alert, body, now, to=(None, TicketLevel.L2))
            return "escalated"
        told = self._tell(connection, ticket, alert, what, now, to=(ticket.assignee, ticket.level))
        body = what + (f"; told {', '.join(told)}" if told else "")
        append_event(connection, ticket.id, kind, WATCH_ACTOR, now, body=body)
        return "notified" if told else "noted"

    @staticmethod
    def _escalate(connection: Connection, ticket: TicketRecord, reason: str, now: datetime) -> None:
        """To the L2 queue as new, as `ticket escalate` with no one named does."""
        changes = end_of_wait(connection, current_wait(connection, ticket), ticket, now)
        append_event(
            connection,
            ticket.id,
            TicketEventKind.ESCALATED,
            WATCH_ACTOR,
            now,
            body=reason,
            from_status=ticket.status.value,
            to_status=TicketStatus.NEW.value,
            touch_ticket=False,
        )
        save_ticket(
            connection,
            ticket,
            now,
            level=TicketLevel.L2,
            assignee=None,
            status=TicketStatus.NEW,
            **changes,
        )

    def _tell(
        self,
        connection: Connection,
        ticket: TicketRecord,
        alert: Alert,
        what: str,
        now: datetime,
        *,
        to: tuple[str | None, TicketLevel],
    ) -> Sequence[str]:
        """Mail the assignee, or the level's technicians when nobody has it; who was told."""
        if not self._tell_by_mail:
            return ()
        people = staff_to_tell(connection, *to)
        kind = "sla_at_risk" if alert.state == "at_risk" else "sla_breached"
        queue_to_staff(connection, kind, ticket=ticket, people=people, body=f"{what}.", now=now)
        return [person.name for person in people]
