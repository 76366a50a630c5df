"""Technicians and admins, and the API tokens they authenticate with."""

from __future__ import annotations

import base64
import builtins
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sonde.server.domain import hashed_secrets
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Principal, Role
from sonde.server.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import api_tokens, users
from sonde.server.storage.types import AnyRow

USER_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
# sonde_<16 hex id>_<43 base64url characters: 32 random bytes>
API_TOKEN_PATTERN = re.compile(r"^sonde_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NOT_VALID = "API token is not valid"


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    role: Role
    created_at: datetime


def _record(row: AnyRow) -> UserRecord:
    values = row._mapping
    return UserRecord(
        id=int(values["id"]),
        name=str(values["name"]),
        role=Role.parse(str(values["role"])),
        created_at=values["created_at"],
    )


def _encode_token(token_id: str, secret: bytes) -> str:
    return f"sonde_{token_id}_{base64.urlsafe_b64encode(secret).rstrip(b'=').decode('ascii')}"


def _decode_token(api_token: str) -> tuple[str, bytes] | None:
    match = API_TOKEN_PATTERN.fullmatch(api_token.strip())
    if match is None:
        return None
    secret = base64.urlsafe_b64decode(match.group(2) + "=")
    # The last character carries 2 unused bits: accept only the one canonical spelling.
    if _encode_token(match.group(1), secret) != api_token.strip():
        return None
    return match.group(1), secret


class Users:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def add(self, name: str, role: Role, *, created_by: str) -> tuple[UserRecord, str]:
        """Create a user; returns the record and their API token (shown once, stored hashed)."""
        if not USER_NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(
                f"{name[:40]!r} is not a valid user name: 2 to 32 characters, lower-case letters, "
                "digits, '.', '_' or '-', starting with a letter"
            )
        now = self._clock()
        token_id, secret = hashed_secrets.new_id(), hashed_secrets.new_secret()
        try:
            async with self._db.transaction() as session:
                user_id = (
                    await session.execute(
                        users.insert()
                        .values(name=name, role=role.label, created_by=created_by, created_at=now)
                        .returning(users.c.id)
                    )
                ).scalar_one()
                await session.execute(
                    api_tokens.insert().values(
                        id=token_id,
                        user_id=user_id,
                        secret_sha256=hashed_secrets.digest(secret),
                        created_at=now,
                    )
                )
        except IntegrityError:
            raise Conflict(f"a user named {name!r} already exists") from None
        record = UserRecord(id=int(user_id), name=name, role=role, created_at=now)
        return record, _encode_token(token_id, secret)

    async def authenticate(self, api_token: str) -> Principal:
        """The principal an API token stands for; Unauthenticated when it stands for nobody."""
        decoded = _decode_token(api_token)
        if decoded is None:
            hashed_secrets.matches(b"", None)  # same work as a wrong secret
            raise Unauthenticated(_NOT_VALID)
        token_id, secret = decoded
        async with self._db.reading() as session:
            row = (
                await session.execute(
                    select(api_tokens.c.secret_sha256, users.c.id, users.c.name, users.c.role)
                    .join(users, users.c.id == api_tokens.c.user_id)
                    .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                )
            ).first()
        if not hashed_secrets.matches(secret, row.secret_sha256 if row is not None else None):
            raise Unauthenticated(_NOT_VALID)
        assert row is not None
        return Principal(user_id=int(row.id), name=str(row.name), role=Role.parse(str(row.role)))

    async def list(self) -> builtins.list[UserRecord]:
        async with self._db.reading() as session:
            rows = (await session.execute(select(users).order_by(users.c.name))).all()
        return [_record(row) for row in rows]

    async def get(self, name: str) -> UserRecord:
        async with self._db.reading() as session:
            row = (await session.execute(select(users).where(users.c.name == name))).first()
        if row is None:
            raise NotFound(f"no user named {name[:40]!r}")
        return _record(row)
