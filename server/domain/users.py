"""Technicians and admins, and the API tokens they authenticate with."""

from __future__ import annotations

import base64
import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sonde.server.domain import hashed_secrets
from sonde.server.domain.audit import DetailValue
from sonde.server.domain.audited import AuditedUnit, AuditedWrites, AuditEntry
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


_INSERT_USER = users.insert().returning(users.c.id)
_INSERT_API_TOKEN = api_tokens.insert()
_ANY_USER = select(users.c.id).limit(1)
_PRINCIPAL = (
    select(api_tokens.c.secret_sha256, users.c.id, users.c.name, users.c.role)
    .join(users, users.c.id == api_tokens.c.user_id)
    .where(api_tokens.c.id == bindparam("token_id"), api_tokens.c.revoked_at.is_(None))
)
_ALL_USERS = select(users).order_by(users.c.name)
_USER = select(users).where(users.c.name == bindparam("name"))
FIRST_ADMIN = "admin"


class Users:
    """Users and their API tokens. `generation` counts the changes made through this object,
    so a cache of principals (server/api/auth.py) can drop what it holds when it moves."""

    def __init__(
        self, db: Database, clock: Clock = utc_now, *, writes: AuditedWrites | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._writes = writes if writes is not None else AuditedWrites(db, clock)
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    async def add(self, actor: Principal, name: str, role: Role | None) -> tuple[UserRecord, str]:
        """Create a user, audited as `user.create`; returns the record and their API token
        (shown once, stored hashed)."""
        detail: dict[str, DetailValue] = {"name": name[:64], "role": role.label if role else None}
        added = await self._writes.run(
            actor.name,
            "user.create",
            self._adding(actor, name, role),
            detail=detail,
            peer=actor.peer,
        )
        self._generation += 1
        return added

    async def add_first_admin(
        self, actor: Principal, *, hosts: Sequence[str]
    ) -> tuple[UserRecord, str]:
        """The admin a new server starts with, audited as `server.init`."""
        unit = self._adding(actor, FIRST_ADMIN, Role.ADMIN, only_user=True)
        added = await self._writes.run(
            actor.name, "server.init", unit, detail={"hosts": ",".join(hosts)}, peer=actor.peer
        )
        self._generation += 1
        return added

    def _adding(
        self, actor: Principal, name: str, role: Role | None, *, only_user: bool = False
    ) -> AuditedUnit[tuple[UserRecord, str]]:
        token_id, secret = hashed_secrets.new_id(), hashed_secrets.new_secret()

        def unit(connection: Connection, entry: AuditEntry) -> tuple[UserRecord, str]:
            if not USER_NAME_PATTERN.fullmatch(name):
                raise InvalidArgument(
                    f"{name[:40]!r} is not a valid user name: 2 to 32 characters, lower-case "
                    "letters, digits, '.', '_' or '-', starting with a letter"
                )
            if role is None:
                raise InvalidArgument("a role is required: l1, l2 or admin")
            if only_user and connection.execute(_ANY_USER).first() is not None:
                raise Conflict("this server already has users: its first admin exists")
            now = self._clock()
            user = {"name": name, "role": role.label, "created_by": actor.name, "created_at": now}
            try:
                user_id = connection.execute(_INSERT_USER, user).scalar_one()
            except IntegrityError:  # the unique name; the transaction is rolled back
                raise Conflict(f"a user named {name!r} already exists") from None
            connection.execute(
                _INSERT_API_TOKEN,
                {
                    "id": token_id,
                    "user_id": user_id,
                    "secret_sha256": hashed_secrets.digest(secret),
                    "created_at": now,
                },
            )
            record = UserRecord(id=int(user_id), name=name, role=role, created_at=now)
            return record, _encode_token(token_id, secret)

        return unit

    async def authenticate(self, api_token: str) -> Principal:
        """The principal an API token stands for; Unauthenticated when it stands for nobody."""
        decoded = _decode_token(api_token)
        if decoded is None:
            hashed_secrets.matches(b"", None)  # same work as a wrong secret
            raise Unauthenticated(_NOT_VALID)
        token_id, secret = decoded
        row = await self._db.read(
            lambda connection: connection.execute(_PRINCIPAL, {"token_id": token_id}).first()
        )
        if not hashed_secrets.matches(secret, row.secret_sha256 if row is not None else None):
            raise Unauthenticated(_NOT_VALID)
        assert row is not None
        return Principal(user_id=int(row.id), name=str(row.name), role=Role.parse(str(row.role)))

    async def list(self) -> builtins.list[UserRecord]:
        rows = await self._db.read(lambda connection: connection.execute(_ALL_USERS).all())
        return [_record(row) for row in rows]

    async def get(self, name: str) -> UserRecord:
        row = await self._db.read(
            lambda connection: connection.execute(_USER, {"name": name}).first()
        )
        if row is None:
            raise NotFound(f"no user named {name[:40]!r}")
        return _record(row)
