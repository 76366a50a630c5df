"""Agentless diagnostics over WinRM on the server's side: the WinRS endpoint on loopback with
the recorded collect.ps1 documents behind it, the real credential store (a winrm-password
credential), the stored host settings, real SQLite and the real audit chain.

A diagnostic lands on the ticket's timeline with its findings under one machine row marked
reached_by=winrm; a wrong password (401), Basic without the host's settings allowing it and
an untrusted certificate store nothing and are audited; nothing is queued for such a machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from sonde.server.domain.agent_reach import NoAgentThere
from sonde.server.domain.agentless import AgentlessDiagnostics, agentless_id
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.commands import CommandKind
from sonde.server.domain.credential_secrets import CredentialKey
from sonde.server.domain.remote_credentials import CredentialKind, RemoteCredentials
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.trusted_hosts import HostKeyNotTrusted, RemoteRefused, TrustedHosts
from sonde.server.domain.wakeups import Wakeups
from sonde.server.domain.winrm_hosts import WinRMChoices, WinRMHosts
from sonde.server.errors import InvalidArgument
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.db import Database
from sonde.server.storage.tables import (
    agents,
    audit_log,
    commands,
    snapshots,
    ticket_events,
    winrm_hosts,
)
from sonde.v1 import diagnostics_pb2
from tests.support.listener_certificates import ListenerTls, listener_tls
from tests.support.winrs_endpoint import WinRSEndpoint
from tests.support.winrs_programs import serve_transport, windows_collection

pytestmark = pytest.mark.timeout(90)

L2 = Principal(2, "lena", Role.L2, peer="ipv4:127.0.0.1:50000")
ADMIN = Principal(1, "alice", Role.ADMIN, peer="ipv4:127.0.0.1:50001")
USER, PASSWORD = "helpdesk", "correct horse battery staple"
DOCUMENTS = Path(__file__).parents[2] / "fixtures" / "windows"


class Server:
    """The server's side as open_services builds it, over one database."""

    def __init__(self, db: Database, winrm_ca_folder: Path | None = None) -> None:
        self.db = db
        self.audited = AuditedWrites(db)
        self.credentials = RemoteCredentials(db, self.audited, CredentialKey(os.urandom(32)))
        self.winrm_hosts = WinRMHosts(db, self.audited, ca_folder=winrm_ca_folder)
        trusted = TrustedHosts(db, self.audited)
        self.agentless = AgentlessDiagnostics(
            db, self.audited, trusted, self.credentials, winrm_hosts=self.winrm_hosts
        )
        self.commands = Commands(db, self.audited, Wakeups())

    async def add_password(self, password: str = PASSWORD) -> None:
        await self.credentials.add(
            ADMIN,
            "win-helpdesk",
            kind=CredentialKind.WINRM_PASSWORD,
            user=USER,
            hosts=["127.0.0.1"],
            secret=password,
        )

    async def allow_basic_over_http(self, port: int) -> None:
        choices = WinRMChoices(https=False, auth="basic", allow_basic=True, allow_unencrypted=True)
        await self.winrm_hosts.set(L2, f"127.0.0.1:{port}", choices)


@pytest.fixture
def endpoint() -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(USER, PASSWORD) as running:
        document = (DOCUMENTS / "print_jobs_stuck.json").read_bytes()
        serve_transport(running, windows_collection(document), {})
        yield running


@pytest.fixture
def tls(tmp_path: Path) -> ListenerTls:
    return listener_tls(tmp_path / "tls", ["127.0.0.1"])


def _target(port: int) -> RemoteTarget:
    return RemoteTarget(Transport.WINRM, USER, "127.0.0.1", port)


async def _count(db: Database, table: object) -> int:
    return int(
        await db.read(
            lambda c: c.execute(select(func.count()).select_from(table)).scalar_one()  # type: ignore[arg-type]
        )
    )


async def _refusals(db: Database) -> list[dict[str, object]]:
    rows = await db.read(
        lambda c: c.execute(
            select(audit_log)
            .where(audit_log.c.action == "diagnostics.run")
            .order_by(audit_log.c.id)
        ).all()
    )
    return [{"result": row.result, **json.loads(row.detail)} for row in rows]


async def test_a_winrm_diagnostic_lands_on_the_ticket_under_one_machine_row(
    db: Database, endpoint: WinRSEndpoint
) -> None:
    server = Server(db)
    await server.add_password()
    await server.allow_basic_over_http(endpoint.port)
    ticket = await Tickets(db, writes=server.audited).open(L2, title="Printer queue stuck")
    done = await server.agentless.run(L2, _target(endpoint.port), ticket_id=ticket.id)
    machine = agentless_id(_target(endpoint.port))
    snapshot = done.stored.snapshot
    assert snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_WINRM
    assert done.stored.summary.agent_id == machine
    found = {finding.check: finding.severity for finding in done.stored.findings}
    assert found["print.stuck_jobs"] != diagnostics_pb2.SEVERITY_OK
    row = (await db.read(lambda c: c.execute(select(agents)).all()))[0]
    assert (row.id, row.reached_by, row.reach_address) == (
        machine,
        "winrm",
        f"127.0.0.1:{endpoint.port}",
    )
    assert (row.hostname, row.platform, row.cert_fingerprint) == ("LPT-0417", "windows", "")
    events = await db.read(
        lambda c: c.execute(
            select(ticket_events).where(ticket_events.c.ticket_id == ticket.id)
        ).all()
    )
    assert [e.snapshot_id for e in events if e.kind == "diagnostic"] == [done.stored.summary.id]
    (audited,) = [r for r in await _refusals(db) if r["result"] == "ok"]
    assert audited["collected_by"] == "COLLECTED_BY_WINRM"
    assert audited["target"] == f"winrm://{USER}@127.0.0.1:{endpoint.port}"
    again = await server.agentless.run(L2, _target(endpoint.port))
    assert again.stored.summary.agent_id == machine
    assert await _count(db, agents) == 1


async def test_a_wrong_password_is_a_clear_refusal_and_stores_nothing(
    db: Database, endpoint: WinRSEndpoint
) -> None:
    server = Server(db)
    await server.add_password("not the password")
    await server.allow_basic_over_http(endpoint.port)
    with pytest.raises(
        RemoteRefused, match=r"refused the credentials of helpdesk \(basic, HTTP 401\)"
    ):
        await server.agentless.run(L2, _target(endpoint.port))
    for table in (agents, snapshots, commands):
        assert await _count(db, table) == 0
    (refused,) = await _refusals(db)
    assert str(refused["result"]).startswith("refused: RemoteRefused")
    assert endpoint.finished == []  # no command ever ran


async def test_basic_is_refused_unless_the_hosts_settings_allow_it(
    db: Database, endpoint: WinRSEndpoint
) -> None:
    server = Server(db)
    await server.add_password()
    # A row edited in the database to say Basic without allowing it: refused before sending.
    await server.allow_basic_over_http(endpoint.port)
    await db.write(lambda c: c.execute(update(winrm_hosts).values(allow_basic=False)))
    with pytest.raises(RemoteRefused, match=f"Basic authentication to winrm://{USER}@127.0.0.1:"):
        await server.agentless.run(L2, _target(endpoint.port))
    assert endpoint.finished == []
    assert endpoint.shells == {}
    # No settings: the defaults say HTTPS and NTLM; this plain-HTTP, Basic-only host fails
    # the TLS handshake rather than receive a password.
    await db.write(lambda c: c.execute(winrm_hosts.delete()))
    with pytest.raises(HostKeyNotTrusted, match="wsman is not trusted"):
        await server.agentless.run(L2, _target(endpoint.port))
    for table in (agents, snapshots):
        assert await _count(db, table) == 0
    assert endpoint.refused_logins == 0  # no request with a password ever reached the host
    assert endpoint.actions == []


async def test_https_with_the_hosts_ca_file_and_an_untrusted_certificate(
    db: Database, tls: ListenerTls, tmp_path: Path
) -> None:
    ca_folder = tmp_path / "data" / "winrm-ca"  # where whoever runs the server puts it
    ca_folder.mkdir(parents=True)
    (ca_folder / "listener-ca.pem").write_bytes(tls.ca_file.read_bytes())
    server = Server(db, ca_folder)
    await server.add_password()
    with WinRSEndpoint(USER, PASSWORD, tls=tls.context) as secure:
        document = (DOCUMENTS / "pending_reboot.json").read_bytes()
        serve_transport(secure, windows_collection(document), {})
        address = f"127.0.0.1:{secure.port}"
        await server.winrm_hosts.set(L2, address, WinRMChoices(auth="basic", allow_basic=True))
        with pytest.raises(HostKeyNotTrusted, match="is not trusted"):
            await server.agentless.run(L2, _target(secure.port))
        assert await _count(db, snapshots) == 0
        choices = WinRMChoices(auth="basic", allow_basic=True, ca_file="listener-ca.pem")
        await server.winrm_hosts.set(L2, address, choices)
        done = await server.agentless.run(L2, _target(secure.port))
    found = {finding.check: finding.severity for finding in done.stored.findings}
    assert found["updates.reboot_pending"] != diagnostics_pb2.SEVERITY_OK


async def test_nothing_is_queued_for_a_machine_without_an_agent(
    db: Database, endpoint: WinRSEndpoint
) -> None:
    server = Server(db)
    await server.add_password()
    await server.allow_basic_over_http(endpoint.port)
    done = await server.agentless.run(L2, _target(endpoint.port))
    before = await _count(db, commands)
    with pytest.raises(NoAgentThere) as refused:
        await server.commands.queue(L2, "LPT-0417", CommandKind.COLLECT, ticket_id=None)
    said = str(refused.value)
    assert f"--winrm USER@127.0.0.1:{endpoint.port}" in said
    assert f"sonde diag LPT-0417 --winrm USER@127.0.0.1:{endpoint.port}" in said
    assert done.stored.summary.agent_id in said
    assert await _count(db, commands) == before


async def test_shell_only_is_for_ssh(db: Database, endpoint: WinRSEndpoint) -> None:
    with pytest.raises(InvalidArgument, match="--shell-only is for SSH"):
        await Server(db).agentless.run(L2, _target(endpoint.port), shell_only=True)


async def test_two_hosts_reporting_one_name_are_two_machines_and_ambiguous(
    db: Database, endpoint: WinRSEndpoint
) -> None:
    """A second host lying that it is LPT-0417: its own row (the id comes from where it is
    reached, never from what it says), and the name alone is refused as ambiguous."""
    server = Server(db)
    await server.add_password()
    await server.allow_basic_over_http(endpoint.port)
    with WinRSEndpoint(USER, PASSWORD) as liar:
        document = (DOCUMENTS / "healthy_windows11.json").read_bytes()
        named = json.loads(document)
        named["sections"]["system"]["hostname"] = "LPT-0417"
        serve_transport(liar, windows_collection(json.dumps(named).encode()), {})
        await server.allow_basic_over_http(liar.port)
        first = await server.agentless.run(L2, _target(endpoint.port))
        second = await server.agentless.run(L2, _target(liar.port))
    assert first.stored.summary.agent_id != second.stored.summary.agent_id
    assert await _count(db, agents) == 2
    with pytest.raises(InvalidArgument, match="'LPT-0417' is ambiguous") as refused:
        await server.commands.queue(L2, "LPT-0417", CommandKind.COLLECT, ticket_id=None)
    assert first.stored.summary.agent_id in str(refused.value)
    assert second.stored.summary.agent_id in str(refused.value)
