"""Enrollment tokens: a limited number of uses before an expiry, the secret stored hashed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain import hashed_secrets
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, require_aware, utc_now
from sonde.server.domain.roles import Principal
from sonde.server.errors import InvalidArgument, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import enrollment_tokens

MAX_USES = 1000
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=30)
REFUSED_UNKNOWN = "enrollment token is unknown or its secret is wrong"
MAX_TOKEN_ID_CHARS = 64
MAX_SECRET_BYTES = 64
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")  # hashed_secrets.new_id

_INSERT_TOKEN = enrollment_tokens.insert()
_TOKEN = select(
    enrollment_tokens.c.secret_sha256, enrollment_tokens.c.expires_at, enrollment_tokens.c.uses_left
).where(enrollment_tokens.c.id == bindparam("token_id"))
# The condition makes the decrement atomic: two enrollments cannot take the last use.
_TAKE_USE = (
    update(enrollment_tokens)
    .where(enrollment_tokens.c.id == bindparam("used_token_id"), enrollment_tokens.c.uses_left > 0)
    .values(uses_left=enrollment_tokens.c.uses_left - 1)
)


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    secret: bytes  # shown once, never stored
    expires_at: datetime
    uses: int


def is_token_id(text: str) -> bool:
    return _TOKEN_ID.fullmatch(text) is not None


def check_presented(token_id: str, secret: bytes) -> None:
    """Refuse a token id and secret that no token could have, before any lookup."""
    if not token_id or not secret:
        raise InvalidArgument("an enrollment needs the token id and its secret")
    if len(token_id) > MAX_TOKEN_ID_CHARS or len(secret) > MAX_SECRET_BYTES:
        raise InvalidArgument("the enrollment request is larger than any valid one")
    if not is_token_id(token_id):
        raise Unauthenticated(REFUSED_UNKNOWN)


def check_token(connection: Connection, token_id: str, secret: bytes, at: datetime) -> None:
    """Unauthenticated, saying why, unless the token exists, its secret matches, it has not
    expired and it has a use left. Spends nothing: take_use does, once all else is checked."""
    at = require_aware(at, "enrollment time")
    row = connection.execute(_TOKEN, {"token_id": token_id}).first()
    if not hashed_secrets.matches(secret, row.secret_sha256 if row is not None else None):
        raise Unauthenticated(REFUSED_UNKNOWN)
    assert row is not None
    if row.expires_at <= at:
        raise Unauthenticated(
            f"enrollment token {token_id} expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    if row.uses_left <= 0:
        raise Unauthenticated(f"enrollment token {token_id} has no uses left")


def take_use(connection: Connection, token_id: str) -> None:
    """Take one use of a checked token inside the caller's unit (the last step of an
    enrollment), or Unauthenticated when a concurrent enrollment took the last one."""
    taken = connection.execute(_TAKE_USE, {"used_token_id": token_id})
    if taken.rowcount != 1:
        raise Unauthenticated(f"enrollment token {token_id} has no uses left")


class EnrollmentTokens:
    def __init__(
        self, db: Database, clock: Clock = utc_now, *, writes: AuditedWrites | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._writes = writes if writes is not None else AuditedWrites(db, clock)

    async def create(self, actor: Principal, *, uses: int, ttl: timedelta) -> IssuedToken:
        """A new token, audited as `enrollment_token.create`; its secret is shown once."""
        token_id, secret = hashed_secrets.new_id(), hashed_secrets.new_secret()

        def unit(connection: Connection, entry: AuditEntry) -> IssuedToken:
            if not 1 <= uses <= MAX_USES:
                raise InvalidArgument(f"uses must be from 1 to {MAX_USES}, got {uses}")
            if not MIN_TTL <= ttl <= MAX_TTL:
                raise InvalidArgument(
                    "the token lifetime must be from 1 minute to 30 days, "
                    f"got {ttl.total_seconds():.0f} s"
                )
            now = self._clock()
            expires_at = now + ttl
            connection.execute(
                _INSERT_TOKEN,
                {
                    "id": token_id,
                    "secret_sha256": hashed_secrets.digest(secret),
                    "uses_granted": uses,
                    "uses_left": uses,
                    "expires_at": expires_at,
                    "created_by": actor.name,
                    "created_at": now,
                },
            )
            entry.detail["token_id"] = token_id
            return IssuedToken(token_id=token_id, secret=secret, expires_at=expires_at, uses=uses)

        return await self._writes.run(
            actor.name,
            "enrollment_token.create",
            unit,
            detail={"uses": uses, "ttl_s": int(ttl.total_seconds())},
            peer=actor.peer,
        )
