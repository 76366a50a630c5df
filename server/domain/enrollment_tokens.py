"""Enrollment tokens: a limited number of uses before an expiry, the secret stored hashed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from sonde.server.domain import hashed_secrets
from sonde.server.domain.clock import Clock, require_aware, utc_now
from sonde.server.errors import InvalidArgument, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import enrollment_tokens

MAX_USES = 1000
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=30)
_UNKNOWN = "enrollment token is unknown or its secret is wrong"


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    secret: bytes  # shown once, never stored
    expires_at: datetime
    uses: int


class EnrollmentTokens:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def create(self, *, uses: int, ttl: timedelta, created_by: str) -> IssuedToken:
        if not 1 <= uses <= MAX_USES:
            raise InvalidArgument(f"uses must be from 1 to {MAX_USES}, got {uses}")
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise InvalidArgument(
                "the token lifetime must be from 1 minute to 30 days, "
                f"got {ttl.total_seconds():.0f} s"
            )
        now = self._clock()
        token_id, secret = hashed_secrets.new_id(), hashed_secrets.new_secret()
        expires_at = now + ttl
        async with self._db.transaction() as session:
            await session.execute(
                enrollment_tokens.insert().values(
                    id=token_id,
                    secret_sha256=hashed_secrets.digest(secret),
                    uses_granted=uses,
                    uses_left=uses,
                    expires_at=expires_at,
                    created_by=created_by,
                    created_at=now,
                )
            )
        return IssuedToken(token_id=token_id, secret=secret, expires_at=expires_at, uses=uses)

    async def consume(self, token_id: str, secret: bytes, at: datetime) -> None:
        """Take one use of the token, or Unauthenticated saying why not."""
        at = require_aware(at, "enrollment time")
        async with self._db.transaction() as session:
            row = (
                await session.execute(
                    select(enrollment_tokens.c.secret_sha256, enrollment_tokens.c.expires_at).where(
                        enrollment_tokens.c.id == token_id
                    )
                )
            ).first()
            if not hashed_secrets.matches(secret, row.secret_sha256 if row is not None else None):
                raise Unauthenticated(_UNKNOWN)
            assert row is not None
            if row.expires_at <= at:
                raise Unauthenticated(
                    f"enrollment token {token_id} expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC"
                )
            # The condition makes the decrement atomic: two enrollments cannot take the last use.
            taken = await session.execute(
                update(enrollment_tokens)
                .where(enrollment_tokens.c.id == token_id, enrollment_tokens.c.uses_left > 0)
                .values(uses_left=enrollment_tokens.c.uses_left - 1)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise Unauthenticated(f"enrollment token {token_id} has no uses left")
