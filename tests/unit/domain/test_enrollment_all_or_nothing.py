"""An enrollment is one unit of work: refused or failing at any step, it leaves no agent row,
spends no use of its token, and leaves an agent enrolled before exactly as it was."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.agents import AgentCertificate, AgentRegistry, CertificateRequest
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.enrollment_tokens import EnrollmentTokens, IssuedToken
from sonde.server.errors import InvalidArgument, PermissionDenied, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, enrollment_tokens
from tests.unit.domain.builders import SETUP_ADMIN, T0, Clock, new_agent_id, signed_as


class CrashInTheUnit(RuntimeError):
    """What a fault inside the unit of work raises (not a refusal: a failure)."""


@dataclass(frozen=True)
class UnusableRequest:
    def checked_agent_id(self) -> str:
        raise InvalidArgument("the certificate request is not a DER PKCS#10 request")

    def sign(self) -> AgentCertificate:
        raise AssertionError("an unusable request is never signed")


@dataclass(frozen=True)
class SigningFails:
    agent_id: str

    def checked_agent_id(self) -> str:
        return self.agent_id

    def sign(self) -> AgentCertificate:
        raise CrashInTheUnit("the CA could not sign")


@dataclass(frozen=True)
class SignedForAnotherKey:
    agent_id: str

    def checked_agent_id(self) -> str:
        return self.agent_id

    def sign(self) -> AgentCertificate:
        return AgentCertificate(agent_id=new_agent_id(), fingerprint="cd" * 32, der=b"")


async def _uses_left(db: Database, token: IssuedToken) -> int:
    statement = select(enrollment_tokens.c.uses_left).where(
        enrollment_tokens.c.id == token.token_id
    )
    return int(await db.read(lambda c: c.execute(statement).scalar_one()))


async def _agent_rows(db: Database) -> list[tuple[str, str, str]]:
    statement = select(agents.c.id, agents.c.hostname, agents.c.cert_fingerprint)
    rows = await db.read(lambda c: c.execute(statement).all())
    return sorted((row.id, row.hostname, row.cert_fingerprint) for row in rows)


STEPS: list[tuple[str, type[BaseException], str]] = [
    ("an unusable certificate request", InvalidArgument, "not a DER PKCS#10"),
    ("a wrong secret", Unauthenticated, "secret is wrong"),
    ("a revoked token", Unauthenticated, "was revoked by test-setup"),
    ("signing fails", CrashInTheUnit, "could not sign"),
    ("a certificate for another key", InvalidArgument, "not for the request's key"),
    ("a crash after the row, before its audit row", CrashInTheUnit, "before the audit row"),
]


@pytest.mark.parametrize(("step", "raised", "message"), STEPS, ids=[s[0] for s in STEPS])
async def test_a_failing_enrollment_leaves_no_agent_row_and_spends_no_use(
    db: Database, step: str, raised: type[BaseException], message: str
) -> None:
    writes = AuditedWrites(db, Clock())
    tokens = EnrollmentTokens(db, Clock(), writes=writes)
    registry = AgentRegistry(db, writes=writes)
    token = await tokens.create(SETUP_ADMIN, uses=2, ttl=timedelta(hours=1))
    agent_id = new_agent_id()
    secret = token.secret
    request: CertificateRequest = signed_as(agent_id)
    if step == "an unusable certificate request":
        request = UnusableRequest()
    elif step == "a wrong secret":
        secret = b"x" * 32
    elif step == "a revoked token":
        await tokens.revoke(SETUP_ADMIN, token.token_id)
    elif step == "signing fails":
        request = SigningFails(agent_id)
    elif step == "a certificate for another key":
        request = SignedForAnotherKey(agent_id)
    else:

        def crash(action: str) -> None:
            if action == "agent.enroll":
                raise CrashInTheUnit("crashed before the audit row")

        writes.fault_before_audit = crash

    with pytest.raises(raised, match=message):
        await registry.enroll(
            token.token_id, secret, hostname="pc-042", platform="linux", request=request, at=T0
        )

    assert await _agent_rows(db) == []
    assert await _uses_left(db, token) == 2
    if step != "a revoked token":
        # Nothing is half done: the same token still enrolls this key, once.
        writes.fault_before_audit = None
        agent, _certificate = await registry.enroll(
            token.token_id,
            token.secret,
            hostname="pc-042",
            platform="linux",
            request=signed_as(agent_id),
            at=T0,
        )
        assert await _agent_rows(db) == [(agent.id, "pc-042", "ab" * 32)]
        assert agent.id == agent_id
        assert await _uses_left(db, token) == 1


async def test_a_failing_re_enrollment_leaves_the_agent_as_it_was(db: Database) -> None:
    writes = AuditedWrites(db, Clock())
    tokens = EnrollmentTokens(db, Clock(), writes=writes)
    registry = AgentRegistry(db, writes=writes)
    token = await tokens.create(SETUP_ADMIN, uses=3, ttl=timedelta(hours=1))
    agent_id = new_agent_id()
    await registry.enroll(
        token.token_id,
        token.secret,
        hostname="pc-042",
        platform="linux",
        request=signed_as(agent_id),
        at=T0,
    )
    before = await _agent_rows(db)

    def crash(action: str) -> None:
        raise CrashInTheUnit("crashed before the audit row")

    writes.fault_before_audit = crash
    with pytest.raises(CrashInTheUnit):
        await registry.enroll(
            token.token_id,
            token.secret,
            hostname="renamed",
            platform="linux",
            request=signed_as(agent_id, fingerprint="ef" * 32),
            at=T0 + timedelta(minutes=1),
        )
    assert await _agent_rows(db) == before
    assert await _uses_left(db, token) == 2


async def test_a_revoked_agent_refused_at_enrollment_keeps_its_row_and_the_use(
    db: Database,
) -> None:
    registry = AgentRegistry(db)
    tokens = EnrollmentTokens(db, Clock())
    token = await tokens.create(SETUP_ADMIN, uses=2, ttl=timedelta(hours=1))
    agent_id = new_agent_id()
    await registry.enroll(
        token.token_id,
        token.secret,
        hostname="pc-042",
        platform="linux",
        request=signed_as(agent_id),
        at=T0,
    )
    await registry.revoke(SETUP_ADMIN, agent_id, "stolen", T0)
    before = await _agent_rows(db)
    with pytest.raises(PermissionDenied, match="was revoked"):
        await registry.enroll(
            token.token_id,
            token.secret,
            hostname="other",
            platform="linux",
            request=signed_as(agent_id, fingerprint="ef" * 32),
            at=T0,
        )
    assert await _agent_rows(db) == before
    assert await _uses_left(db, token) == 1
