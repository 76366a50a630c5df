"""Agentless diagnostics end to end on the server's side: a real sshd, real SQLite, the real
audit chain. Host keys are trusted only by fingerprint; a changed or unknown key, wrong
credentials and an unreachable host store nothing and are audited; a snapshot lands on the
ticket's timeline as an agent's does, under one row for the machine."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from sonde.server.domain.agentless import AgentlessDiagnostics, agentless_id
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.ticket_model import TicketOutcome
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.trusted_hosts import (
    HostKeyNotTrusted,
    RemoteRefused,
    TrustedHosts,
)
from sonde.server.errors import Conflict, InvalidArgument, NotFound, Unavailable
from sonde.server.remote.credentials import Credential, FixedCredential
from sonde.server.remote.host_keys import offered_host_keys
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, audit_log, commands, snapshots, ticket_events
from sonde.v1 import diagnostics_pb2
from tests.support.sshd import Sshd, ed25519_pair, free_port, host_key_of

L2 = Principal(2, "lena", Role.L2, peer="ipv4:127.0.0.1:50000")


def _hosts(db: Database, audited: AuditedWrites, sshd: Sshd) -> TrustedHosts:
    # The real reading of offered keys, bounded for tests.
    return TrustedHosts(
        db, audited, offered=lambda host, port: offered_host_keys(host, port, timeout_s=5)
    )


async def _audit(db: Database, action: str) -> list[dict[str, object]]:
    rows = await db.read(
        lambda connection: connection.execute(
            select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
        ).all()
    )
    return [
        {
            "actor": row.actor,
            "result": row.result,
            "agent_id": row.agent_id,
            "ticket_id": row.ticket_id,
            **json.loads(row.detail),
        }
        for row in rows
    ]


async def _count(db: Database, table: object) -> int:
    return int(
        await db.read(
            lambda connection: connection.execute(
                select(func.count()).select_from(table)  # type: ignore[arg-type]
            ).scalar_one()
        )
    )


async def test_trust_stores_only_the_key_whose_fingerprint_was_given(
    db: Database, sshd: Sshd
) -> None:
    audited = AuditedWrites(db)
    hosts = _hosts(db, audited, sshd)
    _, other = ed25519_pair()
    wrong = host_key_of(other).fingerprint
    with pytest.raises(InvalidArgument) as refused:
        await hosts.trust(L2, f"127.0.0.1:{sshd.port}", wrong)
    assert f"offers no key with the fingerprint {wrong}" in str(refused.value)
    assert sshd.host_key.fingerprint in str(refused.value)  # what it offers, to compare
    assert await hosts.list() == []
    with pytest.raises(InvalidArgument, match="is not an SSH fingerprint"):
        await hosts.trust(L2, f"127.0.0.1:{sshd.port}", "MD5:aa:bb")
    trusted = await hosts.trust(L2, f"127.0.0.1:{sshd.port}", sshd.host_key.fingerprint)
    assert trusted.key == sshd.host_key
    assert trusted.trusted_by == "lena"
    assert await hosts.list() == [trusted]
    assert await hosts.for_address("127.0.0.1", sshd.port) == [trusted]
    # Trusting it again changes nothing and is audited again.
    assert await hosts.trust(L2, f"127.0.0.1:{sshd.port}", sshd.host_key.fingerprint) == trusted
    rows = await _audit(db, "hosts.trust")
    assert [row["result"] for row in rows] == [
        rows[0]["result"],
        rows[1]["result"],
        "ok",
        "ok",
    ]
    assert str(rows[0]["result"]).startswith("refused: InvalidArgument")
    assert rows[2]["key_type"] == "ssh-ed25519"
    assert rows[2]["fingerprint"] == sshd.host_key.fingerprint
    gone = await hosts.forget(L2, f"127.0.0.1:{sshd.port}")
    assert gone.keys == [trusted]
    assert gone.winrm == []
    assert await hosts.list() == []
    with pytest.raises(NotFound):
        await hosts.forget(L2, f"127.0.0.1:{sshd.port}")
    forgot = [str(row["result"]) for row in await _audit(db, "hosts.forget")]
    assert forgot[0] == "ok"
    assert forgot[1].startswith("refused: NotFound")


async def test_trust_of_an_unreachable_host_is_refused_and_audited(
    db: Database, sshd: Sshd
) -> None:
    audited = AuditedWrites(db)
    hosts = _hosts(db, audited, sshd)
    with pytest.raises(Unavailable, match="could not reach"):
        await hosts.trust(L2, f"127.0.0.1:{free_port()}", sshd.host_key.fingerprint)
    with pytest.raises(InvalidArgument, match="port must be a number"):
        await hosts.trust(L2, "127.0.0.1:99999", sshd.host_key.fingerprint)
    assert len(await _audit(db, "hosts.trust")) == 2
    assert await hosts.list() == []


async def test_an_agentless_diagnostic_lands_on_the_ticket_as_an_agents_does(
    db: Database, sshd: Sshd
) -> None:
    audited = AuditedWrites(db)
    hosts = _hosts(db, audited, sshd)
    await hosts.trust(L2, f"127.0.0.1:{sshd.port}", sshd.host_key.fingerprint)
    ticket = await Tickets(db, writes=audited).open(L2, title="PC slow since this morning")
    diagnostics = AgentlessDiagnostics(
        db, audited, hosts, FixedCredential(sshd.credential()), python=sys.executable
    )
    first = await diagnostics.run(L2, sshd.target(), ticket_id=ticket.id)
    machine = agentless_id(sshd.target())
    assert first.note == ""
    assert first.stored.snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_SSH_PYTHON
    assert first.stored.summary.agent_id == machine
    assert first.stored.summary.ticket_id == ticket.id
    assert "disk.space" in [finding.check for finding in first.stored.findings]
    assert first.command.agent_id == machine
    second = await diagnostics.run(L2, sshd.target(), ticket_id=ticket.id, shell_only=True)
    assert second.stored.snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_SSH_SHELL
    # One machine row, reached by ssh at its address, no certificate.
    rows = await db.read(lambda connection: connection.execute(select(agents)).all())
    assert [(row.id, row.reached_by, row.reach_address, row.cert_fingerprint) for row in rows] == [
        (machine, "ssh", f"127.0.0.1:{sshd.port}", "")
    ]
    assert rows[0].hostname == first.stored.snapshot.system.hostname
    states = await db.read(
        lambda connection: connection.execute(select(commands.c.state, commands.c.kind)).all()
    )
    assert sorted(tuple(row) for row in states) == [("succeeded", "collect")] * 2
    events = await db.read(
        lambda connection: connection.execute(
            select(ticket_events.c.kind, ticket_events.c.snapshot_id)
            .where(ticket_events.c.ticket_id == ticket.id)
            .order_by(ticket_events.c.id)
        ).all()
    )
    diagnostics_events = [row.snapshot_id for row in events if row.kind == "diagnostic"]
    assert diagnostics_events == [first.stored.summary.id, second.stored.summary.id]
    runs = [row for row in await _audit(db, "diagnostics.run") if row["result"] == "ok"]
    assert [row["collected_by"] for row in runs] == [
        "COLLECTED_BY_SSH_PYTHON",
        "COLLECTED_BY_SSH_SHELL",
    ]
    assert all(row["agent_id"] == machine and row["ticket_id"] == ticket.id for row in runs)


async def test_a_changed_host_key_is_refused_audited_with_both_fingerprints(
    db: Database, sshd: Sshd
) -> None:
    audited = AuditedWrites(db)
    _, earlier_public = ed25519_pair()
    earlier = host_key_of(earlier_public)
    # The key trusted before the machine was "reinstalled": the sshd now offers another.
    hosts = TrustedHosts(db, audited, offered=lambda host, port: [earlier])
    await hosts.trust(L2, f"127.0.0.1:{sshd.port}", earlier.fingerprint)
    diagnostics = AgentlessDiagnostics(db, audited, hosts, FixedCredential(sshd.credential()))
    with pytest.raises(HostKeyNotTrusted) as refused:
        await diagnostics.run(L2, sshd.target())
    assert "changed since it was trusted" in str(refused.value)
    assert "sonde hosts forget" in str(refused.value)
    rows = await _audit(db, "remote.host_key")
    assert len(rows) == 1
    assert str(rows[0]["result"]).startswith("refused: HostKeyNotTrusted")
    assert rows[0]["offered"] == f"ssh-ed25519 {sshd.host_key.fingerprint}"
    assert rows[0]["trusted"] == earlier.fingerprint
    assert rows[0]["target"] == sshd.target().label
    assert await _count(db, snapshots) == 0
    assert await _count(db, agents) == 0


async def test_an_unknown_host_key_wrong_credentials_or_no_route_store_nothing(
    db: Database, sshd: Sshd
) -> None:
    audited = AuditedWrites(db)
    hosts = _hosts(db, audited, sshd)
    diagnostics = AgentlessDiagnostics(db, audited, hosts, FixedCredential(sshd.credential()))
    with pytest.raises(HostKeyNotTrusted, match="is not trusted"):
        await diagnostics.run(L2, sshd.target())
    assert len(await _audit(db, "remote.host_key")) == 1
    await hosts.trust(L2, f"127.0.0.1:{sshd.port}", sshd.host_key.fingerprint)
    wrong_key, _ = ed25519_pair()
    stranger = FixedCredential(Credential(sshd.user, private_key=wrong_key, name="old-key"))
    wrong = AgentlessDiagnostics(db, audited, hosts, stranger)
    with pytest.raises(RemoteRefused, match=f"wrong user or key for {sshd.user}@127.0.0.1"):
        await wrong.run(L2, sshd.target())
    nowhere = replace(sshd.target(), port=free_port())
    with pytest.raises(Unavailable, match="could not reach"):
        await diagnostics.run(L2, nowhere)
    refusals = await _audit(db, "diagnostics.run")
    assert [str(row["result"]).split(":")[1].strip() for row in refusals] == [
        "RemoteRefused",
        "Unavailable",
    ]
    assert await _count(db, snapshots) == 0
    assert await _count(db, commands) == 0
    assert await _count(db, agents) == 0


async def test_a_closed_or_missing_ticket_is_refused_before_any_login(
    db: Database, sshd: Sshd
) -> None:
    audited = AuditedWrites(db)
    hosts = _hosts(db, audited, sshd)
    tickets = Tickets(db, writes=audited)
    ticket = await tickets.open(L2, title="printer")
    await tickets.close(
        L2, ticket.id, note="duplicate of another ticket", outcome=TicketOutcome.DUPLICATE
    )
    diagnostics = AgentlessDiagnostics(db, audited, hosts, FixedCredential(sshd.credential()))
    with pytest.raises(Conflict, match=f"ticket {ticket.id} is closed"):
        await diagnostics.run(L2, sshd.target(), ticket_id=ticket.id)
    with pytest.raises(NotFound):
        await diagnostics.run(L2, sshd.target(), ticket_id=ticket.id + 100)
    # The host key is not trusted: a login would have been refused and audited as such.
    assert await _audit(db, "remote.host_key") == []
    assert await _count(db, agents) == 0
