"""A catalog script run by the server over WinRM, against the WinRS endpoint on loopback: the
repository's restart-print-spooler, signed, with its parameters bound from the agent's own
parameter file, its output and exit code on the ticket, and its verification made from the
agent's collect.ps1 collected again over the same connection (the recorded documents: stuck
print jobs before, none after), which resolves the ticket. A Linux script is refused before
anything is sent, and so is a wrong password."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.agent.remediation import powershell
from sonde.catalog.bundle import CatalogSource, encode_bundle, sign_entries
from sonde.catalog.folder import load_catalog_folder
from sonde.server.domain.agentless import AgentlessDiagnostics, agentless_id
from sonde.server.domain.agentless_runs import AgentlessRuns
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.catalog import Catalog
from sonde.server.domain.commands import CommandState
from sonde.server.domain.credential_secrets import CredentialKey
from sonde.server.domain.remote_credentials import CredentialKind, RemoteCredentials
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.run_reach import RunReach
from sonde.server.domain.run_verification import VerificationState
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.domain.ticket_model import TicketEventKind, TicketStatus
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.trusted_hosts import TrustedHosts
from sonde.server.domain.users import Users
from sonde.server.domain.winrm_hosts import WinRMChoices, WinRMHosts
from sonde.server.errors import InvalidArgument
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.db import Database
from sonde.v1 import diagnostics_pb2
from tests.integration.remote.agentless_bench import REPOSITORY_SCRIPTS, server_side
from tests.support.winrs_endpoint import WinRSEndpoint, WinRSReply
from tests.support.winrs_programs import LaunchedRun, serve_transport, windows_collection
from tests.unit.domain.builders import SETUP_ADMIN

pytestmark = pytest.mark.timeout(90)

USER, PASSWORD = "helpdesk", "correct horse battery staple"
DOCUMENTS = Path(__file__).parents[2] / "fixtures" / "windows"
SCRIPTS = ("restart-print-spooler", "clear-temp-files-linux")


class Host:
    """A Windows host behind the endpoint: stuck print jobs until the spooler script ran."""

    def __init__(self) -> None:
        self.runs: list[dict[str, object]] = []

    def program(self, run: LaunchedRun) -> WinRSReply:
        fixed = bool(self.runs)
        document = "healthy_windows11.json" if fixed else "print_jobs_stuck.json"
        collection = windows_collection((DOCUMENTS / document).read_bytes(), self._catalog)
        return collection(run)

    def _catalog(self, run: LaunchedRun) -> WinRSReply:
        if run.argv[0] != "powershell.exe" or "-ParameterFile" not in run.argv:
            return WinRSReply(stderr=f"unknown command {run.argv[0]}".encode(), exit_code=1)
        assert run.file_after("-File") == powershell.PROLOGUE.encode("ascii")
        bound = powershell.read_parameter_file(run.file_after("-ParameterFile"))
        self.runs.append({"bound": bound, "script": run.file_after("-Script")})
        return WinRSReply(stdout=b"Spooler restarted; 3 jobs cleared\n")


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def endpoint(host: Host) -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(USER, PASSWORD) as running:
        serve_transport(running, host.program, {})
        yield running


@dataclass
class Server:
    agentless: AgentlessRuns
    runs: ScriptRuns
    l2: Principal
    reach: RunReach
    ticket_id: int


async def _server(db: Database, endpoint: WinRSEndpoint, password: str = PASSWORD) -> Server:
    audited = AuditedWrites(db)
    people = []
    for name, role in (("lena", Role.L2), ("omar", Role.ADMIN)):
        record, _ = await Users(db, writes=audited).add(SETUP_ADMIN, name, role)
        people.append(Principal(record.id, record.name, record.role))
    l2, admin = people
    credentials = RemoteCredentials(db, audited, CredentialKey(os.urandom(32)))
    await credentials.add(
        admin,
        "win-helpdesk",
        kind=CredentialKind.WINRM_PASSWORD,
        user=USER,
        hosts=["127.0.0.1"],
        secret=password,
    )
    winrm_hosts = WinRMHosts(db, audited)
    choices = WinRMChoices(https=False, auth="basic", allow_basic=True, allow_unencrypted=True)
    await winrm_hosts.set(l2, f"127.0.0.1:{endpoint.port}", choices)
    key = ed25519.Ed25519PrivateKey.generate()
    sources = [
        CatalogSource(entry.manifest_bytes, entry.script_bytes)
        for entry in load_catalog_folder(REPOSITORY_SCRIPTS)
        if entry.manifest.id in SCRIPTS
    ]
    await Catalog(db, key.public_key(), writes=audited).publish(
        SETUP_ADMIN, encode_bundle(sign_entries(key, sources))
    )
    target = RemoteTarget(Transport.WINRM, USER, "127.0.0.1", endpoint.port)
    first = AgentlessDiagnostics(
        db, audited, TrustedHosts(db, audited), credentials, winrm_hosts=winrm_hosts
    )
    await first.run(l2, target)  # the machine's row, and the stuck jobs before the run
    ticket = await Tickets(db, writes=audited).open(
        l2, title="Printing stuck", agent=agentless_id(target), assignee="lena"
    )
    agentless, runs, *_ = server_side(db, None, key.public_key(), credentials)
    return Server(agentless, runs, l2, RunReach(target, "win-helpdesk"), ticket.id)


async def test_a_catalog_script_runs_over_winrm_and_its_check_resolves_the_ticket(
    db: Database, endpoint: WinRSEndpoint, host: Host
) -> None:
    server = await _server(db, endpoint)
    reach = server.reach
    run = await server.agentless.request(
        server.l2,
        agentless_id(reach.target),
        reach,
        "restart-print-spooler",
        parameters={"clear_jobs": "true"},
        ticket_id=server.ticket_id,
        finding="print.stuck_jobs",
        resolve_if_cleared=True,
    )
    await server.agentless.wait_started()
    done = await server.runs.get(run.command.id)
    assert done.command.state is CommandState.SUCCEEDED, done.command.reason
    assert done.stdout == b"Spooler restarted; 3 jobs cleared\n"
    assert done.reached_by == reach.label
    assert done.credential == "win-helpdesk"
    assert host.runs[0]["bound"] == {"ClearJobs": True, "DryRun": False}
    assert done.verification is not None
    assert done.verification.state is VerificationState.CLEARED, done.verification.reason
    assert done.verification.resolved_ticket
    ticket, events = await Tickets(db, writes=AuditedWrites(db)).get(server.ticket_id)
    assert ticket.status is TicketStatus.RESOLVED
    kinds = [event.kind for event in events if event.command_id == run.command.id]
    assert kinds == [
        TicketEventKind.SCRIPT_RUN,
        TicketEventKind.RUN_ENDED,
        TicketEventKind.VERIFIED,
    ]
    assert [check.check for check in done.verification.checks] == ["print.stuck_jobs"]
    before, after = done.verification.checks[0].before, done.verification.checks[0].after
    assert before is not None
    assert before > diagnostics_pb2.SEVERITY_OK
    assert after == diagnostics_pb2.SEVERITY_OK


async def test_a_linux_script_is_refused_before_anything_is_sent(
    db: Database, endpoint: WinRSEndpoint, host: Host
) -> None:
    server = await _server(db, endpoint)
    sent = len(endpoint.finished)
    # The machine row is Windows, so the catalog refuses the Linux script first.
    with pytest.raises(InvalidArgument, match="is for linux"):
        await server.agentless.request(
            server.l2, agentless_id(server.reach.target), server.reach, "clear-temp-files-linux"
        )
    assert len(endpoint.finished) == sent
    assert host.runs == []


async def test_a_wrong_password_ends_the_run_refused_saying_why(
    db: Database, endpoint: WinRSEndpoint, host: Host
) -> None:
    server = await _server(db, endpoint)
    # The password changed on the host after the machine's first diagnostic.
    endpoint.password = "changed on the host"
    run = await server.agentless.request(
        server.l2, agentless_id(server.reach.target), server.reach, "restart-print-spooler"
    )
    await server.agentless.wait_started()
    done = await server.runs.get(run.command.id)
    assert done.command.state is CommandState.REFUSED
    assert "could not log in" in done.command.reason
    assert "HTTP 401" in done.command.reason
    assert host.runs == []
