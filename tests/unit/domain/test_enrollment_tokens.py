"""Enrollment tokens: created by an admin, each use spent by one enrollment, all audited."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.agents import AgentRecord, AgentRegistry
from sonde.server.domain.enrollment_tokens import EnrollmentTokens, IssuedToken
from sonde.server.errors import InvalidArgument, PermissionDenied, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, audit_log, enrollment_tokens
from tests.unit.domain.builders import SETUP_ADMIN, T0, Clock, new_agent_id, signed_as


async def _enroll(
    db: Database,
    token: IssuedToken,
    *,
    secret: bytes | None = None,
    agent_id: str | None = None,
    at: datetime = T0,
) -> AgentRecord:
    request = signed_as(agent_id or new_agent_id())
    agent, _ = await AgentRegistry(db).enroll(
        token.token_id,
        token.secret if secret is None else secret,
        hostname="pc-042",
        platform="linux",
        request=request,
        at=at,
    )
    return agent


async def _uses_left(db: Database, token: IssuedToken) -> int:
    return int(
        await db.read(
            lambda c: c.execute(
                select(enrollment_tokens.c.uses_left).where(
                    enrollment_tokens.c.id == token.token_id
                )
            ).scalar_one()
        )
    )


async def test_create_stores_only_a_hash_and_is_audited(db: Database) -> None:
    issued = await EnrollmentTokens(db, Clock()).create(SETUP_ADMIN, uses=3, ttl=timedelta(hours=1))
    assert len(issued.token_id) == 16
    assert len(issued.secret) == 32
    assert issued.expires_at == T0 + timedelta(hours=1)
    assert issued.uses == 3
    row = await db.read(lambda c: c.execute(select(enrollment_tokens)).one())
    assert issued.secret not in row.secret_sha256
    assert len(row.secret_sha256) == 32
    assert row.created_by == "test-setup"
    audited = await db.read(lambda c: c.execute(select(audit_log)).one())
    assert (audited.actor, audited.action, audited.result) == (
        "test-setup",
        "enrollment_token.create",
        "ok",
    )
    assert audited.detail == f'{{"token_id":"{issued.token_id}","ttl_s":3600,"uses":3}}'


@pytest.mark.parametrize(
    ("uses", "ttl", "message"),
    [
        (0, timedelta(hours=1), "uses must be from 1 to 1000"),
        (1001, timedelta(hours=1), "uses must be from 1 to 1000"),
        (1, timedelta(seconds=59), "from 1 minute to 30 days"),
        (1, timedelta(days=31), "from 1 minute to 30 days"),
    ],
)
async def test_create_refuses_out_of_range_and_audits_the_refusal(
    db: Database, uses: int, ttl: timedelta, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await EnrollmentTokens(db).create(SETUP_ADMIN, uses=uses, ttl=ttl)
    assert await db.read(lambda c: c.execute(select(enrollment_tokens)).all()) == []
    results = await db.read(lambda c: c.execute(select(audit_log.c.result)).scalars().all())
    assert len(results) == 1
    assert results[0].startswith("refused: InvalidArgument")


async def test_each_enrollment_spends_one_use_and_is_audited_as_the_token(db: Database) -> None:
    token = await EnrollmentTokens(db, Clock()).create(SETUP_ADMIN, uses=2, ttl=timedelta(hours=1))
    first = await _enroll(db, token)
    await _enroll(db, token)
    with pytest.raises(
        Unauthenticated, match=f"enrollment token {token.token_id} has no uses left"
    ):
        await _enroll(db, token)
    assert await _uses_left(db, token) == 0
    rows = await db.read(
        lambda c: c.execute(select(audit_log).where(audit_log.c.action == "agent.enroll")).all()
    )
    assert [(r.actor, r.result[:7]) for r in rows] == [
        (f"enrollment-token:{token.token_id}", "ok"),
        (f"enrollment-token:{token.token_id}", "ok"),
        (f"enrollment-token:{token.token_id}", "refused"),
    ]
    assert (rows[0].agent_id, rows[0].detail) == (first.id, '{"hostname":"pc-042"}')


async def test_wrong_secret_unknown_id_and_expiry_are_refused(db: Database) -> None:
    token = await EnrollmentTokens(db, Clock()).create(
        SETUP_ADMIN, uses=5, ttl=timedelta(minutes=10)
    )
    with pytest.raises(Unauthenticated, match="unknown or its secret is wrong"):
        await _enroll(db, token, secret=b"x" * 32)
    unknown = IssuedToken("0" * 16, token.secret, token.expires_at, 1)
    with pytest.raises(Unauthenticated, match="unknown or its secret is wrong"):
        await _enroll(db, unknown)
    malformed = IssuedToken("../" + token.token_id, token.secret, token.expires_at, 1)
    with pytest.raises(Unauthenticated, match="unknown or its secret is wrong"):
        await _enroll(db, malformed)
    with pytest.raises(Unauthenticated, match=f"enrollment token {token.token_id} expired at"):
        await _enroll(db, token, at=T0 + timedelta(minutes=10))
    assert await _uses_left(db, token) == 5
    assert await db.read(lambda c: c.execute(select(agents)).all()) == []


async def test_a_refused_enrollment_spends_no_use(db: Database) -> None:
    registry = AgentRegistry(db)
    token = await EnrollmentTokens(db, Clock()).create(SETUP_ADMIN, uses=2, ttl=timedelta(hours=1))
    agent = await _enroll(db, token)
    await registry.revoke(SETUP_ADMIN, agent.id, "stolen", T0)
    with pytest.raises(PermissionDenied, match="was revoked"):
        await _enroll(db, token, agent_id=agent.id)
    assert await _uses_left(db, token) == 1


async def test_two_concurrent_enrollments_cannot_both_take_the_last_use(db: Database) -> None:
    token = await EnrollmentTokens(db, Clock()).create(SETUP_ADMIN, uses=1, ttl=timedelta(hours=1))
    outcomes = await asyncio.gather(
        *(_enroll(db, token) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(outcome, AgentRecord) for outcome in outcomes) == 1
    assert all(
        isinstance(outcome, Unauthenticated) and "no uses left" in str(outcome)
        for outcome in outcomes
        if not isinstance(outcome, AgentRecord)
    )
    assert len(await db.read(lambda c: c.execute(select(agents)).all())) == 1
