from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.enrollment_tokens import EnrollmentTokens
from sonde.server.errors import InvalidArgument, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import enrollment_tokens
from tests.unit.domain.builders import T0, Clock


async def test_create_stores_only_a_hash(db: Database) -> None:
    issued = await EnrollmentTokens(db, Clock()).create(
        uses=3, ttl=timedelta(hours=1), created_by="ann"
    )
    assert len(issued.token_id) == 16
    assert len(issued.secret) == 32
    assert issued.expires_at == T0 + timedelta(hours=1)
    assert issued.uses == 3
    async with db.reading() as session:
        row = (await session.execute(select(enrollment_tokens))).one()
    assert issued.secret not in row.secret_sha256
    assert len(row.secret_sha256) == 32


@pytest.mark.parametrize(
    ("uses", "ttl", "message"),
    [
        (0, timedelta(hours=1), "uses must be from 1 to 1000"),
        (1001, timedelta(hours=1), "uses must be from 1 to 1000"),
        (1, timedelta(seconds=59), "from 1 minute to 30 days"),
        (1, timedelta(days=31), "from 1 minute to 30 days"),
    ],
)
async def test_create_refuses_out_of_range(
    db: Database, uses: int, ttl: timedelta, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await EnrollmentTokens(db).create(uses=uses, ttl=ttl, created_by="ann")


async def test_consume_until_no_uses_left(db: Database) -> None:
    tokens = EnrollmentTokens(db, Clock())
    issued = await tokens.create(uses=2, ttl=timedelta(hours=1), created_by="ann")
    await tokens.consume(issued.token_id, issued.secret, T0)
    await tokens.consume(issued.token_id, issued.secret, T0)
    with pytest.raises(
        Unauthenticated, match=f"enrollment token {issued.token_id} has no uses left"
    ):
        await tokens.consume(issued.token_id, issued.secret, T0)


async def test_wrong_secret_unknown_id_and_expiry(db: Database) -> None:
    tokens = EnrollmentTokens(db, Clock())
    issued = await tokens.create(uses=5, ttl=timedelta(minutes=10), created_by="ann")
    with pytest.raises(Unauthenticated, match="unknown or its secret is wrong"):
        await tokens.consume(issued.token_id, b"x" * 32, T0)
    with pytest.raises(Unauthenticated, match="unknown or its secret is wrong"):
        await tokens.consume("0" * 16, issued.secret, T0)
    with pytest.raises(Unauthenticated, match=f"enrollment token {issued.token_id} expired at"):
        await tokens.consume(issued.token_id, issued.secret, T0 + timedelta(minutes=10))


async def test_two_concurrent_enrollments_cannot_both_take_the_last_use(db: Database) -> None:
    tokens = EnrollmentTokens(db, Clock())
    issued = await tokens.create(uses=1, ttl=timedelta(hours=1), created_by="ann")
    outcomes = await asyncio.gather(
        *(tokens.consume(issued.token_id, issued.secret, T0) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(
        isinstance(outcome, Unauthenticated) and "no uses left" in str(outcome)
        for outcome in outcomes
        if outcome is not None
    )
