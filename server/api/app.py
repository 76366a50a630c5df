"""The server process: two listeners, one event loop (ARCHITECTURE.md, "Wire protocol").

The agent listener requires a client certificate from our CA and serves only AgentService. The
console listener is server-authenticated TLS and serves enrollment, the console, health and
reflection; its bearer tokens are checked by the one auth interceptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric import ed25519
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from sonde.server.api.agent_session import AgentSessionServicer
from sonde.server.api.auth import AuthInterceptor
from sonde.server.api.connection_limits import address_caps, listener_options
from sonde.server.api.console import ConsoleServicer
from sonde.server.api.enrollment import EnrollmentServicer
from sonde.server.api.listeners import bind_listener
from sonde.server.api.package_listener import PackageListener
from sonde.server.audit_checkpoints import AuditCheckpoints, checkpoint_path
from sonde.server.audit_key import audit_key_for_chain, audit_key_path
from sonde.server.credential_key import credential_key_for_store, credential_key_path
from sonde.server.dispatch_signing import load_dispatch_private_key
from sonde.server.domain.agentless_runs import AgentlessRuns
from sonde.server.domain.audit import AuditLog
from sonde.server.domain.audited import AuditEntry
from sonde.server.domain.credential_secrets import CredentialKey
from sonde.server.domain.deployments import Deployments, DeploySetup, ssh_setup
from sonde.server.domain.fleet_upkeep import FleetUpkeep
from sonde.server.domain.heartbeats import HeartbeatBatcher
from sonde.server.domain.monitoring import ROUND_S, MonitoringScheduler
from sonde.server.domain.remote_credentials import sealed_with
from sonde.server.domain.replicas import Replica
from sonde.server.domain.self_service import SelfService
from sonde.server.domain.sessions import AgentAdmission, LocalSessions, SessionRows
from sonde.server.domain.sla_watch import SlaWatch
from sonde.server.domain.wake_listener import WakeListener
from sonde.server.domain.workstation_help import WorkstationHelp
from sonde.server.domain.workstation_rating import WorkstationRatings
from sonde.server.enrollment_issuer import BundleIssuer
from sonde.server.errors import SondeError
from sonde.server.intake.imap_mailbox import MailboxAccount
from sonde.server.intake.mail_poller import MailPoller
from sonde.server.intake.mail_sender import NotificationSender
from sonde.server.intake.smtp_notify import SmtpRelay
from sonde.server.memory_release import MemoryRelease
from sonde.server.pki import (
    CertificateAuthority,
    PkiPaths,
    load_catalog_public_key,
    load_dispatch_public_key,
)
from sonde.server.remote.msi_fetch import PackageOffer
from sonde.server.remote.wheelhouse import load_wheelhouse
from sonde.server.remote.windows_install import AgentMsi, load_msi
from sonde.server.services import ServerServices, open_services
from sonde.server.settings import (
    DEFAULT_MAX_CONNECTING,
    ConnectionLimits,
    DataDir,
    join_address,
    split_address,
)
from sonde.server.storage.db import Database
from sonde.server.system_journal import SystemJournal
from sonde.server.web.connections import WebConnectionLimits
from sonde.server.web.listener import WebListener
from sonde.server.webhooks.delivery import WebhookDelivery
from sonde.server.webhooks.endpoints import sealed_with as webhook_secrets_sealed_with
from sonde.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    console_pb2,
    console_pb2_grpc,
    enrollment_pb2,
    enrollment_pb2_grpc,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Calls gRPC core may hold before the servicer takes them (see COMMON_OPTIONS): one per agent
# of the largest fleet one server is sized for (PERFORMANCE.md: 20,000), with room.
MAX_PENDING_CALLS = 32_768
MAX_UNTAKEN_CALL_S = 60

# Must agree with the agent's keepalive (agent/transport.py): agents ping every 30 s.
COMMON_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_ping_strikes", 0),
    # Off, so that an address another process holds fails at start instead of being shared.
    ("grpc.so_reuseport", 0),
    # gRPC core holds the calls that arrived before the asyncio loop asked for them (it asks
    # one at a time) and, past 1,000 of them, cancels new ones at random, all past 3,000:
    # in a connect storm that threw away sessions whose TLS handshake was already done
    # (CANCELLED at the agent, which then retried). The servicer's own admission
    # (--max-connecting, RESOURCE_EXHAUSTED with a retry hint) is the overload answer.
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
    # And as long as the agent waits for its Welcome (agent/transport.py), instead of core's
    # 30 s: a session cancelled here costs the agent a new handshake at the back of the queue.
    ("grpc.server_max_unrequested_time_in_server", MAX_UNTAKEN_CALL_S),
]


def _catalog_public_key(pki: PkiPaths) -> ed25519.Ed25519PublicKey | None:
    """The catalog's public key only (pki/catalog.pub), never catalog.key."""
    key = load_catalog_public_key(pki)
    if key is None:
        log.warning(
            "%s is missing: catalog bundles are refused until it is written "
            "(sonde-catalog public-key --key catalog.key)",
            pki.catalog_public_key,
        )
    return key


async def _credential_key(pki: PkiPaths, db: Database) -> CredentialKey:
    """pki/credentials.key, checked against the stored credentials and webhook secrets (made
    if none are)."""
    counts = await sealed_with(db)
    for key_id, count in (await webhook_secrets_sealed_with(db)).items():
        counts[key_id] = counts.get(key_id, 0) + count
    key, made = credential_key_for_store(pki.root, counts)
    if made:
        log.warning(
            "made the credentials key %s: copy it with pki/ to every replica and keep it "
            "in the data folder's backups",
            credential_key_path(pki.root),
        )
    return key


@dataclass(frozen=True)
class RunOptions:
    data: DataDir
    console_address: str
    agent_address: str
    database_url: str
    heartbeat_interval_s: float
    server_name: str
    agent_addresses: tuple[str, ...] = ()  # advertised to agents; () = the agent listener
    max_connecting: int = DEFAULT_MAX_CONNECTING  # sessions between accept and Welcome at once
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)  # docs/server.md
    wheelhouse: Path | None = None  # what `sonde deploy` installs (docs/deploy.md)
    msi: Path | None = None  # what `sonde deploy --winrm` installs: sonde-agent-VERSION.msi
    package_address: str = ""  # the HTTPS listener Windows hosts fetch the MSI from; "": none
    mailbox: MailboxAccount | None = None  # the helpdesk's mailbox read for tickets (docs/mail.md)
    mail_interval_s: float = 60.0
    smtp: SmtpRelay | None = None  # notifications to requesters go out through it (docs/mail.md)
    smtp_from: str = ""
    monitoring_min_interval_s: float = 60.0  # the shortest group interval (docs/monitoring.md)
    sla_interval_s: float = 30.0  # between two rounds of the SLA watch (docs/sla.md)
    web_address: str = ""  # the HTTPS web form and satisfaction pages (docs/web.md); "": none
    web_url: str = ""  # how requesters reach it, for rating links; "": https://the bound address


def advertised(bound_host: str, port: int, server_name: str) -> str:
    """The address to give agents: a wildcard bind is reached by the server's name."""
    host = server_name if bound_host in {"0.0.0.0", "::", ""} else bound_host  # noqa: S104
    return join_address(host, port)


class SondeServer:
    """A running sonde-server: start(), then stop() (graceful)."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.console_address = ""
        self.agent_address = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._db: Database | None = None
        self._console: grpc.aio.Server | None = None
        self._agents: grpc.aio.Server | None = None
        self._sessions: LocalSessions | None = None
        self._checkpoints: AuditCheckpoints | None = None
        self.replica: Replica | None = None
        self._deployments: Deployments | None = None
        self._agentless_runs: AgentlessRuns | None = None
        self._packages: PackageListener | None = None
        self._web: WebListener | None = None
        self.web_address = ""
        self.package_address = ""

    @property
    def deployments(self) -> Deployments:
        """The push installs this server runs (started from its console)."""
        assert self._deployments is not None, "the server is not started"
        return self._deployments

    async def start(self) -> None:
        options = self.options
        pki = options.data.pki
        authority = CertificateAuthority.load(pki)
        server_key = pki.server_key.read_bytes()
        server_certificate = pki.server_certificate.read_bytes()
        self._db = db = await Database.open(options.database_url)
        audit_key, made = await audit_key_for_chain(pki.root, AuditLog(db))
        if made:
            log.warning(
                "made the audit key %s: audit rows are keyed from now on; copy it with pki/ "
                "to every replica and keep it in the data folder's backups",
                audit_key_path(pki.root),
            )
        credential_key = await _credential_key(pki, db)
        journal = SystemJournal.from_environment()
        self._checkpoints = checkpoints = AuditCheckpoints(
            AuditLog(db, key=audit_key),
            checkpoint_path(options.data.root),
            audit_key,
            journal=journal,
        )
        await checkpoints.take()
        log.info(
            "audit checkpoints go to %s%s",
            checkpoint_path(options.data.root),
            " and the system journal" if journal.present else " (no system journal here)",
        )
        issuer = BundleIssuer(
            authority.certificate_der, options.server_name, options.agent_addresses
        )
        catalog_key = _catalog_public_key(pki)
        rating_url = await self._start_web(pki)
        self.replica = replica = Replica(db)  # its id claims the runs this server runs itself
        services = await open_services(
            db,
            issuer,
            audit_key=audit_key,
            catalog_public_key=catalog_key,
            dispatch_key=load_dispatch_private_key(pki),
            credential_key=credential_key,
            notify_requesters=options.smtp is not None,
            rating_url=rating_url,
            replica_id=replica.id,
            deploy_setup=await self._deploy_setup(pki),
            winrm_ca_folder=options.data.winrm_ca_folder,
            monitoring_min_interval=timedelta(seconds=options.monitoring_min_interval_s),
        )
        issuer.set_tokens(services.tokens)
        if self._web is not None:
            self._web.attach(services.web_requests, services.satisfaction)
        reset = await replica.register()
        if reset:
            log.info("marked %d agents offline after a restart", reset)
        self._sessions = sessions = LocalSessions(options.heartbeat_interval_s)
        admission = AgentAdmission(db)
        await admission.load()
        services.wakeups.on_revoked(admission.revoked)
        session_rows = SessionRows(db, replica.id, on_unknown=admission.forget)
        heartbeats = HeartbeatBatcher(services.agents)
        upkeep = FleetUpkeep(
            replica,
            services.commands,
            services.wakeups,
            script_runs=services.script_runs,
            agentless_runs=services.agentless_runs,
        )

        self._agents = grpc.aio.server(
            options=COMMON_OPTIONS
            + listener_options(options.limits, options.limits.max_agent_connections)
        )
        agent_pb2_grpc.add_AgentServiceServicer_to_server(
            AgentSessionServicer(
                sessions=sessions,
                admission=admission,
                session_rows=session_rows,
                heartbeats=heartbeats,
                commands=services.commands,
                diagnostics=services.diagnostics,
                wakeups=services.wakeups,
                max_hellos_in_flight=options.max_connecting,
                script_runs=services.script_runs,
                workstation_help=WorkstationHelp(services.tickets, services.audited),
                self_service=SelfService(
                    services.db, services.script_runs, services.tickets, services.audited
                ),
                ratings=WorkstationRatings(services.db, services.audited),
            ),
            self._agents,
        )
        agent_credentials = grpc.ssl_server_credentials(
            [(server_key, server_certificate)],
            root_certificates=authority.certificate_pem,
            require_client_auth=True,
        )
        agent_host, _ = split_address(options.agent_address)
        agent_port = bind_listener(self._agents, options.agent_address, agent_credentials, "agents")

        self._console = self._console_server(services)
        console_credentials = grpc.ssl_server_credentials([(server_key, server_certificate)])
        console_host, _ = split_address(options.console_address)
        console_port = bind_listener(
            self._console, options.console_address, console_credentials, "the console"
        )

        self.agent_address = advertised(agent_host, agent_port, options.server_name)
        self.console_address = advertised(console_host, console_port, options.server_name)
        issuer.set_addresses(self.console_address, self.agent_address)
        enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(
            EnrollmentServicer(
                authority=authority,
                agents=services.agents,
                agent_address=self.agent_address,
                server_name=options.server_name,
                catalog_public_key=catalog_key,
                dispatch_public_key=load_dispatch_public_key(pki),
            ),
            self._console,
        )
        await self._agents.start()
        await self._console.start()
        self._tasks = [
            asyncio.create_task(heartbeats.run(), name="heartbeats"),
            asyncio.create_task(session_rows.run(), name="session-rows"),
            asyncio.create_task(sessions.watch_heartbeats(), name="heartbeat-watch"),
            asyncio.create_task(upkeep.run(), name="fleet-upkeep"),
            asyncio.create_task(checkpoints.run(), name="audit-checkpoints"),
            asyncio.create_task(MemoryRelease().run(), name="memory-release"),
            asyncio.create_task(
                SlaWatch(
                    db,
                    services.audited,
                    tell_by_mail=self.options.smtp is not None,
                    interval_s=self.options.sla_interval_s,
                ).run(),
                name="sla-watch",
            ),
            # Outbound webhooks (docs/webhooks.md): each endpoint leased by one replica at a time.
            asyncio.create_task(
                WebhookDelivery(db, credential_key, replica.id).run(), name="webhooks"
            ),
            asyncio.create_task(
                MonitoringScheduler(
                    db,
                    services.wakeups,
                    round_s=min(ROUND_S, options.monitoring_min_interval_s),
                ).run(),
                name="monitoring",
            ),
        ]
        self._tasks += self._optional_tasks(db, services, agent_port, console_port)
        log.info(
            "sonde-server listening: console %s, agents %s (mTLS)",
            self.console_address,
            self.agent_address,
        )

    def _optional_tasks(
        self, db: Database, services: ServerServices, agent_port: int, console_port: int
    ) -> list[asyncio.Task[None]]:
        """The mailbox's reading, PostgreSQL's wake listener, the per-address caps: what this
        server's options and database ask for."""
        options = self.options
        tasks = []
        if options.mailbox is not None:
            poller = MailPoller(
                options.mailbox, services.mail_tickets, interval_s=options.mail_interval_s
            )
            tasks.append(asyncio.create_task(poller.run(), name="mail-intake"))
            log.info("mail intake from %s every %g s", poller.name, options.mail_interval_s)
        if options.smtp is not None:
            sender = NotificationSender(db, options.smtp, options.smtp_from)
            tasks.append(asyncio.create_task(sender.run(), name="notifications"))
        if db.dialect == "postgresql":
            listener = WakeListener(options.database_url, services.wakeups)
            tasks.append(asyncio.create_task(listener.run(), name="wake-listener"))
        for cap in address_caps(options.limits, agent_port, console_port):
            tasks.append(asyncio.create_task(cap.run(), name=f"address-cap-{cap.port}"))
        return tasks

    async def _start_web(self, pki: PkiPaths) -> str:
        """Bind the web form's listener (docs/web.md) when asked; the base URL of its rating
        links when the server mails requesters ("" else)."""
        options = self.options
        if not options.web_address:
            return ""
        limits = options.limits
        self._web = WebListener(
            pki.server_certificate,
            pki.server_key,
            mails_requesters=options.smtp is not None,
            limits=WebConnectionLimits(
                head_timeout_s=limits.web_head_timeout_s,
                idle_timeout_s=limits.web_idle_timeout_s,
                max_connections=limits.max_web_connections,
                max_per_address=limits.max_web_connections_per_address,
            ),
        )
        port = await self._web.start(options.web_address)
        host, _ = split_address(options.web_address)
        self.web_address = advertised(host, port, options.server_name)
        log.info("the web form is at https://%s/", self.web_address)
        if options.smtp is None:
            return ""
        return options.web_url or f"https://{self.web_address}"

    async def _deploy_setup(self, pki: PkiPaths) -> DeploySetup:
        """What `sonde deploy` installs from: the wheelhouse, the MSI, the package listener."""
        options = self.options
        msi = load_msi(options.msi) if options.msi else None
        offer = await self._package_offer(msi, pki) if msi and options.package_address else None
        wheelhouse = load_wheelhouse(options.wheelhouse) if options.wheelhouse else None
        return ssh_setup(wheelhouse, msi, offer)

    async def _package_offer(self, msi: AgentMsi, pki: PkiPaths) -> PackageOffer:
        """Start the package listener (docs/deploy.md); where hosts fetch the MSI from it."""
        self._packages = PackageListener(msi, pki.server_certificate, pki.server_key)
        port = await self._packages.start(self.options.package_address)
        host, _ = split_address(self.options.package_address)
        self.package_address = advertised(host, port, self.options.server_name)
        log.info("the agent's MSI is served at https://%s", self.package_address)
        return self._packages.offer(self.package_address)

    def _console_server(self, services: ServerServices) -> grpc.aio.Server:
        self._deployments = services.deployments  # started from the console, stopped with it
        self._agentless_runs = services.agentless_runs  # likewise

        async def record_refusal(
            actor: str, action: str, error: SondeError, detail: dict[str, str], peer: str
        ) -> None:
            await services.audited.refused(
                actor, action, error, entry=AuditEntry(detail=dict(detail)), peer=peer
            )

        server = grpc.aio.server(
            interceptors=[
                AuthInterceptor(
                    services.users.authenticate,
                    record_refusal,
                    generation=lambda: services.users.generation,
                )
            ],
            options=COMMON_OPTIONS
            + listener_options(self.options.limits, self.options.limits.max_console_connections),
        )
        console_pb2_grpc.add_ConsoleServiceServicer_to_server(ConsoleServicer(services), server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        for service in ("", "sonde.v1.ConsoleService", "sonde.v1.EnrollmentService"):
            # set() is a coroutine in the async servicer; it only stores the status.
            asyncio.get_running_loop().create_task(
                health.set(service, health_pb2.HealthCheckResponse.SERVING)
            )
        reflection.enable_server_reflection(
            [
                console_pb2.DESCRIPTOR.services_by_name["ConsoleService"].full_name,
                enrollment_pb2.DESCRIPTOR.services_by_name["EnrollmentService"].full_name,
                agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        return server

    async def stop(self, grace_s: float = 3.0) -> None:
        if self._sessions is not None:
            self._sessions.close_all("the server is shutting down")
        for server in (self._console, self._agents):
            if server is not None:
                await server.stop(grace_s)
        if self._deployments is not None:
            await self._deployments.close()  # each host's row says where it got to
        if self._packages is not None:
            await self._packages.stop()
        if self._web is not None:
            await self._web.stop()
        if self._agentless_runs is not None:
            await self._agentless_runs.close()  # a live replica's upkeep ends them interrupted
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._checkpoints is not None:
            try:
                await self._checkpoints.take()
            except Exception:
                log.exception("could not take the last audit checkpoint")
        if self.replica is not None and self._db is not None:
            try:
                await self.replica.retire()
            except Exception:
                log.exception("could not give up this replica's lease; it will lapse")
        if self._db is not None:
            await self._db.close()


async def serve(options: RunOptions, stop: asyncio.Event) -> None:
    """Run until `stop` is set; write and remove DIR/listening.json around it."""
    server = SondeServer(options)
    try:
        await server.start()
    except BaseException:
        await server.stop(grace_s=0)  # close what start() opened (the database's thread)
        raise
    options.data.write_listening(server.console_address, server.agent_address)
    try:
        await stop.wait()
    finally:
        options.data.clear_listening()
        await server.stop()
