"""An enrollment whose reply was lost can be retried: the same key with the same token, before
the agent ever connected, gets a certificate for the same agent again and spends no use.
Nothing else is a retry: another token, an agent that has connected, a new key, a revoked or
removed agent, an expired or revoked token, a wrong secret (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.agents import AgentRegistry, HelloInfo
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.enrollment_tokens import EnrollmentTokens, IssuedToken
from sonde.server.domain.sessions import SessionClosed, SessionOpened, SessionRows
from sonde.server.errors import PermissionDenied, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, audit_log, enrollment_tokens
from tests.unit.domain.builders import SETUP_ADMIN, T0, Clock, new_agent_id, signed_as


class Enrollments:
    """A registry and its tokens on one clock, as the server composes them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = Clock()
        writes = AuditedWrites(db, self.clock)
        self.tokens = EnrollmentTokens(db, self.clock, writes=writes)
        self.registry = AgentRegistry(db, writes=writes)

    async def token(self, uses: int = 1) -> IssuedToken:
        return await self.tokens.create(SETUP_ADMIN, uses=uses, ttl=timedelta(hours=1))

    async def enroll(
        self,
        token: IssuedToken,
        agent_id: str,
        *,
        fingerprint: str = "ab" * 32,
        hostname: str = "pc-042",
        secret: bytes | None = None,
    ) -> str:
        agent, certificate = await self.registry.enroll(
            token.token_id,
            token.secret if secret is None else secret,
            hostname=hostname,
            platform="linux",
            request=signed_as(agent_id, fingerprint),
            at=self.clock(),
        )
        assert certificate.agent_id == agent.id
        return agent.id

    async def uses_left(self, token: IssuedToken) -> int:
        statement = select(enrollment_tokens.c.uses_left).where(
            enrollment_tokens.c.id == token.token_id
        )
        return int(await self.db.read(lambda c: c.execute(statement).scalar_one()))

    async def agent_rows(self) -> list[tuple[str, str, str | None]]:
        statement = select(agents.c.id, agents.c.cert_fingerprint, agents.c.enrolled_with_token)
        rows = await self.db.read(lambda c: c.execute(statement).all())
        return sorted((row.id, row.cert_fingerprint, row.enrolled_with_token) for row in rows)

    async def enroll_audit(self) -> list[tuple[str, str, dict[str, object]]]:
        """(actor, result, detail) of every agent.enroll row, oldest first."""
        statement = (
            select(audit_log.c.actor, audit_log.c.result, audit_log.c.detail)
            .where(audit_log.c.action == "agent.enroll")
            .order_by(audit_log.c.id)
        )
        rows = await self.db.read(lambda c: c.execute(statement).all())
        return [(row.actor, row.result, json.loads(row.detail)) for row in rows]

    async def connect(self, agent_id: str) -> None:
        """The agent opens a session (and closes it): it did receive its certificate."""
        sessions = SessionRows(self.db, "replica-1")
        hello = HelloInfo("pc-042", "linux", "Linux", "6.1", "1.0")
        sessions.add(SessionOpened(agent_id, "s1", hello, "127.0.0.1:50000", self.clock()))
        sessions.add(SessionClosed(agent_id, "s1", self.clock() + timedelta(seconds=5)))
        await sessions.flush()


@pytest.fixture
def enrollments(db: Database) -> Enrollments:
    return Enrollments(db)


async def test_a_retry_answers_the_same_agent_again_and_spends_no_use(
    enrollments: Enrollments,
) -> None:
    token = await enrollments.token(uses=1)
    agent_id = new_agent_id()
    assert await enrollments.enroll(token, agent_id) == agent_id
    assert await enrollments.uses_left(token) == 0

    enrollments.clock.advance(minutes=2)
    # The CA signs the retried request anew: the row names the newer certificate.
    assert await enrollments.enroll(token, agent_id, fingerprint="ef" * 32) == agent_id
    assert await enrollments.enroll(token, agent_id, fingerprint="12" * 32) == agent_id

    assert await enrollments.agent_rows() == [(agent_id, "12" * 32, token.token_id)]
    assert await enrollments.uses_left(token) == 0
    record = await enrollments.registry.get(agent_id)
    assert record.enrolled_at == T0  # the enrollment's own time, not the retry's
    audit = await enrollments.enroll_audit()
    actor = f"enrollment-token:{token.token_id}"
    assert [(a, r, d.get("retry")) for a, r, d in audit] == [
        (actor, "ok", None),
        (actor, "ok", True),
        (actor, "ok", True),
    ]


async def test_an_agent_that_has_connected_is_not_retried(enrollments: Enrollments) -> None:
    token = await enrollments.token(uses=2)
    agent_id = new_agent_id()
    await enrollments.enroll(token, agent_id)
    await enrollments.connect(agent_id)

    # Enrolling the same key again is an enrollment like any other: it spends a use.
    await enrollments.enroll(token, agent_id, fingerprint="ef" * 32)
    assert await enrollments.uses_left(token) == 0
    with pytest.raises(Unauthenticated, match="has no uses left"):
        await enrollments.enroll(token, agent_id, fingerprint="12" * 32)
    assert await enrollments.agent_rows() == [(agent_id, "ef" * 32, token.token_id)]
    assert [d.get("retry") for _, r, d in await enrollments.enroll_audit() if r == "ok"] == [
        None,
        None,
    ]


async def test_a_key_enrolled_with_another_token_spends_a_use_of_this_one(
    enrollments: Enrollments,
) -> None:
    first, second = await enrollments.token(uses=1), await enrollments.token(uses=1)
    agent_id = new_agent_id()
    await enrollments.enroll(first, agent_id)

    await enrollments.enroll(second, agent_id, fingerprint="ef" * 32)
    assert await enrollments.uses_left(second) == 0
    # The key now stands under the second token: the first no longer answers it.
    with pytest.raises(Unauthenticated, match=f"{first.token_id} has no uses left"):
        await enrollments.enroll(first, agent_id, fingerprint="12" * 32)
    # The second one does, as a retry.
    await enrollments.enroll(second, agent_id, fingerprint="34" * 32)
    assert await enrollments.agent_rows() == [(agent_id, "34" * 32, second.token_id)]
    assert await enrollments.uses_left(first) == 0


async def test_a_new_key_cannot_ride_on_a_used_up_tokens_retry(
    enrollments: Enrollments,
) -> None:
    token = await enrollments.token(uses=1)
    agent_id = new_agent_id()
    await enrollments.enroll(token, agent_id)
    with pytest.raises(Unauthenticated, match="has no uses left"):
        await enrollments.enroll(token, new_agent_id())
    assert await enrollments.agent_rows() == [(agent_id, "ab" * 32, token.token_id)]


@pytest.mark.parametrize("ending", ["revoked", "removed"])
async def test_a_revoked_or_removed_agent_is_refused_not_retried(
    enrollments: Enrollments, ending: str
) -> None:
    token = await enrollments.token(uses=2)
    agent_id = new_agent_id()
    await enrollments.enroll(token, agent_id)
    if ending == "revoked":
        await enrollments.registry.revoke(SETUP_ADMIN, agent_id, "stolen", T0)
    else:
        await enrollments.registry.remove(SETUP_ADMIN, agent_id, "retired", T0)
    before = await enrollments.agent_rows()
    with pytest.raises(PermissionDenied, match="was revoked"):
        await enrollments.enroll(token, agent_id, fingerprint="ef" * 32)
    assert await enrollments.agent_rows() == before
    assert await enrollments.uses_left(token) == 1


async def test_a_retry_needs_the_right_secret(enrollments: Enrollments) -> None:
    token = await enrollments.token(uses=1)
    agent_id = new_agent_id()
    await enrollments.enroll(token, agent_id)
    with pytest.raises(Unauthenticated, match="secret is wrong"):
        await enrollments.enroll(token, agent_id, fingerprint="ef" * 32, secret=b"x" * 32)
    assert await enrollments.agent_rows() == [(agent_id, "ab" * 32, token.token_id)]


async def test_an_expired_token_retries_nothing(enrollments: Enrollments) -> None:
    token = await enrollments.token(uses=1)
    agent_id = new_agent_id()
    await enrollments.enroll(token, agent_id)
    enrollments.clock.advance(hours=1)
    with pytest.raises(Unauthenticated, match="expired at"):
        await enrollments.enroll(token, agent_id, fingerprint="ef" * 32)
    assert await enrollments.agent_rows() == [(agent_id, "ab" * 32, token.token_id)]


async def test_a_revoked_token_retries_nothing(enrollments: Enrollments) -> None:
    token = await enrollments.token(uses=1)
    agent_id = new_agent_id()
    await enrollments.enroll(token, agent_id)
    await enrollments.tokens.revoke(SETUP_ADMIN, token.token_id)
    with pytest.raises(Unauthenticated, match="was revoked by test-setup"):
        await enrollments.enroll(token, agent_id, fingerprint="ef" * 32)
    assert await enrollments.agent_rows() == [(agent_id, "ab" * 32, token.token_id)]
