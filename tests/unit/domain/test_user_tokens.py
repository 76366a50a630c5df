"""Taking access back: disabled users, rotated, expired and logged-out API tokens, on SQLite
and PostgreSQL; and a second replica that drops its cached principals when told."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.users import Users
from sonde.server.domain.wake_listener import WakeListener
from sonde.server.domain.wakeups import Wakeups
from sonde.server.errors import Conflict, InvalidArgument, Unauthenticated
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log
from tests.unit.domain.builders import SETUP_ADMIN, T0, Clock


async def _admin(users: Users, name: str = "root") -> tuple[Principal, str]:
    _, token = await users.add(SETUP_ADMIN, name, Role.ADMIN)
    return await users.authenticate(token), token


async def _actions(db: Database) -> list[tuple[str, str, str, str]]:
    rows = await db.read(lambda c: c.execute(select(audit_log).order_by(audit_log.c.id)).all())
    return [(r.actor, r.action, r.detail, r.result) for r in rows]


async def test_a_disabled_user_is_refused_until_enabled_again(db: Database) -> None:
    users = Users(db)
    root, _ = await _admin(users)
    _, token = await users.add(root, "ann", Role.L1)
    disabled = await users.disable(root, "ann")
    assert disabled.disabled_at is not None
    with pytest.raises(Unauthenticated, match="user ann is disabled"):
        await users.authenticate(token)
    with pytest.raises(Conflict, match="ann is already disabled"):
        await users.disable(root, "ann")
    assert (await users.get("ann")).disabled_at == disabled.disabled_at
    await users.enable(root, "ann")
    assert (await users.authenticate(token)).name == "ann"
    actions = [(actor, action, result) for actor, action, _, result in await _actions(db)]
    assert actions[-3:] == [
        ("root", "user.disable", "ok"),
        ("root", "user.disable", "refused: Conflict: ann is already disabled"),
        ("root", "user.enable", "ok"),
    ]


async def test_nobody_disables_or_demotes_themselves_or_the_last_admin(db: Database) -> None:
    users = Users(db)
    root, _ = await _admin(users)
    with pytest.raises(InvalidArgument, match="you cannot disable yourself"):
        await users.disable(root, "root")
    with pytest.raises(InvalidArgument, match="you cannot change your own role"):
        await users.set_role(root, "root", Role.L1)
    # Another admin may not take away the last one either.
    _, other_token = await users.add(root, "ops", Role.L2)
    await users.set_role(root, "ops", Role.ADMIN)
    ops = await users.authenticate(other_token)
    assert ops.role is Role.ADMIN
    await users.disable(ops, "root")  # two enabled admins: one may go
    with pytest.raises(Conflict, match="ops is the last enabled admin"):
        await users.set_role(SETUP_ADMIN, "ops", Role.L2)
    with pytest.raises(Conflict, match="ops is the last enabled admin"):
        await users.disable(SETUP_ADMIN, "ops")


ROUNDS = 6


async def test_two_admins_disabling_each_other_at_once_leave_one_enabled(db: Database) -> None:
    """Round after round, one of the two is refused with the reason, never a deadlock error
    (PostgreSQL ended one with "deadlock detected" when each locked its target first)."""
    users = Users(db)
    first, _ = await _admin(users, "first")
    second, _ = await _admin(users, "second")
    for _ in range(ROUNDS):
        outcomes = await asyncio.gather(
            users.disable(first, "second"), users.disable(second, "first"), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(refused) == 1, outcomes
        assert "is the last enabled admin" in str(refused[0])
        enabled = [u.name for u in await users.list() if u.disabled_at is None]
        assert len(enabled) == 1
        await users.enable(SETUP_ADMIN, "second" if enabled == ["first"] else "first")


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(db: Database) -> None:
    users = Users(db)
    first, _ = await _admin(users, "first")
    second, _ = await _admin(users, "second")
    for _ in range(ROUNDS):
        outcomes = await asyncio.gather(
            users.set_role(first, "second", Role.L2),
            users.set_role(second, "first", Role.L2),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(refused) == 1, outcomes
        admins = [u.name for u in await users.list() if u.role is Role.ADMIN]
        assert len(admins) == 1
        await users.set_role(SETUP_ADMIN, "second" if admins == ["first"] else "first", Role.ADMIN)


async def test_a_new_role_is_what_the_token_stands_for(db: Database) -> None:
    users = Users(db)
    root, _ = await _admin(users)
    _, token = await users.add(root, "ann", Role.L1)
    changed = await users.set_role(root, "ann", Role.L2)
    assert changed.role is Role.L2
    assert (await users.authenticate(token)).role is Role.L2
    with pytest.raises(Conflict, match="ann is already l2"):
        await users.set_role(root, "ann", Role.L2)
    assert (await _actions(db))[-2][1:3] == (
        "user.role",
        '{"from_role":"l1","name":"ann","role":"l2"}',
    )


async def test_rotation_revokes_every_old_token_and_issues_one(db: Database) -> None:
    users = Users(db)
    root, _ = await _admin(users)
    _, old = await users.add(root, "ann", Role.L1)
    _, new = await users.rotate(root, "ann")
    assert new != old
    with pytest.raises(Unauthenticated, match=r"revoked .*sonde users rotate ann"):
        await users.authenticate(old)
    assert (await users.authenticate(new)).name == "ann"
    actor, action, detail, _ = (await _actions(db))[-1]
    assert (actor, action) == ("root", "user.rotate")
    assert '"tokens_revoked":1' in detail
    assert new.split("_", 2)[2] not in str(await _actions(db))


async def test_a_token_expires_when_it_said_it_would(db: Database) -> None:
    clock = Clock()
    users = Users(db, clock)
    root, _ = await _admin(users)
    created, token = await users.add(root, "ann", Role.L1, token_expires_in=timedelta(hours=8))
    assert created.token_expires_at == T0 + timedelta(hours=8)
    assert (await users.get("ann")).token_expires_at == T0 + timedelta(hours=8)
    clock.advance(hours=7, minutes=59)
    assert (await users.authenticate(token)).name == "ann"
    clock.advance(minutes=1)
    with pytest.raises(Unauthenticated, match=r"expired at 2026-.*sonde users rotate ann"):
        await users.authenticate(token)
    for bad in (timedelta(seconds=30), timedelta(days=4000)):
        with pytest.raises(InvalidArgument, match="expires after 1 minute to 3650 days"):
            await users.add(root, "bob", Role.L1, token_expires_in=bad)


async def test_logout_revokes_the_token_it_is_called_with_only(db: Database) -> None:
    users = Users(db)
    root, root_token = await _admin(users)
    _, ann_token = await users.add(root, "ann", Role.L1)
    ann = await users.authenticate(ann_token)
    await users.logout(ann)
    with pytest.raises(Unauthenticated, match="revoked"):
        await users.authenticate(ann_token)
    with pytest.raises(Conflict, match="already revoked"):
        await users.logout(ann)
    assert (await users.authenticate(root_token)).name == "root"
    assert (await _actions(db))[-2][:2] == ("ann", "user.logout")


async def test_every_change_moves_the_generation_a_cache_watches(db: Database) -> None:
    users = Users(db)
    root, _ = await _admin(users)
    await users.add(root, "ann", Role.L1)
    seen = users.generation
    for change in (
        users.disable(root, "ann"),
        users.enable(root, "ann"),
        users.set_role(root, "ann", Role.L2),
        users.rotate(root, "ann"),
    ):
        await change
        assert users.generation == seen + 1
        seen = users.generation


@pytest.mark.postgres
async def test_another_replica_hears_of_a_change_within_a_second(pg_url: str) -> None:
    """Replica B listens (LISTEN/NOTIFY); a user disabled through replica A moves B's
    generation, which drops B's cached principals (server/api/auth.py)."""
    db_a, db_b = await Database.open(pg_url), await Database.open(pg_url)
    wakeups_b = Wakeups()
    listener = WakeListener(pg_url, wakeups_b)
    listening = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        users_a, users_b = Users(db_a), Users(db_b, wakeups=wakeups_b)
        root, _ = await _admin(users_a, f"root{id(users_a) % 1000}")
        await users_a.add(root, f"ann{id(users_a) % 1000}", Role.L1)
        before = users_b.generation
        await users_a.disable(root, f"ann{id(users_a) % 1000}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while users_b.generation == before and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert users_b.generation != before
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await db_a.close()
        await db_b.close()
