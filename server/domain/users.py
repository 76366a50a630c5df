"""Technicians and admins, and the API tokens they authenticate with.

An API token is refused once it is revoked (a logout, a rotation), past its expiry, or when its
user is disabled. Every change to users or tokens bumps `generation` here and, through a USERS
wake-up (pg_notify on PostgreSQL), on the other replicas, so their caches of principals
(server/api/auth.py) drop what they hold.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sonde.server.domain import hashed_secrets
from sonde.server.domain.audit import DetailValue
from sonde.server.domain.audited import AuditedUnit, AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.staff_notifications import checked_email
from sonde.server.domain.wakeups import Wake, WakeKind, Wakeups, emit
from sonde.server.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import api_tokens, users
from sonde.server.storage.types import AnyRow

T = TypeVar("T")

USER_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
# sonde_<16 hex id>_<43 base64url characters: 32 random bytes>
API_TOKEN_PATTERN = re.compile(r"^sonde_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NOT_VALID = "API token is not valid"


MAX_TOKEN_LIFETIME = timedelta(days=3650)


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None = None
    token_expires_at: datetime | None = None  # the live API token's; None: it never expires
    email: str | None = None  # told of assignments and SLA risk (staff_notifications.py)


def _record(row: AnyRow) -> UserRecord:
    values = row._mapping
    return UserRecord(
        id=int(values["id"]),
        name=str(values["name"]),
        role=Role.parse(str(values["role"])),
        created_at=values["created_at"],
        disabled_at=values["disabled_at"],
        token_expires_at=values.get("token_expires_at"),
        email=values.get("email") or None,
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
    select(
        api_tokens.c.secret_sha256,
        api_tokens.c.revoked_at,
        api_tokens.c.expires_at,
        users.c.id,
        users.c.name,
        users.c.role,
        users.c.disabled_at,
    )
    .join(users, users.c.id == api_tokens.c.user_id)
    .where(api_tokens.c.id == bindparam("token_id"))
)
_LIVE_TOKEN_EXPIRY = (
    select(api_tokens.c.expires_at)
    .where(api_tokens.c.user_id == users.c.id, api_tokens.c.revoked_at.is_(None))
    .order_by(api_tokens.c.created_at.desc())
    .limit(1)
    .correlate(users)
    .scalar_subquery()
    .label("token_expires_at")
)
_ALL_USERS = select(users, _LIVE_TOKEN_EXPIRY).order_by(users.c.name)
_USER = select(users, _LIVE_TOKEN_EXPIRY).where(users.c.name == bindparam("name"))
_USER_LOCKED = select(users).where(users.c.name == bindparam("name")).with_for_update()
# The enabled admins, locked: two admins disabling each other at once cannot both succeed.
# Locked first, before the user a change names, and in one order (by id): locking the named
# user first, two admins disabling each other each held the row the other then waited for,
# and PostgreSQL ended one with "deadlock detected" instead of the refusal.
_ENABLED_ADMINS = (
    select(users.c.id)
    .where(users.c.role == Role.ADMIN.label, users.c.disabled_at.is_(None))
    .order_by(users.c.id)
    .with_for_update()
)
_SET_USER = update(users).where(users.c.id == bindparam("user_id"))
_REVOKE_USER_TOKENS = (
    update(api_tokens)
    .where(api_tokens.c.user_id == bindparam("revoked_user_id"), api_tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("at"))
)
_REVOKE_TOKEN = (
    update(api_tokens)
    .where(api_tokens.c.id == bindparam("token_id"), api_tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("at"))
)
_COUNT = select(func.count())
FIRST_ADMIN = "admin"


class Users:
    """Users and their API tokens. `generation` counts the changes made through this object,
    so a cache of principals (server/api/auth.py) can drop what it holds when it moves."""

    def __init__(
        self,
        db: Database,
        clock: Clock = utc_now,
        *,
        writes: AuditedWrites | None = None,
        wakeups: Wakeups | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._writes = writes if writes is not None else AuditedWrites(db, clock)
        self._wakeups = wakeups if wakeups is not None else Wakeups()
        self._generation = 0

    @property
    def generation(self) -> int:
        """Moves on every change to users or tokens, here or (USERS wake-ups) elsewhere."""
        return self._generation + self._wakeups.users_generation

    async def add(
        self,
        actor: Principal,
        name: str,
        role: Role | None,
        *,
        token_expires_in: timedelta | None = None,
    ) -> tuple[UserRecord, str]:
        """Create a user, audited as `user.create`; returns the record and their API token
        (shown once, stored hashed), which expires after `token_expires_in` if given."""
        detail: dict[str, DetailValue] = {"name": name[:64], "role": role.label if role else None}
        added = await self._writes.run(
            actor.name,
            "user.create",
            self._adding(actor, name, role, token_expires_in=token_expires_in),
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
        self,
        actor: Principal,
        name: str,
        role: Role | None,
        *,
        only_user: bool = False,
        token_expires_in: timedelta | None = None,
    ) -> AuditedUnit[tuple[UserRecord, str]]:
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
            expires_at = _token_expiry(now, token_expires_in)
            try:
                user_id = connection.execute(_INSERT_USER, user).scalar_one()
            except IntegrityError:  # the unique name; the transaction is rolled back
                raise Conflict(f"a user named {name!r} already exists") from None
            token = _issue_token(connection, int(user_id), now, expires_at)
            record = UserRecord(
                id=int(user_id), name=name, role=role, created_at=now, token_expires_at=expires_at
            )
            return record, token

        return unit

    async def disable(self, actor: Principal, name: str) -> UserRecord:
        """Refuse every token of `name` from now on (audited `user.disable`); not yourself,
        not the last enabled admin."""

        def unit(connection: Connection, entry: AuditEntry) -> UserRecord:
            admins = _locked_enabled_admins(connection)
            user = self._locked_user(connection, name)
            if user.name == actor.name:
                raise InvalidArgument("you cannot disable yourself: ask another admin")
            if user.disabled_at is not None:
                raise Conflict(f"{user.name} is already disabled")
            if user.role is Role.ADMIN:
                _keep_an_admin(admins, user, f"disable {user.name}")
            now = self._clock()
            self._save(connection, user, {"disabled_at": now})
            return dataclasses.replace(user, disabled_at=now)

        return await self._changing(actor, "user.disable", name, unit)

    async def enable(self, actor: Principal, name: str) -> UserRecord:
        """Accept the user's live token again (audited `user.enable`)."""

        def unit(connection: Connection, entry: AuditEntry) -> UserRecord:
            user = self._locked_user(connection, name)
            if user.disabled_at is None:
                raise Conflict(f"{user.name} is not disabled")
            self._save(connection, user, {"disabled_at": None})
            return dataclasses.replace(user, disabled_at=None)

        return await self._changing(actor, "user.enable", name, unit)

    async def set_role(self, actor: Principal, name: str, role: Role) -> UserRecord:
        """Give `name` another role (audited `user.role`); not your own, and never the last
        enabled admin's."""

        def unit(connection: Connection, entry: AuditEntry) -> UserRecord:
            admins = _locked_enabled_admins(connection)
            user = self._locked_user(connection, name)
            entry.detail["from_role"] = user.role.label
            if user.name == actor.name:
                raise InvalidArgument("you cannot change your own role: ask another admin")
            if user.role is role:
                raise Conflict(f"{user.name} is already {role.label}")
            if user.role is Role.ADMIN and user.disabled_at is None:
                _keep_an_admin(admins, user, f"make {user.name} {role.label}")
            self._save(connection, user, {"role": role.label})
            return dataclasses.replace(user, role=role)

        return await self._changing(actor, "user.role", name, unit, {"role": role.label})

    async def set_email(self, actor: Principal, name: str, email: str) -> UserRecord:
        """Give `name` the mail address assignments and SLA risk are told to ("" takes it away;
        audited `user.email`)."""
        try:
            address = checked_email(email)
        except ValueError as error:
            raise InvalidArgument(str(error)) from error

        def unit(connection: Connection, entry: AuditEntry) -> UserRecord:
            user = self._locked_user(connection, name)
            if (user.email or "") == address:
                raise Conflict(f"{user.name} has that mail address already")
            self._save(connection, user, {"email": address or None})
            return dataclasses.replace(user, email=address or None)

        return await self._changing(actor, "user.email", name, unit, {"email": address})

    async def rotate(
        self, actor: Principal, name: str, *, token_expires_in: timedelta | None = None
    ) -> tuple[UserRecord, str]:
        """Revoke every API token of `name` and issue a new one, shown once (audited
        `user.rotate`)."""

        def unit(connection: Connection, entry: AuditEntry) -> tuple[UserRecord, str]:
            user = self._locked_user(connection, name)
            now = self._clock()
            expires_at = _token_expiry(now, token_expires_in)
            revoked = connection.execute(
                _REVOKE_USER_TOKENS, {"revoked_user_id": user.id, "at": now}
            )
            entry.detail["tokens_revoked"] = revoked.rowcount
            token = _issue_token(connection, user.id, now, expires_at)
            self._changed(connection)
            return dataclasses.replace(user, token_expires_at=expires_at), token

        return await self._changing(actor, "user.rotate", name, unit)

    async def logout(self, actor: Principal) -> None:
        """Revoke the API token `actor` called with (audited `user.logout`)."""

        def unit(connection: Connection, entry: AuditEntry) -> None:
            revoked = connection.execute(
                _REVOKE_TOKEN, {"token_id": actor.token_id, "at": self._clock()}
            )
            if revoked.rowcount != 1:
                raise Conflict("this API token is already revoked")
            self._changed(connection)

        await self._changing(actor, "user.logout", actor.name, unit, {"token_id": actor.token_id})

    async def _changing(
        self,
        actor: Principal,
        action: str,
        name: str,
        unit: AuditedUnit[T],
        detail: dict[str, DetailValue] | None = None,
    ) -> T:
        done = await self._writes.run(
            actor.name, action, unit, detail={"name": name[:64], **(detail or {})}, peer=actor.peer
        )
        self._generation += 1
        return done

    def _locked_user(self, connection: Connection, name: str) -> UserRecord:
        row = connection.execute(_USER_LOCKED, {"name": name}).first()
        if row is None:
            raise NotFound(f"no user named {name[:40]!r}")
        return _record(row)

    def _save(self, connection: Connection, user: UserRecord, values: dict[str, object]) -> None:
        connection.execute(_SET_USER, {"user_id": user.id, **values})
        self._changed(connection)

    @staticmethod
    def _changed(connection: Connection) -> None:
        """Tell the other replicas (pg_notify, in this transaction) to drop cached principals."""
        emit(connection, [], Wake(WakeKind.USERS))

    async def authenticate(self, api_token: str) -> Principal:
        """The principal an API token stands for; Unauthenticated when it stands for nobody,
        is revoked or expired, or its user is disabled (saying which, to the token's holder)."""
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
        name = str(row.name)
        ask = f"ask an admin for a new one (sonde users rotate {name})"
        if row.revoked_at is not None:
            raise Unauthenticated(f"this API token was revoked (a logout or a rotation): {ask}")
        if row.expires_at is not None and row.expires_at <= self._clock():
            raise Unauthenticated(
                f"this API token expired at {row.expires_at.isoformat(timespec='seconds')}: {ask}"
            )
        if row.disabled_at is not None:
            raise Unauthenticated(f"user {name} is disabled: ask an admin (sonde users enable)")
        return Principal(
            user_id=int(row.id), name=name, role=Role.parse(str(row.role)), token_id=token_id
        )

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


def _token_expiry(now: datetime, expires_in: timedelta | None) -> datetime | None:
    if expires_in is None:
        return None
    if not timedelta(minutes=1) <= expires_in <= MAX_TOKEN_LIFETIME:
        raise InvalidArgument("an API token expires after 1 minute to 3650 days")
    return now + expires_in


def _issue_token(
    connection: Connection, user_id: int, now: datetime, expires_at: datetime | None
) -> str:
    token_id, secret = hashed_secrets.new_id(), hashed_secrets.new_secret()
    connection.execute(
        _INSERT_API_TOKEN,
        {
            "id": token_id,
            "user_id": user_id,
            "secret_sha256": hashed_secrets.digest(secret),
            "created_at": now,
            "expires_at": expires_at,
        },
    )
    return _encode_token(token_id, secret)


def _locked_enabled_admins(connection: Connection) -> set[int]:
    """The ids of the enabled admins, their rows locked (_ENABLED_ADMINS says why first)."""
    return {int(row.id) for row in connection.execute(_ENABLED_ADMINS).all()}


def _keep_an_admin(admins: set[int], user: UserRecord, what: str) -> None:
    """Refuse a change to `user` that would leave none of the enabled `admins`."""
    if admins - {user.id}:
        return
    raise Conflict(f"cannot {what}: {user.name} is the last enabled admin; make another first")
