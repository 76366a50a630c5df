"""How a technician's reference reaches an agent when another agent reports a colliding name.

A host name is the agent's own word (it reports one on every Hello); an id comes from its key.
Every reference reaches the agent it names by id, or is refused as ambiguous, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sonde.server.domain.agents import AgentRecord, AgentRegistry, HelloInfo
from sonde.server.domain.commands import CommandKind
from sonde.server.domain.sessions import SessionClosed, SessionOpened, SessionRows
from sonde.server.domain.tickets import Tickets
from sonde.server.errors import InvalidArgument, NotFound
from sonde.server.storage.db import Database
from tests.unit.domain.builders import SETUP_ADMIN, T0, enroll, new_agent_id, technician
from tests.unit.domain.test_diagnostics import desk

VICTIM, ROGUE, AMBIGUOUS = "the victim", "the rogue", "refused as ambiguous"
# Starts with "kry2" so that a name with the Kelvin sign (U+212A, lower-cased to "k") can
# collide with its prefix.
VICTIM_PREFIX = "kry2"


def an_id(prefix: str = "") -> str:
    """A fresh agent id (26 base32 characters) that starts with `prefix`."""
    return (prefix + new_agent_id())[:26]


async def victim_and_rogue(
    registry: AgentRegistry, db: Database
) -> tuple[AgentRecord, AgentRecord]:
    """The victim, PC-042, and an enrolled agent that has reported an innocent name so far."""
    victim = await enroll(registry, db, an_id(VICTIM_PREFIX), "pc-042")
    rogue = await enroll(registry, db, an_id("zz"), "innocent")
    return victim, rogue


async def reports(db: Database, agent_id: str, hostname: str, session: str = "s1") -> None:
    """The agent opens a session whose Hello names it `hostname` (the real session path)."""
    rows = SessionRows(db, "replica-a")
    rows.add(SessionOpened(agent_id, session, HelloInfo(hostname, "linux", "", "", "0.1"), "", T0))
    await rows.flush()


async def reached(registry: AgentRegistry, ref: str, victim: str, rogue: str) -> str:
    try:
        found = await registry.resolve(ref)
    except InvalidArgument as error:
        refusal = str(error)
    else:
        return {victim: VICTIM, rogue: ROGUE}[found.id]
    # The refusal names every candidate by its id.
    assert "is ambiguous" in refusal
    assert victim in refusal
    assert rogue in refusal
    return AMBIGUOUS


Text = Callable[[str], str]  # of the victim's id
# What the rogue reports as its host name, then each reference and whom it must reach.
COLLISIONS: dict[str, tuple[Text, list[tuple[Text, str]]]] = {
    "the victim's id prefix": (
        lambda v: v[:4],
        [
            (lambda v: v[:4], AMBIGUOUS),
            (lambda v: v[:4].upper(), AMBIGUOUS),
            (lambda v: v[:5], VICTIM),
            (lambda v: v, VICTIM),
            (lambda v: "pc-042", VICTIM),
        ],
    ),
    "a longer id prefix in capitals": (
        lambda v: v[:8].upper(),
        [
            (lambda v: v[:8], AMBIGUOUS),
            (lambda v: v[:4], VICTIM),  # the start of a name never outweighs an id's
            (lambda v: v[:9], VICTIM),
        ],
    ),
    "the victim's full id": (
        lambda v: v,
        [
            (lambda v: v, VICTIM),
            (lambda v: v.upper(), VICTIM),
            (lambda v: v[:25], VICTIM),
            (lambda v: v[:4], VICTIM),
        ],
    ),
    "the victim's full id in capitals": (
        lambda v: v.upper(),
        [(lambda v: v, VICTIM), (lambda v: v.upper(), VICTIM), (lambda v: v[:12], VICTIM)],
    ),
    "the victim's host name in other case": (
        lambda v: "PC-042",
        [
            (lambda v: "pc-042", AMBIGUOUS),
            (lambda v: "Pc-042", AMBIGUOUS),
            (lambda v: "pc-04", AMBIGUOUS),
            (lambda v: v[:4], VICTIM),
        ],
    ),
    "a look-alike of the victim's host name (Cyrillic)": (
        lambda v: "\u0440\u0441-042",
        [(lambda v: "pc-042", VICTIM), (lambda v: "pc", VICTIM), (lambda v: v[:4], VICTIM)],
    ),
    "a look-alike of the id prefix (the Kelvin sign lower-cases to k)": (
        lambda v: "\u212a" + v[1:4],
        [(lambda v: v[:4], AMBIGUOUS), (lambda v: v[:5], VICTIM)],
    ),
    "a look-alike of the id prefix (fullwidth)": (
        lambda v: "".join(chr(ord(char) + 0xFEE0) for char in v[:4]),
        [(lambda v: v[:4], VICTIM), (lambda v: v[:4].upper(), VICTIM)],
    ),
}


@pytest.mark.parametrize("case", list(COLLISIONS))
async def test_a_colliding_host_name_never_takes_a_reference_to_another_agent(
    db: Database, case: str
) -> None:
    registry = AgentRegistry(db)
    victim, rogue = await victim_and_rogue(registry, db)
    name, expected = COLLISIONS[case]
    await reports(db, rogue.id, name(victim.id))
    assert (await registry.get(rogue.id)).hostname == name(victim.id)
    outcomes = {
        ref(victim.id): await reached(registry, ref(victim.id), victim.id, rogue.id)
        for ref, _ in expected
    }
    assert outcomes == {ref(victim.id): who for ref, who in expected}
    assert await reached(registry, rogue.id, victim.id, rogue.id) == ROGUE


async def test_a_name_reported_on_each_hello_is_resolved_as_it_stands_and_outlives_the_session(
    db: Database,
) -> None:
    registry = AgentRegistry(db)
    victim, rogue = await victim_and_rogue(registry, db)
    prefix = victim.id[:4]
    assert await reached(registry, prefix, victim.id, rogue.id) == VICTIM
    await reports(db, rogue.id, prefix, session="s1")
    assert await reached(registry, prefix, victim.id, rogue.id) == AMBIGUOUS
    rows = SessionRows(db, "replica-a")
    rows.add(SessionClosed(rogue.id, "s1", T0))
    await rows.flush()
    assert not (await registry.get(rogue.id)).connected
    # Offline, it keeps the name it last reported: still refused, never the rogue.
    assert await reached(registry, prefix, victim.id, rogue.id) == AMBIGUOUS
    await reports(db, rogue.id, "innocent-again", session="s2")
    assert await reached(registry, prefix, victim.id, rogue.id) == VICTIM
    assert await reached(registry, "innocent", victim.id, rogue.id) == ROGUE


async def test_an_id_prefix_that_two_ids_share_is_ambiguous(db: Database) -> None:
    registry = AgentRegistry(db)
    victim = await enroll(registry, db, an_id(VICTIM_PREFIX + "a"), "pc-042")
    # A key ground until its id starts like the victim's: cheap for a few characters.
    rogue = await enroll(registry, db, an_id(VICTIM_PREFIX + "b"), "pc-999")
    assert await reached(registry, VICTIM_PREFIX, victim.id, rogue.id) == AMBIGUOUS
    assert await reached(registry, victim.id[:5], victim.id, rogue.id) == VICTIM
    assert await reached(registry, rogue.id[:5], victim.id, rogue.id) == ROGUE


async def test_a_revoked_agents_id_prefix_taken_as_a_name_is_still_ambiguous(
    db: Database,
) -> None:
    """No preference for the live agent across an id and a name: the id stays first."""
    registry = AgentRegistry(db)
    victim, rogue = await victim_and_rogue(registry, db)
    await registry.revoke(SETUP_ADMIN, victim.id, "stolen", T0)
    await reports(db, rogue.id, victim.id[:6])
    with pytest.raises(InvalidArgument, match=rf"pc-042 \({victim.id}, revoked\)"):
        await registry.resolve(victim.id[:6])
    assert (await registry.resolve(victim.id[:7])).id == victim.id
    # And the other way round: a revoked rogue's name still makes the prefix ambiguous.
    await registry.revoke(SETUP_ADMIN, rogue.id, "rogue", T0)
    assert await reached(registry, victim.id[:6], victim.id, rogue.id) == AMBIGUOUS


async def test_a_revoked_agents_name_reaches_the_one_live_agent_that_reports_it(
    db: Database,
) -> None:
    """A re-installed machine keeps its name under a new key; its old key is revoked. The
    live agent reporting the name is reached (its id is shown beside it), the revoked one
    through its id."""
    registry = AgentRegistry(db)
    old = await enroll(registry, db, an_id(VICTIM_PREFIX), "pc-9")
    await registry.revoke(SETUP_ADMIN, old.id, "reinstalled", T0)
    new = await enroll(registry, db, an_id("zz"), "pc-9")
    assert (await registry.resolve("PC-9")).id == new.id
    assert (await registry.resolve(old.id[:5])).id == old.id
    # A second live agent reporting the name makes it ambiguous again.
    other = await enroll(registry, db, an_id("yy"), "laptop")
    await reports(db, other.id, "pc-9")
    with pytest.raises(InvalidArgument, match="is ambiguous") as refused:
        await registry.resolve("pc-9")
    assert new.id in str(refused.value)
    assert other.id in str(refused.value)


async def test_two_live_agents_with_one_name_are_ambiguous(db: Database) -> None:
    registry = AgentRegistry(db)
    one = await enroll(registry, db, an_id("aa"), "pc-042")
    two = await enroll(registry, db, an_id("bb"), "PC-042")
    with pytest.raises(InvalidArgument, match=r"'pc-042' is ambiguous: ") as refused:
        await registry.resolve("pc-042")
    assert f"pc-042 ({one.id})" in str(refused.value)
    assert f"PC-042 ({two.id})" in str(refused.value)
    assert (await registry.resolve(one.id)).id == one.id


async def test_a_full_id_reaches_its_agent_or_none(db: Database) -> None:
    """A string shaped like an id is only ever an id, never another agent's name for it."""
    registry = AgentRegistry(db)
    unknown = an_id("zz")
    squatter = await enroll(registry, db, an_id("yy"), unknown)
    with pytest.raises(NotFound, match=f"no agent has the id {unknown}"):
        await registry.resolve(unknown)
    with pytest.raises(NotFound):
        await registry.resolve(unknown.upper())
    # An agent that never reported a name goes by its id, which is also its name.
    nameless = await enroll(registry, db, an_id("xx"), "")
    assert nameless.hostname == nameless.id
    assert (await registry.resolve(nameless.id)).id == nameless.id
    assert (await registry.resolve(squatter.id)).id == squatter.id


async def test_an_ambiguity_names_at_most_five_candidates(db: Database) -> None:
    registry = AgentRegistry(db)
    for number in range(7):
        await enroll(registry, db, an_id(), f"kiosk-{number}")
    with pytest.raises(InvalidArgument, match=r"'kiosk' is ambiguous: .* and more; ") as refused:
        await registry.resolve("kiosk")
    assert str(refused.value).count("kiosk-") == 5
    assert "a full id is never ambiguous" in str(refused.value)


async def test_a_diagnostic_or_ticket_by_a_colliding_name_reaches_the_right_agent_or_nothing(
    db: Database,
) -> None:
    d = desk(db)
    registry = AgentRegistry(db)
    tickets = Tickets(db, d.clock)
    ann = await technician(db, "ann")
    victim, rogue = await victim_and_rogue(registry, db)
    await reports(db, rogue.id, victim.id[:4])
    with pytest.raises(InvalidArgument, match="is ambiguous"):
        await d.commands.queue(ann, victim.id[:4], CommandKind.COLLECT, ticket_id=None)
    with pytest.raises(InvalidArgument, match="is ambiguous"):
        await tickets.open(ann, title="PC is slow", agent=victim.id[:4])
    queued = await d.commands.queue(ann, victim.id[:5], CommandKind.COLLECT, ticket_id=None)
    assert queued.command.agent_id == victim.id
    assert queued.command.agent_hostname == "pc-042"
    ticket = await tickets.open(ann, title="PC is slow", agent=victim.id[:5])
    assert (ticket.agent_id, ticket.agent_hostname) == (victim.id, "pc-042")
    assert await d.commands.list(agent_id=rogue.id) == []
    assert await tickets.list(agent_id=rogue.id) == []
