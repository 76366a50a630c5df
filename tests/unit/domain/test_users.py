from __future__ import annotations

import re

import pytest

from sonde.server.domain.roles import Role
from sonde.server.domain.users import Users
from sonde.server.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from sonde.server.storage.db import Database


async def test_add_returns_a_token_that_authenticates(db: Database) -> None:
    users = Users(db)
    record, token = await users.add("ann.l2", Role.L2, created_by="admin")
    assert re.fullmatch(r"sonde_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", token)
    principal = await users.authenticate(token)
    assert (principal.user_id, principal.name, principal.role) == (record.id, "ann.l2", Role.L2)
    assert await users.get("ann.l2") == record
    assert [user.name for user in await users.list()] == ["ann.l2"]


async def test_wrong_tokens_are_refused_alike(db: Database) -> None:
    users = Users(db)
    _, token = await users.add("bob", Role.L1, created_by="admin")
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
        await Users(db).add(name, Role.L1, created_by="admin")


async def test_duplicate_name_is_a_conflict_and_unknown_is_not_found(db: Database) -> None:
    users = Users(db)
    await users.add("carol", Role.ADMIN, created_by="admin")
    with pytest.raises(Conflict, match="a user named 'carol' already exists"):
        await users.add("carol", Role.L1, created_by="admin")
    with pytest.raises(NotFound, match="no user named 'dave'"):
        await users.get("dave")
