"""Everything the servicers need, built once per server process from one Database.

EnrollmentIssuer is a protocol: the domain side declares what it needs, the transport side
(server/enrollment_issuer.py) provides it. Agents are reached through durable commands
(server/domain/commands.py) and wake-ups, on whichever replica holds their stream.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.server.domain import monitoring_tickets, run_verification
from sonde.server.domain.agent_groups import MIN_INTERVAL, AgentGroups
from sonde.server.domain.agentless import AgentlessDiagnostics
from sonde.server.domain.agentless_runs import AgentlessRuns
from sonde.server.domain.agents import AgentRegistry
from sonde.server.domain.audit import AuditKey, AuditLog
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.catalog import Catalog
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.credential_secrets import CredentialKey
from sonde.server.domain.deployments import Deployments, DeploySetup, ssh_setup
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.enrollment_tokens import EnrollmentTokens
from sonde.server.domain.fixes import Fixes
from sonde.server.domain.intervention_report import InterventionReports
from sonde.server.domain.knowledge_base import KnowledgeBase
from sonde.server.domain.mail_tickets import MailTickets
from sonde.server.domain.remote_credentials import RemoteCredentials
from sonde.server.domain.requesters import Requesters
from sonde.server.domain.roles import Principal
from sonde.server.domain.satisfaction import Satisfaction
from sonde.server.domain.script_proposals import Proposals
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.domain.script_stats import ScriptStats
from sonde.server.domain.sla_admin import SlaAdmin
from sonde.server.domain.sla_report import SlaReports
from sonde.server.domain.ticket_categories import TicketCategories
from sonde.server.domain.ticket_handling import TicketHandling
from sonde.server.domain.ticket_queue import TicketQueue
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.trusted_hosts import TrustedHosts
from sonde.server.domain.users import Users
from sonde.server.domain.wakeups import Wakeups
from sonde.server.domain.web_requests import WebRequests
from sonde.server.domain.winrm_hosts import WinRMHosts
from sonde.server.storage.db import Database
from sonde.server.webhooks.endpoints import WebhookEndpoints


@dataclass(frozen=True)
class IssuedEnrollment:
    enrollment: str  # the whole string an agent needs; shown once
    token_id: str
    expires_at: datetime
    uses: int


class EnrollmentIssuer(Protocol):
    async def issue(self, actor: Principal, *, uses: int, ttl: timedelta) -> IssuedEnrollment: ...


@dataclass(frozen=True)
class ServerServices:
    db: Database
    wakeups: Wakeups
    audited: AuditedWrites
    agents: AgentRegistry
    tokens: EnrollmentTokens
    users: Users
    audit: AuditLog
    commands: Commands
    diagnostics: Diagnostics
    tickets: Tickets
    ticket_handling: TicketHandling
    ticket_queue: TicketQueue
    categories: TicketCategories
    mail_tickets: MailTickets
    knowledge_base: KnowledgeBase
    interventions: InterventionReports
    sla_admin: SlaAdmin
    sla_reports: SlaReports
    web_requests: WebRequests
    requesters: Requesters
    satisfaction: Satisfaction
    enrollment: EnrollmentIssuer
    catalog: Catalog
    proposals: Proposals
    script_runs: ScriptRuns
    fixes: Fixes
    script_stats: ScriptStats
    credentials: RemoteCredentials
    trusted_hosts: TrustedHosts
    winrm_hosts: WinRMHosts
    agentless: AgentlessDiagnostics
    agentless_runs: AgentlessRuns
    deployments: Deployments
    webhooks: WebhookEndpoints
    agent_groups: AgentGroups


async def open_services(
    db: Database,
    enrollment: EnrollmentIssuer,
    *,
    audit_key: AuditKey | None = None,
    catalog_public_key: ed25519.Ed25519PublicKey | None = None,
    dispatch_key: ed25519.Ed25519PrivateKey | None = None,
    credential_key: CredentialKey | None = None,
    notify_requesters: bool = False,
    rating_url: str = "",
    replica_id: str = "",
    deploy_setup: DeploySetup | None = None,
    winrm_ca_folder: Path | None = None,
    monitoring_min_interval: timedelta = MIN_INTERVAL,
) -> ServerServices:
    """The domain objects over `db`, built whole; audit rows linked with `audit_key`; catalog
    bundles verified with `catalog_public_key` (None: publishing is refused); script runs' orders
    signed with `dispatch_key` (None: a run cannot be sent); remote credentials sealed with
    `credential_key` (None: none can be added or used); push installs from `deploy_setup`'s
    wheelhouse (None: `sonde deploy` is refused); WinRM hosts' CA files named in
    `winrm_ca_folder` only (None: none can be named)."""
    wakeups = Wakeups()
    replica_id = replica_id or uuid.uuid4().hex  # the Replica's, whose lease the upkeep renews
    audited = AuditedWrites(db, key=audit_key)
    commands = Commands(db, audited, wakeups)
    script_runs = ScriptRuns(db, audited, wakeups, dispatch_key=dispatch_key)
    commands.sign_orders = script_runs.sign_in  # runs claimed with a diagnostic go signed
    diagnostics = Diagnostics(db, audited, wakeups)
    # the closed loop; a ticket it resolves mails its requester as a technician's resolve does
    diagnostics.verify_check = run_verification.record_check(
        audited, notify=notify_requesters, rating_url=rating_url
    )
    credentials = RemoteCredentials(db, audited, credential_key)
    trusted_hosts = TrustedHosts(db, audited)
    winrm_hosts = WinRMHosts(db, audited, ca_folder=winrm_ca_folder)
    agentless_runs = AgentlessRuns(
        db,
        audited,
        wakeups=wakeups,
        script_runs=script_runs,
        diagnostics=diagnostics,
        hosts=trusted_hosts,
        winrm_hosts=winrm_hosts,
        credentials=credentials,
        catalog_key=catalog_public_key,
        replica_id=replica_id,
    )
    tickets = Tickets(db, writes=audited, notify=notify_requesters, rating_url=rating_url)
    diagnostics.monitor_result = monitoring_tickets.record_result(
        audited, tickets
    )  # docs/monitoring.md
    return ServerServices(
        db=db,
        wakeups=wakeups,
        audited=audited,
        agents=AgentRegistry(db, writes=audited, wakeups=wakeups),
        tokens=EnrollmentTokens(db, writes=audited),
        users=Users(db, writes=audited, wakeups=wakeups),
        audit=AuditLog(db, key=audit_key),
        commands=commands,
        diagnostics=diagnostics,
        tickets=tickets,
        ticket_handling=TicketHandling(db, audited),
        ticket_queue=TicketQueue(db),
        categories=TicketCategories(db, audited),
        mail_tickets=MailTickets(db, audited, tickets),
        knowledge_base=KnowledgeBase(db, audited),
        interventions=InterventionReports(db),
        sla_admin=SlaAdmin(db, audited),
        sla_reports=SlaReports(db),
        web_requests=WebRequests(db, tickets, audited),
        requesters=Requesters(db),
        satisfaction=Satisfaction(db, audited),
        enrollment=enrollment,
        catalog=Catalog(db, catalog_public_key, writes=audited),
        proposals=Proposals(db, audited),
        script_runs=script_runs,
        fixes=Fixes(db, script_runs),
        script_stats=ScriptStats(db),
        credentials=credentials,
        trusted_hosts=trusted_hosts,
        winrm_hosts=winrm_hosts,
        agentless=AgentlessDiagnostics(
            db, audited, trusted_hosts, credentials, winrm_hosts=winrm_hosts
        ),
        agentless_runs=agentless_runs,
        webhooks=WebhookEndpoints(db, audited, credential_key),
        deployments=Deployments(
            db,
            audited,
            trusted_hosts,
            credentials,
            enrollment=enrollment,
            setup=deploy_setup or ssh_setup(None),
            winrm_settings=winrm_hosts.settings_for,
        ),
        agent_groups=AgentGroups(db, audited, min_interval=monitoring_min_interval),
    )
