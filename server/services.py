"""Everything the servicers need, built once per server process from one Database.

Dispatcher and EnrollmentIssuer are protocols: the domain and storage side declares what it
needs, the transport side (server/domain/dispatch.py, server/enrollment_issuer.py) provides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sonde.server.domain.agents import AgentRegistry
from sonde.server.domain.audit import AuditLog
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.enrollment_tokens import EnrollmentTokens
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.users import Users
from sonde.server.errors import Unavailable
from sonde.server.storage.db import Database


class Dispatcher(Protocol):
    async def run_diagnostics(
        self, agent_id: str, *, ticket_id: int | None, requested_by: str, timeout_s: float
    ) -> int:
        """Collect a snapshot on an online agent; returns its stored id.

        Raises Unavailable (offline since ...) or DeadlineExceeded.
        """
        ...

    async def disconnect(self, agent_id: str, reason: str) -> None:
        """Close the agent's open stream, if it has one."""
        ...


@dataclass(frozen=True)
class IssuedEnrollment:
    enrollment: str  # the whole string an agent needs; shown once
    token_id: str
    expires_at: datetime
    uses: int


class EnrollmentIssuer(Protocol):
    async def issue(self, *, uses: int, ttl: timedelta, created_by: str) -> IssuedEnrollment: ...


class NotDispatching:
    """The dispatcher until the agent listener is up: every agent counts as unreachable."""

    async def run_diagnostics(
        self, agent_id: str, *, ticket_id: int | None, requested_by: str, timeout_s: float
    ) -> int:
        raise Unavailable(
            "this server is not connected to agents (its agent listener is not running)"
        )

    async def disconnect(self, agent_id: str, reason: str) -> None:
        return None


@dataclass
class ServerServices:
    db: Database
    agents: AgentRegistry
    tokens: EnrollmentTokens
    users: Users
    audit: AuditLog
    diagnostics: Diagnostics
    tickets: Tickets
    enrollment: EnrollmentIssuer
    dispatcher: Dispatcher = field(default_factory=NotDispatching)


async def open_services(
    db: Database, enrollment: EnrollmentIssuer, dispatcher: Dispatcher | None = None
) -> ServerServices:
    """The domain objects over `db`; set `.dispatcher` once the agent side exists."""
    return ServerServices(
        db=db,
        agents=AgentRegistry(db),
        tokens=EnrollmentTokens(db),
        users=Users(db),
        audit=AuditLog(db),
        diagnostics=Diagnostics(db),
        tickets=Tickets(db),
        enrollment=enrollment,
        dispatcher=dispatcher if dispatcher is not None else NotDispatching(),
    )
