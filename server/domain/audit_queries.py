"""Reading the audit log: entries by who, what, which agent, which ticket and since when,
newest first, a page at a time (`sonde audit`, permission audit.read)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.agents import resolve_agent
from sonde.server.domain.clock import require_aware
from sonde.server.domain.text import like_prefix
from sonde.server.errors import InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, audit_log
from sonde.server.storage.types import AnyRow

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_MAX_FILTER_CHARS = 64


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""  # exact, or a prefix when it ends in '*'
    agent: str = ""  # an agent reference, or an id prefix of an agent gone since
    ticket_id: int | None = None
    since: datetime | None = None
    before_id: int | None = None  # paging: older than this row
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    agent_id: str | None
    ticket_id: int | None
    detail: str
    result: str
    agent_hostname: str = ""  # the name the agent reports now, "" for none (or gone)


def _checked(value: str, what: str) -> str:
    value = value.strip()
    if len(value) > _MAX_FILTER_CHARS or any(ord(c) < 32 for c in value):
        raise InvalidArgument(f"{what}: at most {_MAX_FILTER_CHARS} printable characters")
    return value


def _query(connection: Connection, wanted: AuditFilter) -> Select[tuple[AnyRow]]:
    # With the name the machine reports: `sonde audit` shows it beside the id.
    query = select(
        audit_log, func.coalesce(agents.c.hostname, "").label("agent_hostname")
    ).outerjoin(agents, agents.c.id == audit_log.c.agent_id)
    if actor := _checked(wanted.actor, "--who"):
        query = query.where(audit_log.c.actor == actor)
    if action := _checked(wanted.action, "--action"):
        if action.endswith("*"):
            query = query.where(audit_log.c.action.like(like_prefix(action[:-1]), escape="\\"))
        else:
            query = query.where(audit_log.c.action == action)
    if agent := _checked(wanted.agent, "--agent"):
        try:
            query = query.where(audit_log.c.agent_id == resolve_agent(connection, agent).id)
        except NotFound:  # an agent removed since, or a refusal that named no real agent
            query = query.where(audit_log.c.agent_id.like(like_prefix(agent.lower()), escape="\\"))
    if wanted.ticket_id is not None:
        query = query.where(audit_log.c.ticket_id == wanted.ticket_id)
    if wanted.since is not None:
        query = query.where(audit_log.c.at >= require_aware(wanted.since, "--since"))
    if wanted.before_id is not None:
        query = query.where(audit_log.c.id < wanted.before_id)
    return query.order_by(audit_log.c.id.desc()).limit(wanted.limit + 1)


def _row(row: AnyRow) -> AuditRow:
    return AuditRow(
        int(row.id),
        row.at,
        str(row.actor),
        str(row.action),
        row.agent_id,
        None if row.ticket_id is None else int(row.ticket_id),
        str(row.detail),
        str(row.result),
        str(row.agent_hostname),
    )


async def list_audit(db: Database, wanted: AuditFilter) -> tuple[list[AuditRow], bool]:
    """The newest entries that match, and whether older ones match too."""
    if not 1 <= wanted.limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be from 1 to {MAX_LIMIT}, got {wanted.limit}")

    def unit(connection: Connection) -> list[AnyRow]:
        return list(connection.execute(_query(connection, wanted)).all())

    rows = await db.read(unit)
    return [_row(row) for row in rows[: wanted.limit]], len(rows) > wanted.limit
