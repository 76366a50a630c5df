from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from sonde.server.domain.roles import Role
from sonde.server.domain.users import Users
from sonde.server.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log
from sonde.server.storage.tables import users as user_rows
from tests.unit.domain.builders import SETUP_ADMIN


async def test_add_returns_a_token_that_authenticates(db: Database) -> None:
    users = Users(db)
    record, token = await users.add(SETUP_ADMIN, "ann.l2", Role.L2)
    assert re.fullmatch(r"sonde_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", token)
    principal = await users.authenticate(token)
    assert (principal.user_id, principal.name, principal.role) == (record.id, "ann.l2", Role.L2)
    assert await users.get("ann.l2") == record
    assert [user.name for user in await users.list()] == ["ann.l2"]


async def test_add_is_audited_without_the_token(db: Database) -> None:
    _, token = await Users(db).add(SETUP_ADMIN, "ann", Role.L1)
    rows = await db.read(lambda c: c.execute(select(audit_log)).all())
    assert [(r.actor, r.action, r.detail, r.result) for r in rows] == [
        ("test-setup", "user.create", '{"name":"ann","role":"l1"}', "ok")
    ]
    assert token.split("_", 2)[2] not in str(rows)


async def test_every_change_moves_the_generation(db: Database) -> None:
    users = Users(db)
    before = users.generation
    await users.add(SETUP_ADMIN, "ann", Role.L1)
    assert users.generation == before + 1
    with pytest.raises(Conflict):
        await users.add(SETUP_ADMIN, "ann", Role.L1)
    assert users.generation == before + 1  # a refused change changed nothing


async def test_wrong_tokens_are_refused_alike(db: Database) -> None:
    users = Users(db)
    _, token = await users.add(SETUP_ADMIN, "bob", Role.L1)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    # Same secret bits, but the last character's 2 unused bits set: not the token we issued.
    alias = token[:-1] + chr(ord(token[-1]) + 1) if token[-1] not in "9_-zZ" else tampered
    unknown_id = "sonde_" + "0" * 16 + token[22:]
    for bad in (tampered, alias, unknown_id, "", "sonde_x", token + "x"):
        with pytest.raises(Unauthenticated, match=r"^API token is not valid$"):
            await users.authenticate(bad)


@pytest.mark.parametrize("name", ["A", "a", "1abc", "ann smith", "x" * 33, "ann\n"])
async def test_bad_names_are_refused(db: Database, name: str) -> None:
    with pytest.raises(InvalidArgument, match="not a valid user name"):
        await Users(db).add(SETUP_ADMIN, name, Role.L1)


async def test_a_role_is_required(db: Database) -> None:
    with pytest.raises(InvalidArgument, match="a role is required: l1, l2 or admin"):
        await Users(db).add(SETUP_ADMIN, "ann", None)
    results = await db.read(lambda c: c.execute(select(audit_log.c.result)).scalars().all())
    assert results == ["refused: InvalidArgument: a role is required: l1, l2 or admin"]


async def test_duplicate_name_is_a_conflict_and_unknown_is_not_found(db: Database) -> None:
    users = Users(db)
    await users.add(SETUP_ADMIN, "carol", Role.ADMIN)
    with pytest.raises(Conflict, match="a user named 'carol' already exists"):
        await users.add(SETUP_ADMIN, "carol", Role.L1)
    with pytest.raises(NotFound, match="no user named 'dave'"):
        await users.get("dave")


async def test_the_first_admin_is_audited_as_the_servers_initialisation(db: Database) -> None:
    users = Users(db)
    record, token = await users.add_first_admin(SETUP_ADMIN, hosts=["sonde.lan", "10.0.0.5"])
    assert (record.name, record.role) == ("admin", Role.ADMIN)
    assert (await users.authenticate(token)).name == "admin"
    rows = await db.read(lambda c: c.execute(select(audit_log)).all())
    assert [(r.action, r.detail) for r in rows] == [
        ("server.init", '{"hosts":"sonde.lan,10.0.0.5"}')
    ]
    with pytest.raises(Conflict, match="already has users"):
        await users.add_first_admin(SETUP_ADMIN, hosts=[])
    assert len(await db.read(lambda c: c.execute(select(user_rows.c.id)).all())) == 1
