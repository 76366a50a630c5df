"""For every state-changing console RPC: a crash between the change and its audit row leaves
neither.

The fault hook (AuditedWrites.fault_before_audit) runs inside the transaction, after the
change and before its audit row, and raises as a dying process would stop. The database must
then read exactly as before the call, on SQLite and on PostgreSQL. The list of RPCs comes from
the service descriptor: a new method that is neither read-only nor listed here fails the test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.server.storage.tables import metadata
from sonde.v1 import console_pb2 as pb
from sonde.v1 import deploy_pb2, diagnostics_pb2
from tests.integration.console.harness import Console
from tests.integration.console.test_console_closed_loop import DISK_PROCEDURE
from tests.support.catalog_bundles import signed_bundle, source
from tests.support.sshd import Sshd, free_port, start_sshd
from tests.support.winrs_endpoint import WinRSEndpoint
from tests.support.winrs_programs import serve_transport, windows_collection

ADMIN, BOB = Console.as_user("admin"), Console.as_user("bob")
# ExportApproved only reads (the approved proposals, for signing offline), SuggestProcedures
# only reads the knowledge base, ReportInterventions only reads tickets: not audited.
READ_ONLY = ("WhoAmI", "List", "Get", "ExportApproved", "Suggest", "Report")
WINRS_USER, WINRS_PASSWORD = "helpdesk", "a-throwaway-winrs-password"
WINDOWS_DOCUMENTS = Path(__file__).parents[2] / "fixtures" / "windows"

FIXED, DUPLICATE = pb.TICKET_OUTCOME_FIXED, pb.TICKET_OUTCOME_DUPLICATE


class InjectedCrash(Exception):
    """The process dies here."""


@dataclass
class Scene:
    agent_id: str
    ticket_id: int  # in progress, assigned to bob
    resolved_ticket_id: int
    waiting_ticket_id: int  # waiting on the requester
    queued_command_id: str
    token_id: str  # an enrollment token not yet used
    queued_run_id: str  # a medium-risk script run, queued
    pending_run_id: str  # a high-risk one asked by admin, pending approval
    proposal_id: int  # tidy-up 1.0.0 proposed by bob, pending review
    own_proposal_id: int  # tidy-more 1.0.0 proposed by bob, pending: bob may withdraw it
    escalated_ticket_id: int  # at L2, escalated by bob to the L2 queue
    credential: str  # a stored SSH password credential
    ssh_address: str  # 127.0.0.1:PORT of a real sshd, its host key trusted
    ssh_fingerprint: str
    ssh_target: str  # USER@127.0.0.1:PORT, with a stored key credential for it
    webhook_id: str = ""  # a webhook set up by admin (never delivered to here)
    # The agent's newest diagnostic found disk.space critical, which clear-temp fixes.


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    daemon = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield daemon
    daemon.stop()


async def _scene(console: Console, sshd: Sshd) -> Scene:
    stub = console.stub
    agent = await console.enroll_agent("PC-7")
    ticket = (
        await stub.OpenTicket(pb.OpenTicketRequest(title="slow", agent=agent.id), metadata=BOB)
    ).ticket
    await stub.AssignTicket(pb.AssignTicketRequest(id=ticket.id, assignee="bob"), metadata=BOB)
    done = (await stub.OpenTicket(pb.OpenTicketRequest(title="printer"), metadata=BOB)).ticket
    await stub.ResolveTicket(
        pb.ResolveTicketRequest(
            id=done.id, resolution="cleared the queue", outcome=FIXED, time_spent_s=900
        ),
        metadata=BOB,
    )
    waiting = (await stub.OpenTicket(pb.OpenTicketRequest(title="no mail"), metadata=BOB)).ticket
    await stub.WaitTicket(
        pb.WaitTicketRequest(id=waiting.id, reason="the user is away until Monday"), metadata=BOB
    )
    escalated = (await stub.OpenTicket(pb.OpenTicketRequest(title="VPN"), metadata=BOB)).ticket
    await stub.EscalateTicket(
        pb.EscalateTicketRequest(id=escalated.id, reason="network team"), metadata=BOB
    )
    await stub.AddCategory(pb.AddCategoryRequest(path="network", title="Network"), metadata=ADMIN)
    await stub.SetSlaCalendar(
        pb.SetSlaCalendarRequest(name="paris", definition_json=PARIS_CALENDAR), metadata=ADMIN
    )
    await stub.SetSlaPolicy(sla_policy("acme-p2", response_s=4 * 3600), metadata=ADMIN)
    await stub.RunDiagnostics(pb.RunDiagnosticsRequest(agent=agent.id), metadata=BOB)
    full = diagnostics_pb2.Finding(
        check="disk.space", severity=diagnostics_pb2.SEVERITY_CRITICAL, fix_script_id="clear-temp"
    )
    await console.answer_diagnostics(agent.id, [full])
    queued = await stub.RunDiagnostics(pb.RunDiagnosticsRequest(agent=agent.id), metadata=BOB)
    await stub.CreateUser(pb.CreateUserRequest(name="dora", role=pb.ROLE_L1), metadata=ADMIN)
    await stub.DisableUser(pb.DisableUserRequest(name="dora"), metadata=ADMIN)
    token = await stub.CreateEnrollmentToken(
        pb.CreateEnrollmentTokenRequest(uses=1, ttl_s=600), metadata=ADMIN
    )
    await stub.PublishCatalog(
        pb.PublishCatalogRequest(
            bundle=signed_bundle(
                console.catalog_key,
                source("clear-temp", risk="medium"),
                source("repair-updates", risk="high"),
            )
        ),
        metadata=ADMIN,
    )
    run = pb.RunScriptRequest(agent=agent.id, script_id="clear-temp")
    queued_run = await stub.RunScript(run, metadata=BOB)
    risky = pb.RunScriptRequest(agent=agent.id, script_id="repair-updates")
    pending_run = await stub.RunScript(risky, metadata=ADMIN)
    proposed = await stub.ProposeScripts(
        pb.ProposeScriptsRequest(
            scripts=[proposed_script("tidy-up"), proposed_script("tidy-more")]
        ),
        metadata=BOB,
    )
    by_id = {proposal.script_id: proposal.id for proposal in proposed.proposals}
    stored = await stub.AddCredential(credential_request("helpdesk-ssh"), metadata=ADMIN)
    ssh_address = f"127.0.0.1:{sshd.port}"
    await stub.TrustHost(
        pb.TrustHostRequest(address=ssh_address, fingerprint=sshd.host_key.fingerprint),
        metadata=ADMIN,
    )
    await stub.AddCredential(
        pb.AddCredentialRequest(
            name="test-sshd",
            kind=pb.CREDENTIAL_KIND_SSH_PRIVATE_KEY,
            user=sshd.user,
            hosts=["127.0.0.1"],
            secret=sshd.user_key.decode(),
        ),
        metadata=ADMIN,
    )
    hook = await stub.AddWebhook(
        pb.AddWebhookRequest(url="https://hooks.example.test/sonde"), metadata=ADMIN
    )
    return Scene(
        agent.id,
        ticket.id,
        done.id,
        waiting.id,
        queued.command.id,
        token.token_id,
        queued_run.run.command.id,
        pending_run.run.command.id,
        by_id["tidy-up"],
        by_id["tidy-more"],
        escalated.id,
        stored.credential.name,
        ssh_address,
        sshd.host_key.fingerprint,
        f"{sshd.user}@{ssh_address}",
        webhook_id=hook.webhook.id,
    )


PARIS_CALENDAR = (
    '{"time_zone": "Europe/Paris", "hours": {"mon": "08:00-18:00", "tue": "08:00-18:00"}}'
)


def sla_policy(name: str, *, response_s: int) -> pb.SetSlaPolicyRequest:
    return pb.SetSlaPolicyRequest(
        name=name,
        contract="acme",
        priority=pb.TICKET_PRIORITY_P2,
        response_within_s=response_s,
        resolve_within_s=16 * 3600,
        calendar="paris",
    )


def credential_request(name: str) -> pb.AddCredentialRequest:
    return pb.AddCredentialRequest(
        name=name,
        kind=pb.CREDENTIAL_KIND_SSH_PASSWORD,
        user="helpdesk",
        hosts=["*.corp.lan"],
        secret="a-throwaway-password",
    )


def proposed_script(script_id: str) -> pb.ProposedScript:
    entry = source(script_id)
    return pb.ProposedScript(
        platform="linux",
        script_name=f"{script_id}.sh",
        manifest=entry.manifest,
        script=entry.script,
    )


Call = Callable[[Console, Scene], Awaitable[Message]]

CALLS: dict[str, Call] = {
    "OpenTicket": lambda c, s: c.stub.OpenTicket(
        pb.OpenTicketRequest(title="no sound", agent=s.agent_id), metadata=BOB
    ),
    "CommentTicket": lambda c, s: c.stub.CommentTicket(
        pb.CommentTicketRequest(id=s.ticket_id, body="called back"), metadata=BOB
    ),
    "AssignTicket": lambda c, s: c.stub.AssignTicket(
        pb.AssignTicketRequest(id=s.ticket_id, assignee="admin"), metadata=BOB
    ),
    "EscalateTicket": lambda c, s: c.stub.EscalateTicket(
        pb.EscalateTicketRequest(id=s.ticket_id, reason="disk failing"), metadata=BOB
    ),
    "ResolveTicket": lambda c, s: c.stub.ResolveTicket(
        pb.ResolveTicketRequest(
            id=s.ticket_id, resolution="rebooted", outcome=FIXED, time_spent_s=900
        ),
        metadata=BOB,
    ),
    "CloseTicket": lambda c, s: c.stub.CloseTicket(
        pb.CloseTicketRequest(id=s.ticket_id, note="duplicate", outcome=DUPLICATE), metadata=BOB
    ),
    "SetTicketDetails": lambda c, s: c.stub.SetTicketDetails(
        pb.SetTicketDetailsRequest(id=s.ticket_id, requester="Jane Doe", category="network"),
        metadata=BOB,
    ),
    "TakeTicket": lambda c, s: c.stub.TakeTicket(
        pb.TakeTicketRequest(id=s.escalated_ticket_id, category="network"), metadata=BOB
    ),
    "HandBackTicket": lambda c, s: c.stub.HandBackTicket(
        pb.HandBackTicketRequest(id=s.escalated_ticket_id, note="a printer, not the VPN"),
        metadata=BOB,
    ),
    "LogTicketTime": lambda c, s: c.stub.LogTicketTime(
        pb.LogTicketTimeRequest(id=s.ticket_id, seconds=600, on_what="called the user"),
        metadata=BOB,
    ),
    "AddCategory": lambda c, s: c.stub.AddCategory(
        pb.AddCategoryRequest(path="network/wifi", title="Wi-Fi"), metadata=ADMIN
    ),
    "RetireCategory": lambda c, s: c.stub.RetireCategory(
        pb.RetireCategoryRequest(path="network"), metadata=ADMIN
    ),
    "SaveProcedure": lambda c, s: c.stub.SaveProcedure(
        pb.SaveProcedureRequest(markdown=DISK_PROCEDURE, source_name="disk-full.md"),
        metadata=BOB,
    ),
    "ReopenTicket": lambda c, s: c.stub.ReopenTicket(
        pb.ReopenTicketRequest(id=s.resolved_ticket_id, reason="it came back"), metadata=BOB
    ),
    "WaitTicket": lambda c, s: c.stub.WaitTicket(
        pb.WaitTicketRequest(id=s.ticket_id, reason="waiting for the user to reboot"),
        metadata=BOB,
    ),
    "ResumeTicket": lambda c, s: c.stub.ResumeTicket(
        pb.ResumeTicketRequest(id=s.waiting_ticket_id, note="the user is back"), metadata=BOB
    ),
    "RunDiagnostics": lambda c, s: c.stub.RunDiagnostics(
        pb.RunDiagnosticsRequest(agent=s.agent_id), metadata=BOB
    ),
    "CancelCommand": lambda c, s: c.stub.CancelCommand(
        pb.CancelCommandRequest(id=s.queued_command_id), metadata=BOB
    ),
    "RevokeAgent": lambda c, s: c.stub.RevokeAgent(
        pb.RevokeAgentRequest(agent=s.agent_id, reason="stolen"), metadata=ADMIN
    ),
    "RemoveAgent": lambda c, s: c.stub.RemoveAgent(
        pb.RemoveAgentRequest(agent=s.agent_id, reason="retired"), metadata=ADMIN
    ),
    "CreateUser": lambda c, s: c.stub.CreateUser(
        pb.CreateUserRequest(name="carol", role=pb.ROLE_L1), metadata=ADMIN
    ),
    "DisableUser": lambda c, s: c.stub.DisableUser(
        pb.DisableUserRequest(name="ann"), metadata=ADMIN
    ),
    "EnableUser": lambda c, s: c.stub.EnableUser(pb.EnableUserRequest(name="dora"), metadata=ADMIN),
    "SetUserRole": lambda c, s: c.stub.SetUserRole(
        pb.SetUserRoleRequest(name="ann", role=pb.ROLE_L2), metadata=ADMIN
    ),
    "RotateUserToken": lambda c, s: c.stub.RotateUserToken(
        pb.RotateUserTokenRequest(name="ann"), metadata=ADMIN
    ),
    "Logout": lambda c, s: c.stub.Logout(pb.LogoutRequest(), metadata=Console.as_user("ann")),
    "CreateEnrollmentToken": lambda c, s: c.stub.CreateEnrollmentToken(
        pb.CreateEnrollmentTokenRequest(uses=5, ttl_s=600), metadata=ADMIN
    ),
    "RevokeEnrollmentToken": lambda c, s: c.stub.RevokeEnrollmentToken(
        pb.RevokeEnrollmentTokenRequest(token=s.token_id), metadata=ADMIN
    ),
    "RunScript": lambda c, s: c.stub.RunScript(
        pb.RunScriptRequest(agent=s.agent_id, script_id="clear-temp"), metadata=BOB
    ),
    "FixFinding": lambda c, s: c.stub.FixFinding(
        pb.FixFindingRequest(agent=s.agent_id, finding="disk.space"), metadata=BOB
    ),
    "CancelRun": lambda c, s: c.stub.CancelRun(
        pb.CancelRunRequest(id=s.queued_run_id), metadata=BOB
    ),
    "ApproveRun": lambda c, s: c.stub.ApproveRun(
        pb.ApproveRunRequest(id=s.pending_run_id), metadata=BOB
    ),
    "RejectRun": lambda c, s: c.stub.RejectRun(
        pb.RejectRunRequest(id=s.pending_run_id, reason="not now"), metadata=BOB
    ),
    "ProposeScripts": lambda c, s: c.stub.ProposeScripts(
        pb.ProposeScriptsRequest(scripts=[proposed_script("brand-new")], note="new"), metadata=BOB
    ),
    "ReviewProposal": lambda c, s: c.stub.ReviewProposal(
        pb.ReviewProposalRequest(proposal=str(s.proposal_id), decision=pb.REVIEW_DECISION_APPROVE),
        metadata=ADMIN,
    ),
    "WithdrawProposal": lambda c, s: c.stub.WithdrawProposal(
        pb.WithdrawProposalRequest(proposal=str(s.own_proposal_id), reason="not needed"),
        metadata=BOB,
    ),
    "AddCredential": lambda c, s: c.stub.AddCredential(
        credential_request("lab-ssh"), metadata=ADMIN
    ),
    "RemoveCredential": lambda c, s: c.stub.RemoveCredential(
        pb.RemoveCredentialRequest(name=s.credential), metadata=ADMIN
    ),
    "TrustHost": lambda c, s: c.stub.TrustHost(
        pb.TrustHostRequest(address=s.ssh_address, fingerprint=s.ssh_fingerprint), metadata=BOB
    ),
    "ForgetHost": lambda c, s: c.stub.ForgetHost(
        pb.ForgetHostRequest(address=s.ssh_address), metadata=ADMIN
    ),
    "RunAgentlessDiagnostics": lambda c, s: c.stub.RunAgentlessDiagnostics(
        pb.RunAgentlessDiagnosticsRequest(ssh=s.ssh_target, ticket_id=s.resolved_ticket_id),
        metadata=BOB,
    ),
    "SetWinRMHost": lambda c, s: c.stub.SetWinRMHost(
        pb.SetWinRMHostRequest(address="pc-9.corp.lan", http=True), metadata=BOB
    ),
    # A host on a closed port: the deployment's rows and audit row are written at the start,
    # and the host then fails at once, in the background.
    "StartDeployment": lambda c, s: c.stub.StartDeployment(
        deploy_pb2.StartDeploymentRequest(
            hosts=[
                deploy_pb2.DeployTarget(
                    transport=deploy_pb2.DEPLOY_TRANSPORT_SSH,
                    address=f"root@127.0.0.1:{free_port()}",
                )
            ]
        ),
        metadata=ADMIN,
    ),
    "SetSlaCalendar": lambda c, s: c.stub.SetSlaCalendar(
        pb.SetSlaCalendarRequest(name="lyon", definition_json=PARIS_CALENDAR), metadata=ADMIN
    ),
    # a new version of acme-p2: the old row is retired and the new one written, or neither
    "SetSlaPolicy": lambda c, s: c.stub.SetSlaPolicy(
        sla_policy("acme-p2", response_s=2 * 3600), metadata=ADMIN
    ),
    "RetireSlaPolicy": lambda c, s: c.stub.RetireSlaPolicy(
        pb.RetireSlaPolicyRequest(name="acme-p2"), metadata=ADMIN
    ),
    "SetUserEmail": lambda c, s: c.stub.SetUserEmail(
        pb.SetUserEmailRequest(name="ann", email="ann@helpdesk.example"), metadata=ADMIN
    ),
    "SetAgentGroup": lambda c, s: c.stub.SetAgentGroup(
        pb.SetAgentGroupRequest(
            name="lab", interval_s=300, collectors=["disks"], set_collectors=True
        ),
        metadata=ADMIN,
    ),
    # the agent's schedule row is written with its audit row, or neither
    "AssignAgentGroup": lambda c, s: c.stub.AssignAgentGroup(
        pb.AssignAgentGroupRequest(name="default", agents=[s.agent_id]), metadata=ADMIN
    ),
    "AddWebhook": lambda c, s: c.stub.AddWebhook(
        pb.AddWebhookRequest(url="https://tickets.example.test/in", events=["resolved"]),
        metadata=ADMIN,
    ),
    "RotateWebhookSecret": lambda c, s: c.stub.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=s.webhook_id), metadata=ADMIN
    ),
    "RemoveWebhook": lambda c, s: c.stub.RemoveWebhook(
        pb.RemoveWebhookRequest(id=s.webhook_id), metadata=ADMIN
    ),
    "PublishCatalog": lambda c, s: c.stub.PublishCatalog(
        pb.PublishCatalogRequest(bundle=signed_bundle(c.catalog_key, source("flush-dns"))),
        metadata=ADMIN,
    ),
}


def test_every_state_changing_method_is_covered() -> None:
    methods = pb.DESCRIPTOR.services_by_name["ConsoleService"].methods
    changing = {m.name for m in methods if not m.name.startswith(READ_ONLY)}
    assert changing == set(CALLS)


async def _everything(console: Console) -> dict[str, list[tuple[object, ...]]]:
    def unit(connection: Connection) -> dict[str, list[tuple[object, ...]]]:
        return {
            table.name: sorted(
                (tuple(row) for row in connection.execute(select(table)).all()), key=repr
            )
            for table in metadata.sorted_tables
            if table.name != "replicas"
        }

    return await console.services.db.read(unit)


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_a_crash_before_the_audit_row_leaves_neither(
    console: Console, sshd: Sshd, method: str
) -> None:
    scene = await _scene(console, sshd)
    await _crash_leaves_neither(console, scene, CALLS[method])


@pytest.fixture(scope="module")
def winrs() -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(WINRS_USER, WINRS_PASSWORD) as endpoint:
        document = (WINDOWS_DOCUMENTS / "pending_reboot.json").read_bytes()
        serve_transport(endpoint, windows_collection(document), {})
        yield endpoint


async def test_a_crash_in_a_winrm_diagnostic_leaves_neither(
    console: Console, sshd: Sshd, winrs: WinRSEndpoint
) -> None:
    scene = await _scene(console, sshd)
    await console.stub.AddCredential(
        pb.AddCredentialRequest(
            name="test-winrs",
            kind=pb.CREDENTIAL_KIND_WINRM_PASSWORD,
            user=WINRS_USER,
            hosts=["127.0.0.1"],
            secret=WINRS_PASSWORD,
        ),
        metadata=ADMIN,
    )
    address = f"127.0.0.1:{winrs.port}"
    allowed = pb.SetWinRMHostRequest(
        address=address, http=True, auth="basic", allow_basic=True, allow_unencrypted=True
    )
    await console.stub.SetWinRMHost(allowed, metadata=BOB)
    request = pb.RunAgentlessDiagnosticsRequest(
        transport=pb.REMOTE_TRANSPORT_WINRM,
        address=f"{WINRS_USER}@{address}",
        ticket_id=scene.resolved_ticket_id,
    )
    await _crash_leaves_neither(
        console, scene, lambda c, s: c.stub.RunAgentlessDiagnostics(request, metadata=BOB)
    )


async def _crash_leaves_neither(console: Console, scene: Scene, call: Call) -> None:
    # The call works when nothing crashes (so the fault below is what stops it).
    before = await _everything(console)

    def crash(action: str) -> None:
        raise InjectedCrash(action)

    console.services.audited.fault_before_audit = crash
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call(console, scene)
    finally:
        console.services.audited.fault_before_audit = None
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
    assert await _everything(console) == before
    await call(console, scene)  # and the same call, without the crash, changes things
    assert await _everything(console) != before


async def test_a_crash_in_an_agentless_run_leaves_neither(console: Console, sshd: Sshd) -> None:
    """RunScript with ssh: the request and its audit row together or not at all; the run the
    call then asks is executed by the server, and waited for here."""
    scene = await _scene(console, sshd)
    diagnosed = await console.stub.RunAgentlessDiagnostics(
        pb.RunAgentlessDiagnosticsRequest(ssh=scene.ssh_target), metadata=BOB
    )
    request = pb.RunScriptRequest(
        agent=diagnosed.command.agent_id, script_id="clear-temp", ssh=scene.ssh_target
    )
    try:
        await _crash_leaves_neither(
            console, scene, lambda c, s: c.stub.RunScript(request, metadata=BOB)
        )
    finally:
        await console.services.agentless_runs.wait_started()
