from __future__ import annotations

from datetime import timedelta

import pytest

from sonde.server.domain.agents import AgentRegistry, HelloInfo
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from sonde.server.storage.db import Database
from tests.unit.domain.builders import SETUP_ADMIN, T0, enroll, new_agent_id

HELLO = HelloInfo("PC-042", "linux", "Ubuntu 24.04", "6.8.0", "0.1.0")


async def test_enroll_then_get_returns_the_agent(db: Database) -> None:
    registry = AgentRegistry(db)
    agent_id = new_agent_id()
    enrolled = await enroll(registry, db, agent_id, "PC-042", fingerprint="f1")
    got = await registry.get(agent_id)
    assert got == enrolled
    assert (got.hostname, got.platform, got.enrolled_at) == ("PC-042", "linux", T0)
    assert got.enrolled_at.tzinfo is not None
    assert not got.connected
    assert got.last_seen_at is None
    assert not got.online


async def test_reenrolling_the_same_key_updates_the_certificate(db: Database) -> None:
    registry = AgentRegistry(db)
    agent_id = new_agent_id()
    await enroll(registry, db, agent_id, "pc-1", fingerprint="old")
    again = await enroll(
        registry, db, agent_id, "pc-1", fingerprint="new", at=T0 + timedelta(days=1)
    )
    assert again.cert_fingerprint == "new"
    assert len(await registry.list()) == 1


async def test_a_revoked_agent_cannot_enroll_again(db: Database) -> None:
    registry = AgentRegistry(db)
    agent_id = new_agent_id()
    await enroll(registry, db, agent_id, "pc-1")
    await registry.revoke(SETUP_ADMIN, agent_id, "stolen laptop", T0)
    with pytest.raises(PermissionDenied, match=r"was revoked on 2026-03-02.*new key"):
        await enroll(registry, db, agent_id, "pc-1", fingerprint="f2")


async def test_enroll_refuses_an_id_that_is_not_an_agent_id(db: Database) -> None:
    with pytest.raises(InvalidArgument, match="not an agent id"):
        await enroll(AgentRegistry(db), db, "../clients/server", "pc")


async def test_get_unknown_agent_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="no agent with id"):
        await AgentRegistry(db).get(new_agent_id())


async def test_resolve_by_id_host_name_and_prefix(db: Database) -> None:
    registry = AgentRegistry(db)
    one = await enroll(registry, db, new_agent_id(), "PC-042")
    two = await enroll(registry, db, new_agent_id(), "laptop-7", platform="windows")
    assert (await registry.resolve(one.id)).id == one.id
    assert (await registry.resolve("pc-042")).id == one.id
    assert (await registry.resolve("LAPTOP")).id == two.id
    assert (await registry.resolve(two.id[:20])).id == two.id


async def test_resolve_says_what_is_ambiguous_and_what_is_missing(db: Database) -> None:
    registry = AgentRegistry(db)
    await enroll(registry, db, new_agent_id(), "pc-01")
    await enroll(registry, db, new_agent_id(), "pc-02")
    with pytest.raises(InvalidArgument, match=r"'pc' is ambiguous: pc-01 \(.*\), pc-02 \(.*\)"):
        await registry.resolve("pc")
    with pytest.raises(NotFound, match="no agent matches 'mac'"):
        await registry.resolve("mac")
    with pytest.raises(NotFound):
        await registry.resolve("p%")  # LIKE wildcards are literal
    with pytest.raises(InvalidArgument, match="required"):
        await registry.resolve("  ")


async def test_resolve_prefers_the_live_agent_of_a_reinstalled_machine(db: Database) -> None:
    registry = AgentRegistry(db)
    old = await enroll(registry, db, new_agent_id(), "pc-9")
    await registry.revoke(SETUP_ADMIN, old.id, "reinstalled", T0)
    new = await enroll(registry, db, new_agent_id(), "pc-9")
    assert (await registry.resolve("pc-9")).id == new.id


async def test_revoke_once_then_conflict_and_listing(db: Database) -> None:
    registry = AgentRegistry(db)
    agent = await enroll(registry, db, new_agent_id(), "pc")
    revoked = await registry.revoke(SETUP_ADMIN, agent.id, "lost", T0)
    assert revoked.revoked_at == T0
    assert revoked.revoke_reason == "lost"
    assert not revoked.connected
    with pytest.raises(Conflict, match="already revoked"):
        await registry.revoke(SETUP_ADMIN, agent.id, "again", T0)
    assert await registry.list() == []
    assert [a.id for a in await registry.list(include_revoked=True)] == [agent.id]
