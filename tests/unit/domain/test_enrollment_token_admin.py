"""Enrollment tokens as an admin manages them: listed without their secrets, revoked by id or
prefix (audited), and a revoked token refused at enrollment from then on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from sonde.server.domain.agents import AgentRegistry
from sonde.server.domain.enrollment_tokens import EnrollmentTokens, IssuedToken, TokenState
from sonde.server.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, audit_log, enrollment_tokens
from tests.unit.domain.builders import SETUP_ADMIN, Clock, new_agent_id, signed_as


async def _enroll(db: Database, token: IssuedToken, clock: Clock) -> None:
    await AgentRegistry(db).enroll(
        token.token_id,
        token.secret,
        hostname="pc-042",
        platform="linux",
        request=signed_as(new_agent_id()),
        at=clock(),
    )


async def test_list_shows_each_tokens_state_newest_first_and_never_its_secret(
    db: Database,
) -> None:
    clock = Clock()
    tokens = EnrollmentTokens(db, clock)
    expiring = await tokens.create(SETUP_ADMIN, uses=5, ttl=timedelta(minutes=5))
    clock.advance(minutes=1)
    used = await tokens.create(SETUP_ADMIN, uses=1, ttl=timedelta(hours=1))
    await _enroll(db, used, clock)
    clock.advance(minutes=1)
    revoked = await tokens.create(SETUP_ADMIN, uses=2, ttl=timedelta(hours=1))
    await tokens.revoke(SETUP_ADMIN, revoked.token_id)
    clock.advance(minutes=1)
    active = await tokens.create(SETUP_ADMIN, uses=3, ttl=timedelta(hours=1))
    clock.advance(minutes=3)  # `expiring` is past its 5 minutes

    everything = await tokens.list(include_inactive=True)
    assert [(t.id, t.state, t.uses_granted, t.uses_left) for t in everything] == [
        (active.token_id, TokenState.ACTIVE, 3, 3),
        (revoked.token_id, TokenState.REVOKED, 2, 2),
        (used.token_id, TokenState.USED_UP, 1, 0),
        (expiring.token_id, TokenState.EXPIRED, 5, 5),
    ]
    assert everything[1].revoked_by == "test-setup"
    assert all(t.created_by == "test-setup" for t in everything)
    assert not any(hasattr(t, "secret") or hasattr(t, "secret_sha256") for t in everything)
    assert [t.id for t in await tokens.list()] == [active.token_id]


async def test_revoke_by_prefix_is_audited_and_enrollment_is_refused_at_once(
    db: Database,
) -> None:
    clock = Clock()
    tokens = EnrollmentTokens(db, clock)
    token = await tokens.create(SETUP_ADMIN, uses=3, ttl=timedelta(hours=1))
    await _enroll(db, token, clock)
    revoked = await tokens.revoke(SETUP_ADMIN, token.token_id[:6].upper())
    assert (revoked.id, revoked.state, revoked.uses_left) == (token.token_id, TokenState.REVOKED, 2)
    with pytest.raises(Unauthenticated, match=f"{token.token_id} was revoked by test-setup"):
        await _enroll(db, token, clock)
    assert len(await db.read(lambda c: c.execute(select(agents)).all())) == 1
    rows = await db.read(
        lambda c: c.execute(
            select(audit_log).where(audit_log.c.action == "enrollment_token.revoke")
        ).all()
    )
    assert [(r.actor, r.result) for r in rows] == [("test-setup", "ok")]
    assert f'"token_id":"{token.token_id}"' in rows[0].detail
    with pytest.raises(Conflict, match="already revoked"):
        await tokens.revoke(SETUP_ADMIN, token.token_id)


@pytest.mark.parametrize(
    ("reference", "refused", "message"),
    [
        ("", InvalidArgument, "the enrollment token is required"),
        ("not-hex!", InvalidArgument, "is not an enrollment token id: ids are 16 hexadecimal"),
        ("0" * 17, InvalidArgument, "is not an enrollment token id"),
        ("ffffffffffffffff", NotFound, "no enrollment token has an id starting"),
    ],
)
async def test_revoke_refuses_what_names_no_single_token(
    db: Database, reference: str, refused: type[Exception], message: str
) -> None:
    tokens = EnrollmentTokens(db, Clock())
    token = await tokens.create(SETUP_ADMIN, uses=1, ttl=timedelta(hours=1))
    if reference == "ffffffffffffffff" and token.token_id == reference:
        pytest.skip("the random id is the one the test looks for")
    with pytest.raises(refused, match=message):
        await tokens.revoke(SETUP_ADMIN, reference)
    assert (await tokens.list())[0].state is TokenState.ACTIVE
    results = await db.read(
        lambda c: (
            c.execute(
                select(audit_log.c.result).where(audit_log.c.action == "enrollment_token.revoke")
            )
            .scalars()
            .all()
        )
    )
    assert [result.split(":")[0] for result in results] == ["refused"]


async def test_a_prefix_two_tokens_share_is_ambiguous(db: Database) -> None:
    tokens = EnrollmentTokens(db, Clock())
    first = await tokens.create(SETUP_ADMIN, uses=1, ttl=timedelta(hours=1))
    second = await tokens.create(SETUP_ADMIN, uses=1, ttl=timedelta(hours=1))
    # Ids are random: give the second one the first's start, as chance one day will.
    shared = first.token_id[:4] + "0" * 12
    await db.write(
        lambda c: c.execute(
            update(enrollment_tokens)
            .where(enrollment_tokens.c.id == second.token_id)
            .values(id=shared)
        )
    )
    with pytest.raises(InvalidArgument, match=f"{first.token_id[:4]}' is ambiguous: tokens"):
        await tokens.revoke(SETUP_ADMIN, first.token_id[:4])
    assert (await tokens.revoke(SETUP_ADMIN, first.token_id)).state is TokenState.REVOKED
