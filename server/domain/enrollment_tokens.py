"""Enrollment tokens: a limited number of uses before an expiry, the secret stored hashed."""

from __future__ import annotations

import builtins
import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain import hashed_secrets
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, require_aware, utc_now
from sonde.server.domain.roles import Principal
from sonde.server.domain.text import checked_text
from sonde.server.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import enrollment_tokens
from sonde.server.storage.types import AnyRow

MAX_USES = 1000
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=30)
REFUSED_UNKNOWN = "enrollment token is unknown or its secret is wrong"
MAX_TOKEN_ID_CHARS = 64
MAX_SECRET_BYTES = 64
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")  # hashed_secrets.new_id

_INSERT_TOKEN = enrollment_tokens.insert()
_TOKEN = select(
    enrollment_tokens.c.secret_sha256,
    enrollment_tokens.c.expires_at,
    enrollment_tokens.c.uses_left,
    enrollment_tokens.c.revoked_at,
    enrollment_tokens.c.revoked_by,
).where(enrollment_tokens.c.id == bindparam("token_id"))
# What a token shows: never its secret's hash.
_SHOWN = (
    enrollment_tokens.c.id,
    enrollment_tokens.c.created_by,
    enrollment_tokens.c.created_at,
    enrollment_tokens.c.expires_at,
    enrollment_tokens.c.uses_granted,
    enrollment_tokens.c.uses_left,
    enrollment_tokens.c.revoked_at,
    enrollment_tokens.c.revoked_by,
)
_ALL_TOKENS = select(*_SHOWN).order_by(
    enrollment_tokens.c.created_at.desc(), enrollment_tokens.c.id
)
_ACTIVE_TOKENS = _ALL_TOKENS.where(
    enrollment_tokens.c.revoked_at.is_(None),
    enrollment_tokens.c.uses_left > 0,
    enrollment_tokens.c.expires_at > bindparam("now"),
)
_AMBIGUOUS_SHOWN = 5
_TOKENS_BY_PREFIX = (
    select(*_SHOWN)
    .where(enrollment_tokens.c.id.like(bindparam("pattern")))
    .order_by(enrollment_tokens.c.id)
    .limit(_AMBIGUOUS_SHOWN + 1)
    .with_for_update()
)
_REVOKE = (
    update(enrollment_tokens)
    .where(enrollment_tokens.c.id == bindparam("revoked_token_id"))
    .values(revoked_at=bindparam("revoked_at_"), revoked_by=bindparam("revoked_by_"))
    .returning(*_SHOWN)
)
_TOKEN_PREFIX = re.compile(r"[0-9a-f]{1,16}")
# The condition makes the decrement atomic: two enrollments cannot take the last use.
_TAKE_USE = (
    update(enrollment_tokens)
    .where(enrollment_tokens.c.id == bindparam("used_token_id"), enrollment_tokens.c.uses_left > 0)
    .values(uses_left=enrollment_tokens.c.uses_left - 1)
)


class TokenState(enum.Enum):
    ACTIVE = "active"
    USED_UP = "used up"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class EnrollmentToken:
    """A token as an admin sees it: who made it, its uses and lifetime, never its secret."""

    id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    uses_granted: int
    uses_left: int
    revoked_at: datetime | None
    revoked_by: str
    state: TokenState  # as of when it was read


def _state(row: AnyRow, at: datetime) -> TokenState:
    if row.revoked_at is not None:
        return TokenState.REVOKED
    if row.uses_left <= 0:
        return TokenState.USED_UP
    if row.expires_at <= at:
        return TokenState.EXPIRED
    return TokenState.ACTIVE


def _token(row: AnyRow, at: datetime) -> EnrollmentToken:
    values = row._mapping
    shown = {name: values[name] for name in EnrollmentToken.__dataclass_fields__ if name != "state"}
    return EnrollmentToken(**shown, state=_state(row, at))


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


def check_token(
    connection: Connection, token_id: str, secret: bytes, at: datetime, *, spends_a_use: bool = True
) -> None:
    """Unauthenticated, saying why, unless the token exists, its secret matches, it is not
    revoked, it has not expired and (when the enrollment `spends_a_use`) it has a use left.
    Spends nothing: take_use does, once all else is checked. A retry of an enrollment whose
    reply was lost spends no use, so it passes `spends_a_use=False`: a used-up token still
    answers its own enrollment again, a revoked or expired one does not."""
    at = require_aware(at, "enrollment time")
    row = connection.execute(_TOKEN, {"token_id": token_id}).first()
    if not hashed_secrets.matches(secret, row.secret_sha256 if row is not None else None):
        raise Unauthenticated(REFUSED_UNKNOWN)
    assert row is not None
    if row.revoked_at is not None:
        raise Unauthenticated(
            f"enrollment token {token_id} was revoked by {row.revoked_by} "
            f"on {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    if row.expires_at <= at:
        raise Unauthenticated(
            f"enrollment token {token_id} expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    if spends_a_use and row.uses_left <= 0:
        raise Unauthenticated(f"enrollment token {token_id} has no uses left")


def take_use(connection: Connection, token_id: str) -> None:
    """Take one use of a checked token inside the caller's unit (the last step of an
    enrollment), or Unauthenticated when a concurrent enrollment took the last one."""
    taken = connection.execute(_TAKE_USE, {"used_token_id": token_id})
    if taken.rowcount != 1:
        raise Unauthenticated(f"enrollment token {token_id} has no uses left")


def revoke_unused(connection: Connection, token_id: str, by: str, at: datetime) -> bool:
    """Take back a token nobody enrolled with (uses left, not revoked) inside the caller's
    unit of work, which audits it; whether it did."""
    taken = connection.execute(
        update(enrollment_tokens)
        .where(
            enrollment_tokens.c.id == token_id,
            enrollment_tokens.c.revoked_at.is_(None),
            enrollment_tokens.c.uses_left == enrollment_tokens.c.uses_granted,
        )
        .values(revoked_at=at, revoked_by=by)
    )
    return taken.rowcount == 1


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

    async def list(self, *, include_inactive: bool = False) -> builtins.list[EnrollmentToken]:
        """Newest first: the tokens that can still enroll, or every token with include_inactive."""
        now = self._clock()
        statement = _ALL_TOKENS if include_inactive else _ACTIVE_TOKENS
        rows = await self._db.read(
            lambda connection: connection.execute(statement, {"now": now}).all()
        )
        return [_token(row, now) for row in rows]

    async def revoke(self, actor: Principal, token: str) -> EnrollmentToken:
        """Take back a token (its id or an unambiguous prefix): every enrollment with it is
        refused from the commit on, on every replica (each enrollment reads its row).
        Audited as `enrollment_token.revoke`."""

        def unit(connection: Connection, entry: AuditEntry) -> EnrollmentToken:
            now = self._clock()
            found = _resolve_token(connection, token, now)
            entry.detail["token_id"] = found.id
            if found.revoked_at is not None:
                raise Conflict(
                    f"enrollment token {found.id} was already revoked by {found.revoked_by} "
                    f"on {found.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
                )
            values = {
                "revoked_token_id": found.id,
                "revoked_at_": now,
                "revoked_by_": actor.name,
            }
            return _token(connection.execute(_REVOKE, values).one(), now)

        return await self._writes.run(
            actor.name,
            "enrollment_token.revoke",
            unit,
            detail={"token": token[:40]},
            peer=actor.peer,
        )


def _resolve_token(connection: Connection, ref: str, at: datetime) -> EnrollmentToken:
    """The token `ref` names: its whole id, or the start of exactly one token's id."""
    text = checked_text("the enrollment token", ref, max_chars=MAX_TOKEN_ID_CHARS, required=True)
    key = text.lower()
    if not _TOKEN_PREFIX.fullmatch(key):
        raise InvalidArgument(
            f"{text!r} is not an enrollment token id: ids are 16 hexadecimal characters "
            "(sonde tokens list shows them)"
        )
    rows = connection.execute(_TOKENS_BY_PREFIX, {"pattern": f"{key}%"}).all()
    if not rows:
        raise NotFound(f"no enrollment token has an id starting {key!r}")
    if len(rows) > 1:
        shown = ", ".join(row.id for row in rows[:_AMBIGUOUS_SHOWN])
        more = " and more" if len(rows) > _AMBIGUOUS_SHOWN else ""
        raise InvalidArgument(f"{key!r} is ambiguous: tokens {shown}{more}; give more of the id")
    return _token(rows[0], at)
