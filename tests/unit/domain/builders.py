"""Small builders shared by the domain tests: agents, technicians, a settable clock."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sonde.server.domain.agents import AgentCertificate, AgentRecord, AgentRegistry
from sonde.server.domain.enrollment_tokens import EnrollmentTokens, IssuedToken
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.users import Users
from sonde.server.storage.db import Database

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# Who sets up a test's users and tokens (the audit log names it like any other admin).
SETUP_ADMIN = Principal(user_id=0, name="test-setup", role=Role.ADMIN)


def new_agent_id() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()[:26]


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = field(default=T0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


async def enrollment_token(db: Database, *, uses: int = 1, at: datetime = T0) -> IssuedToken:
    """A real token, valid for an hour from `at`."""
    tokens = EnrollmentTokens(db, Clock(at))
    return await tokens.create(SETUP_ADMIN, uses=uses, ttl=timedelta(hours=1))


@dataclass(frozen=True)
class SignedAs:
    """A certificate request whose key stands for `certificate.agent_id`, and what the CA's
    signature of it gives."""

    certificate: AgentCertificate

    def checked_agent_id(self) -> str:
        return self.certificate.agent_id

    def sign(self) -> AgentCertificate:
        return self.certificate


def signed_as(agent_id: str, fingerprint: str = "ab" * 32) -> SignedAs:
    """An agent's certificate request for a key with this id, as the CA would sign it."""
    return SignedAs(AgentCertificate(agent_id=agent_id, fingerprint=fingerprint, der=b""))


async def enroll(
    registry: AgentRegistry,
    db: Database,
    agent_id: str | None = None,
    hostname: str = "pc-042",
    *,
    platform: str = "linux",
    fingerprint: str = "ab" * 32,
    at: datetime = T0,
) -> AgentRecord:
    """Enroll an agent for real: a one-use token, then the registry's enrollment."""
    token = await enrollment_token(db, at=at)
    request = signed_as(agent_id or new_agent_id(), fingerprint)
    agent, _ = await registry.enroll(
        token.token_id,
        token.secret,
        hostname=hostname,
        platform=platform,
        request=request,
        at=at,
    )
    return agent


async def enrolled_agent(db: Database, hostname: str = "pc-042") -> AgentRecord:
    return await enroll(AgentRegistry(db), db, hostname=hostname)


async def technician(db: Database, name: str, role: Role = Role.L1) -> Principal:
    record, _ = await Users(db).add(SETUP_ADMIN, name, role)
    return Principal(user_id=record.id, name=record.name, role=record.role)
