"""Who holds which agent's stream: batched session rows, replica leases, admission in memory."""

from __future__ import annotations

from datetime import timedelta

from sonde.server.domain.agents import AgentRegistry, HeartbeatRecord, HelloInfo
from sonde.server.domain.fleet_upkeep import FleetUpkeep
from sonde.server.domain.replicas import LEASE, Replica
from sonde.server.domain.sessions import AgentAdmission, SessionClosed, SessionOpened, SessionRows
from sonde.server.domain.wakeups import Wake, WakeKind, Wakeups
from sonde.server.storage.db import Database
from tests.unit.domain.builders import SETUP_ADMIN, T0, Clock, enroll, new_agent_id, technician
from tests.unit.domain.test_diagnostics import desk, queued

HELLO = HelloInfo("PC-042", "linux", "Ubuntu 24.04", "6.8.0", "0.1.0")


async def test_a_session_opens_beats_and_closes(db: Database) -> None:
    registry = AgentRegistry(db)
    agent = await enroll(registry, db, new_agent_id(), "pc-042")
    rows = SessionRows(db, "replica-a")
    rows.add(SessionOpened(agent.id, "s1", HELLO, "127.0.0.1:5555", T0))
    assert await rows.flush() == 1
    online = await registry.get(agent.id)
    assert (online.online, online.online_since, online.os_name) == (True, T0, "Ubuntu 24.04")
    assert [a.id for a in await registry.list(online_only=True)] == [agent.id]
    later = T0 + timedelta(seconds=15)
    await registry.record_heartbeats(
        [
            HeartbeatRecord(agent.id, T0 + timedelta(seconds=5), 10.0, 20.0, 30.0),
            HeartbeatRecord(agent.id, later, 11.0, 250.0, float("nan")),
        ]
    )
    beat = await registry.get(agent.id)
    assert (beat.last_seen_at, beat.cpu_percent, beat.memory_percent) == (later, 11.0, 100.0)
    assert beat.system_disk_percent == 0.0
    rows.add(SessionClosed(agent.id, "s1", later))
    await rows.flush()
    assert not (await registry.get(agent.id)).connected


async def test_an_old_streams_end_never_marks_a_newer_one_offline(db: Database) -> None:
    registry = AgentRegistry(db)
    agent = await enroll(registry, db, new_agent_id(), "pc-042")
    on_a, on_b = SessionRows(db, "replica-a"), SessionRows(db, "replica-b")
    on_a.add(SessionOpened(agent.id, "old", HELLO, "x", T0))
    await on_a.flush()
    on_b.add(SessionOpened(agent.id, "new", HELLO, "x", T0 + timedelta(seconds=1)))
    await on_b.flush()
    on_a.add(SessionClosed(agent.id, "old", T0 + timedelta(seconds=2)))  # A notices late
    await on_a.flush()
    assert (await registry.get(agent.id)).online


async def test_hello_text_is_made_inert_and_unknown_agents_are_reported(db: Database) -> None:
    registry = AgentRegistry(db)
    agent = await enroll(registry, db, new_agent_id(), "pc")
    unknown: list[str] = []
    rows = SessionRows(db, "replica-a", on_unknown=unknown.append)
    hostile = HelloInfo("evil\x1b[31m\nhost" + "x" * 500, "linux", "os", "1", "0.1")
    stranger = new_agent_id()
    rows.add(SessionOpened(agent.id, "s1", hostile, "127.0.0.1:1", T0))
    rows.add(SessionOpened(stranger, "s2", HELLO, "127.0.0.1:2", T0))
    await rows.flush()
    stored = (await registry.get(agent.id)).hostname
    assert "\x1b" not in stored
    assert "\n" not in stored
    assert len(stored) <= 255
    assert unknown == [stranger]


async def test_a_dead_replicas_sessions_go_offline_when_its_lease_lapses(db: Database) -> None:
    clock = Clock()
    registry = AgentRegistry(db)
    agent = await enroll(registry, db, new_agent_id(), "pc-042")
    dead, live = Replica(db, clock=clock), Replica(db, clock=clock)
    for replica in (dead, live):
        await replica.register()
    rows = SessionRows(db, dead.id)
    rows.add(SessionOpened(agent.id, "s1", HELLO, "x", T0))
    await rows.flush()
    assert (await live.renew_and_sweep()).sessions_ended == 0
    clock.advance(seconds=LEASE.total_seconds() + 1)  # dead stopped renewing: kill -9
    assert (await live.renew_and_sweep()).sessions_ended == 1
    assert not (await registry.get(agent.id)).connected


async def test_on_sqlite_a_start_ends_every_stale_session(db: Database) -> None:
    registry = AgentRegistry(db)
    agents = [await enroll(registry, db, new_agent_id(), name) for name in ("a1", "a2")]
    rows = SessionRows(db, "an-earlier-run")
    for number, agent in enumerate(agents):
        rows.add(SessionOpened(agent.id, f"s{number}", HELLO, "x", T0))
    await rows.flush()
    ended = await Replica(db).register()
    if db.dialect == "sqlite":  # one process owns the data folder
        assert ended == 2
        assert await registry.list(online_only=True) == []
    else:  # replicas share the database: the lease decides
        assert ended == 0


async def test_a_graceful_stop_ends_its_own_sessions_only(db: Database) -> None:
    registry = AgentRegistry(db)
    mine = await enroll(registry, db, new_agent_id(), "m")
    theirs = await enroll(registry, db, new_agent_id(), "t")
    leaving, staying = Replica(db), Replica(db)
    for replica, agent in ((leaving, mine), (staying, theirs)):
        await replica.register()
        rows = SessionRows(db, replica.id)
        rows.add(SessionOpened(agent.id, "s", HELLO, "x", T0))
        await rows.flush()
    await leaving.retire()
    assert [a.id for a in await registry.list(online_only=True)] == [theirs.id]


async def test_admission_refuses_revoked_and_unknown_agents_from_memory(db: Database) -> None:
    wakeups = Wakeups()
    registry = AgentRegistry(db, wakeups=wakeups)
    kept = await enroll(registry, db, new_agent_id(), "kept")
    lost = await enroll(registry, db, new_agent_id(), "lost")
    admission = AgentAdmission(db)
    await admission.load()
    wakeups.on_revoked(admission.revoked)
    assert await admission.admits(kept.id)
    assert await admission.admits(lost.id)
    await registry.revoke(SETUP_ADMIN, lost.id, "stolen", T0)  # the wake-up reaches it at once
    assert not await admission.admits(lost.id)
    assert not await admission.admits(new_agent_id())
    late = await enroll(registry, db, new_agent_id(), "enrolled-after-start")
    assert await admission.admits(late.id)


async def test_a_revocation_is_a_wake_up_for_the_agents_session(db: Database) -> None:
    wakeups = Wakeups()
    registry = AgentRegistry(db, wakeups=wakeups)
    agent = await enroll(registry, db, new_agent_id(), "pc")
    heard: list[Wake] = []
    wakeups.attach_session(agent.id, heard.append)
    await registry.revoke(SETUP_ADMIN, agent.id, "stolen", T0)
    assert heard == [Wake(WakeKind.REVOKED, agent.id)]


async def test_the_upkeep_wakes_a_held_agent_whose_wake_up_was_lost(db: Database) -> None:
    here, elsewhere = desk(db), desk(db)  # two replicas; elsewhere's wake-up never reaches here
    agent = await enroll(AgentRegistry(db), db, new_agent_id(), "pc")
    replica = Replica(db)
    await replica.register()
    rows = SessionRows(db, replica.id)
    rows.add(SessionOpened(agent.id, "s1", HELLO, "x", T0))
    await rows.flush()
    heard: list[Wake] = []
    here.wakeups.attach_session(agent.id, heard.append)
    ann = await technician(db, "ann")
    await queued(elsewhere, ann, agent.id)
    assert heard == []
    await FleetUpkeep(replica, here.commands, here.wakeups).once()
    assert heard == [Wake(WakeKind.COMMANDS_DUE, agent.id)]
