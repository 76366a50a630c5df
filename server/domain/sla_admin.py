"""The admin's SLA calendars and policies (`sonde sla calendar|policy`, docs/sla.md).

A calendar is kept as the JSON of its admin form; setting one again replaces it, and applies
to tickets opened from then on and to the resolve clock of a wait that ends from then on (the
due times of open tickets are not moved). A policy is per contract ("" the default for every
contract) and priority; setting a policy of the same name again retires the old row and adds
a new one, so every ticket keeps the targets it was opened with. One live policy per contract
and priority, and one per name: the database's unique indexes hold it when two admins race.
Every change is audited (`sla.manage`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.business_calendar import (
    BusinessCalendar,
    CalendarError,
    calendar_form,
    parse_calendar,
)
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Principal
from sonde.server.domain.sla_terms import calendar_of
from sonde.server.domain.ticket_model import TicketPriority
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import business_calendars, sla_policies

MAX_TARGET = timedelta(days=366)
MIN_TARGET = timedelta(minutes=1)
MAX_CALENDAR_JSON = 256 * 1024
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


@dataclass(frozen=True)
class StoredCalendar:
    name: str
    calendar: BusinessCalendar
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class StoredPolicy:
    id: int
    name: str
    contract: str  # "" the default
    priority: TicketPriority
    response_within: timedelta
    resolve_within: timedelta
    calendar: str
    at_risk_share: float
    on_risk: Literal["notify", "escalate"]
    created_by: str
    created_at: datetime
    retired_at: datetime | None


def checked_name(what: str, name: str, *, allow_empty: bool = False) -> str:
    cleaned = name.strip()
    if allow_empty and not cleaned:
        return ""
    if not _NAME.fullmatch(cleaned):
        raise InvalidArgument(
            f"{what} {name[:40]!r} is refused: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return cleaned


def _checked_target(what: str, within: timedelta) -> int:
    if not MIN_TARGET <= within <= MAX_TARGET:
        raise InvalidArgument(
            f"the {what} target must be from 1 minute to 366 days of business time, got {within}"
        )
    return int(within.total_seconds())


def _policy(row: Any) -> StoredPolicy:
    on_risk: Literal["notify", "escalate"] = "escalate" if row.on_risk == "escalate" else "notify"
    return StoredPolicy(
        id=int(row.id),
        name=row.name,
        contract=row.contract,
        priority=TicketPriority(row.priority),
        response_within=timedelta(seconds=row.response_within_s),
        resolve_within=timedelta(seconds=row.resolve_within_s),
        calendar=row.calendar,
        at_risk_share=float(row.at_risk_share),
        on_risk=on_risk,
        created_by=row.created_by,
        created_at=row.created_at,
        retired_at=row.retired_at,
    )


def _live_policy(connection: Connection, name: str) -> StoredPolicy | None:
    row = connection.execute(
        select(sla_policies).where(sla_policies.c.name == name, sla_policies.c.retired_at.is_(None))
    ).first()
    return None if row is None else _policy(row)


class SlaAdmin:
    def __init__(self, db: Database, writes: AuditedWrites, clock: Clock = utc_now) -> None:
        self._db = db
        self._writes = writes
        self._clock = clock

    # -- calendars -------------------------------------------------------------------------

    async def calendars(self) -> list[StoredCalendar]:
        def unit(connection: Connection) -> list[StoredCalendar]:
            rows = connection.execute(
                select(business_calendars).order_by(business_calendars.c.name)
            )
            return [
                StoredCalendar(
                    row.name, calendar_of(row.definition), row.updated_by, row.updated_at
                )
                for row in rows
            ]

        return await self._db.read(unit)

    async def set_calendar(
        self, actor: Principal, name: str, form: Mapping[str, object]
    ) -> StoredCalendar:
        """Add or replace the calendar `name` from its admin form (time_zone, hours, holidays)."""
        checked = checked_name("the calendar name", name)
        try:
            calendar = parse_calendar(form)
        except CalendarError as error:
            raise InvalidArgument(f"calendar {checked!r} refused: {error}") from error
        definition = json.dumps(calendar_form(calendar), sort_keys=True)
        if len(definition) > MAX_CALENDAR_JSON:
            raise InvalidArgument(f"calendar {checked!r} is over {MAX_CALENDAR_JSON} bytes")

        def unit(connection: Connection, entry: AuditEntry) -> StoredCalendar:
            now = self._clock()
            entry.detail |= {"calendar": checked, "time_zone": calendar.time_zone}
            values = {"definition": definition, "updated_by": actor.name, "updated_at": now}
            replaced = connection.execute(
                business_calendars.update()
                .where(business_calendars.c.name == checked)
                .values(**values)
            ).rowcount
            if not replaced:
                connection.execute(business_calendars.insert(), {"name": checked, **values})
            entry.detail["replaced"] = "yes" if replaced else "no"
            return StoredCalendar(checked, calendar, actor.name, now)

        return await self._writes.run(actor.name, "sla.calendar.set", unit, peer=actor.peer)

    # -- policies --------------------------------------------------------------------------

    async def policies(self, *, include_retired: bool = False) -> list[StoredPolicy]:
        def unit(connection: Connection) -> list[StoredPolicy]:
            query = select(sla_policies).order_by(
                sla_policies.c.contract, sla_policies.c.priority, sla_policies.c.id
            )
            if not include_retired:
                query = query.where(sla_policies.c.retired_at.is_(None))
            return [_policy(row) for row in connection.execute(query)]

        return await self._db.read(unit)

    async def set_policy(
        self,
        actor: Principal,
        name: str,
        *,
        contract: str,
        priority: TicketPriority,
        response_within: timedelta,
        resolve_within: timedelta,
        calendar: str,
        at_risk_share: float = 0.75,
        on_risk: Literal["notify", "escalate"] = "notify",
    ) -> StoredPolicy:
        """Add the policy `name`, or replace the live one of that name (retired, kept)."""
        checked = checked_name("the policy name", name)
        group = checked_name("the contract", contract, allow_empty=True)
        calendar_name = checked_name("the calendar name", calendar)
        response_s = _checked_target("response", response_within)
        resolve_s = _checked_target("resolve", resolve_within)
        if resolve_s < response_s:
            raise InvalidArgument(
                f"the resolve target ({resolve_within}) is shorter than the response target "
                f"({response_within}): a ticket is answered before it is resolved"
            )
        if not 0.05 <= at_risk_share <= 1.0:
            raise InvalidArgument(f"the at-risk share must be from 0.05 to 1, got {at_risk_share}")
        if on_risk not in ("notify", "escalate"):
            raise InvalidArgument(f"at risk a policy notifies or escalates, not {on_risk!r}")

        def unit(connection: Connection, entry: AuditEntry) -> StoredPolicy:
            entry.detail |= {"policy": checked, "contract": group, "priority": priority.value}
            known = connection.execute(
                select(business_calendars.c.name).where(business_calendars.c.name == calendar_name)
            ).first()
            if known is None:
                raise NotFound(
                    f"no calendar {calendar_name!r}: add it with `sonde sla calendar set`"
                )
            now = self._clock()
            previous = _live_policy(connection, checked)
            if previous is not None:
                connection.execute(
                    sla_policies.update()
                    .where(sla_policies.c.id == previous.id)
                    .values(retired_at=now)
                )
                entry.detail["replaces"] = previous.id
            holder = connection.execute(
                select(sla_policies.c.name).where(
                    sla_policies.c.retired_at.is_(None),
                    sla_policies.c.contract == group,
                    sla_policies.c.priority == priority.value,
                )
            ).scalar()
            if holder is not None:
                raise Conflict(
                    f"the policy {holder!r} covers {group or 'the default contract'} at "
                    f"{priority.value} already: set {holder!r} or retire it first"
                )
            values = {
                "name": checked,
                "contract": group,
                "priority": priority.value,
                "response_within_s": response_s,
                "resolve_within_s": resolve_s,
                "calendar": calendar_name,
                "at_risk_share": at_risk_share,
                "on_risk": on_risk,
                "created_by": actor.name,
                "created_at": now,
            }
            policy_id = connection.execute(
                sla_policies.insert().returning(sla_policies.c.id), values
            ).scalar_one()
            entry.detail["policy_id"] = int(policy_id)
            return StoredPolicy(
                id=int(policy_id),
                name=checked,
                contract=group,
                priority=priority,
                response_within=timedelta(seconds=response_s),
                resolve_within=timedelta(seconds=resolve_s),
                calendar=calendar_name,
                at_risk_share=at_risk_share,
                on_risk=on_risk,
                created_by=actor.name,
                created_at=now,
                retired_at=None,
            )

        try:
            return await self._writes.run(actor.name, "sla.policy.set", unit, peer=actor.peer)
        except IntegrityError as error:  # another admin's change to it came in the same instant
            raise Conflict(
                f"another change to {group or 'the default contract'} at {priority.value} or to "
                f"{checked!r} came first: list the policies and try again"
            ) from error

    async def retire_policy(self, actor: Principal, name: str) -> StoredPolicy:
        """Retire the live policy `name`: tickets opened from then on take the default one."""
        checked = checked_name("the policy name", name)

        def unit(connection: Connection, entry: AuditEntry) -> StoredPolicy:
            entry.detail |= {"policy": checked}
            found = _live_policy(connection, checked)
            if found is None:
                raise NotFound(f"no live SLA policy named {checked!r}")
            now = self._clock()
            connection.execute(
                sla_policies.update().where(sla_policies.c.id == found.id).values(retired_at=now)
            )
            entry.detail["policy_id"] = found.id
            return dataclasses.replace(found, retired_at=now)

        return await self._writes.run(actor.name, "sla.policy.retire", unit, peer=actor.peer)
