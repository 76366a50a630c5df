"""Push install of the agent to many hosts (`sonde deploy`): start, follow, retry.

start() writes the deployment and its hosts (`pending`) with its `agents.deploy` audit row and
returns at once; the hosts then run on the server, `parallel` at a time, each bounded by
`host_timeout_s` (deploy_host.py does one host). A host whose earlier deployment left its agent
online at the wanted version is `skipped` without a login; so re-running the same command, or
retry() of a deployment, touches only the hosts that failed or never got an agent. Each host's
end is written with its `agents.deploy.host` audit row in one transaction.
"""

from __future__ import annotations

import asyncio
import builtins
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy.engine import Connection

from sonde.server.domain import hashed_secrets
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.deploy_host import HostDeployer, HostOutcome, OpenShell
from sonde.server.domain.deployment_store import (
    Deployment,
    DeployOptions,
    DeployStage,
    HostPlan,
    HostResult,
    agent_of_token,
    agent_online,
    host_token,
    insert_deployment,
    interrupted_reason,
    load_deployment,
    online_at_version,
    unfinished_hosts,
    update_host,
)
from sonde.server.domain.enrollment_tokens import revoke_unused
from sonde.server.domain.reached_shells import open_ssh
from sonde.server.domain.roles import Principal
from sonde.server.domain.text import sanitized
from sonde.server.domain.trusted_hosts import TrustedHosts
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.remote.credentials import Credential, CredentialSource
from sonde.server.remote.msi_fetch import MsiDelivery, PackageOffer
from sonde.server.remote.shell import RemoteShell, RemoteTarget, Transport
from sonde.server.remote.wheelhouse import Wheelhouse
from sonde.server.remote.windows_install import AgentMsi
from sonde.server.remote.winrm import WinRMHost, WinRMShell
from sonde.server.storage.db import Database

WinRMSettings = Callable[[RemoteTarget], Awaitable[WinRMHost]]  # winrm_hosts.settings_for
MAX_HOSTS = 1000
MAX_PARALLEL = 64
ENROLLMENT_TTL = timedelta(minutes=15)
_PATH_CHARS = 4096
_DEPLOYMENT_ID = re.compile(r"[0-9a-f]{16}")  # hashed_secrets.new_id


class IssuesEnrollments(Protocol):
    """services.EnrollmentIssuer, as far as a deployment needs it."""

    async def issue(self, actor: Principal, *, uses: int, ttl: timedelta) -> _Issued: ...


class _Issued(Protocol):
    @property
    def enrollment(self) -> str: ...
    @property
    def token_id(self) -> str: ...


def check_options(options: DeployOptions) -> None:
    for name in ("prefix", "state_dir", "unit_dir"):
        path = str(getattr(options, name))
        if not path.startswith("/") or len(path) > _PATH_CHARS or "\x00" in path or "\n" in path:
            raise InvalidArgument(
                f"{name.replace('_', ' ')} must be an absolute path, got {path!r}"
            )
        if any(part == ".." for part in path.split("/")):
            raise InvalidArgument(f"{name.replace('_', ' ')} {path!r} must not contain '..'")
    if not 1 <= options.parallel <= MAX_PARALLEL:
        raise InvalidArgument(f"parallel must be from 1 to {MAX_PARALLEL}, got {options.parallel}")
    if not 10 <= options.host_timeout_s <= 3600:
        raise InvalidArgument("the time limit per host must be from 10 s to 3600 s")
    if not 1 <= options.online_timeout_s <= 600:
        raise InvalidArgument("the wait for the agent to come online must be from 1 s to 600 s")
    if not 0 <= options.min_free_mb <= 1_000_000:
        raise InvalidArgument("the free space asked for must be from 0 to 1000000 MiB")
    if options.msi_delivery not in set(MsiDelivery):
        raise InvalidArgument(
            f"the MSI's delivery must be auto, fetch or stream, got {options.msi_delivery[:20]!r}"
        )


def check_plans(plans: Sequence[HostPlan]) -> None:
    if not plans:
        raise InvalidArgument("a deployment needs at least one host")
    if len(plans) > MAX_HOSTS:
        raise InvalidArgument(f"a deployment takes at most {MAX_HOSTS} hosts, got {len(plans)}")
    seen: set[tuple[str, str, int]] = set()
    for plan in plans:
        key = (plan.target.transport.value, plan.target.host, plan.target.port)
        if key in seen:
            raise InvalidArgument(f"{plan.target.label} is named twice")
        seen.add(key)


@dataclass(frozen=True)
class DeploySetup:
    """What the server was started with: the wheels for Linux hosts and the MSI for Windows
    hosts (None: deploying there is refused), and how it logs in over SSH."""

    wheelhouse: Wheelhouse | None
    open_shell: OpenShell
    msi: AgentMsi | None = None
    package: PackageOffer | None = None  # where Windows hosts can fetch the MSI over HTTPS


def ssh_setup(
    wheelhouse: Wheelhouse | None,
    msi: AgentMsi | None = None,
    package: PackageOffer | None = None,
) -> DeploySetup:
    """The server's own: SSH logins with paramiko, the wheels and MSI given (None: refused),
    and the package listener's offer of the MSI (None: every Windows host gets it streamed)."""
    return DeploySetup(wheelhouse, open_ssh, msi, package)


class Deployments:
    def __init__(
        self,
        db: Database,
        audited: AuditedWrites,
        hosts: TrustedHosts,
        credentials: CredentialSource,
        *,
        enrollment: IssuesEnrollments,
        setup: DeploySetup,
        winrm_settings: WinRMSettings | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._winrm_settings = winrm_settings
        self._db = db
        self._audited = audited
        self._hosts = hosts
        self._credentials = credentials
        self._enrollment = enrollment
        self._setup = setup
        self._clock = clock
        self._running: set[asyncio.Task[None]] = set()
        self._active: dict[str, Principal] = {}  # deployments running here, and who started

    async def start(
        self,
        principal: Principal,
        plans: Sequence[HostPlan],
        options: DeployOptions,
        *,
        retry_of: str | None = None,
    ) -> Deployment:
        """Write the deployment (audited `agents.deploy`) and start its hosts."""
        wheelhouse, msi = self._setup.wheelhouse, self._setup.msi
        deployment_id = hashed_secrets.new_id()

        def unit(connection: Connection, entry: AuditEntry) -> Deployment:
            check_options(options)
            check_plans(plans)
            transports = {plan.target.transport for plan in plans}
            if Transport.SSH in transports and wheelhouse is None:
                raise Conflict(
                    "this server has no wheelhouse to install from on Linux: start it with "
                    "--wheelhouse DIR (docs/deploy.md says how to build one)"
                )
            if Transport.WINRM in transports and msi is None:
                raise Conflict(
                    "this server has no agent MSI to install on Windows: start it with "
                    "--msi sonde-agent-VERSION.msi (sonde-server package windows builds it)"
                )
            version = wheelhouse.agent_version if wheelhouse else msi.version if msi else ""
            at = self._clock()
            insert_deployment(
                connection,
                deployment_id,
                requested_by=principal.name,
                at=at,
                agent_version=version,
                options=options,
                plans=list(plans),
                retry_of=retry_of,
            )
            entry.detail |= {
                "deployment_id": deployment_id,
                "hosts": len(plans),
                "agent_version": version,
            }
            if retry_of:
                entry.detail["retry_of"] = retry_of
            found = load_deployment(connection, deployment_id)
            assert found is not None
            return found

        deployment = await self._audited.run(
            principal.name, "agents.deploy", unit, peer=principal.peer
        )
        self._active[deployment.id] = principal
        task = asyncio.create_task(self._run(principal, deployment))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return deployment

    async def retry(self, principal: Principal, deployment_id: str) -> Deployment:
        """A new deployment of `deployment_id`'s hosts with its options."""
        earlier = await self.get(deployment_id)
        plans = [host.plan for host in earlier.hosts]
        return await self.start(principal, plans, earlier.options, retry_of=earlier.id)

    async def get(self, deployment_id: str) -> Deployment:
        if not _DEPLOYMENT_ID.fullmatch(deployment_id):
            raise InvalidArgument(
                f"{deployment_id[:40]!r} is not a deployment id (16 hexadecimal characters)"
            )
        now = self._clock()
        found = await self._db.read(lambda c: load_deployment(c, deployment_id, at=now))
        if found is None:
            raise NotFound(f"no deployment has the id {deployment_id}")
        return found

    async def wait(self) -> None:
        """Until every deployment this server runs has finished (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*builtins.list(self._running), return_exceptions=True)

    async def close(self) -> None:
        """Stop every deployment this server runs; each unfinished host is written failed,
        check `interrupted`, at the stage it reached (audited `agents.deploy.interrupted`).
        A server killed outright leaves them `running`: get() reads those as interrupted
        once their time limit has passed."""
        for task in builtins.list(self._running):
            task.cancel()
        await asyncio.gather(*builtins.list(self._running), return_exceptions=True)
        for deployment_id, principal in builtins.list(self._active.items()):
            await self._interrupted(principal, deployment_id)
        self._active.clear()

    async def _interrupted(self, principal: Principal, deployment_id: str) -> None:
        def unit(connection: Connection, entry: AuditEntry) -> None:
            left = unfinished_hosts(connection, deployment_id)
            for host in left:
                update_host(
                    connection,
                    deployment_id,
                    host.position,
                    result=HostResult.FAILED.value,
                    failed_check="interrupted",
                    reason=interrupted_reason(deployment_id, host.stage),
                    updated_at=self._clock(),
                )
            entry.detail |= {"deployment_id": deployment_id, "hosts": len(left)}

        await self._audited.run(
            principal.name, "agents.deploy.interrupted", unit, peer=principal.peer
        )

    async def _open_winrm(self, target: RemoteTarget, credential: Credential) -> RemoteShell:
        settings = (
            await self._winrm_settings(target)
            if self._winrm_settings is not None
            else WinRMHost(target)  # the safe defaults: HTTPS 5986, NTLM, certificate checked
        )
        return await WinRMShell.open(settings, credential)

    async def _run(self, principal: Principal, deployment: Deployment) -> None:
        options = deployment.options
        limit = asyncio.Semaphore(options.parallel)

        async def issue() -> tuple[str, str]:
            issued = await self._enrollment.issue(principal, uses=1, ttl=ENROLLMENT_TTL)
            return issued.token_id, issued.enrollment

        async def version_online(agent_id: str) -> str | None:
            return await self._db.read(lambda c: agent_online(c, agent_id))

        async def of_token(token_id: str) -> tuple[str, str] | None:
            return await self._db.read(lambda c: agent_of_token(c, token_id))

        deployer = HostDeployer(
            wheelhouse=self._setup.wheelhouse,
            msi=self._setup.msi,
            package=self._setup.package,
            options=options,
            credentials=self._credentials,
            trusted_for=self._hosts.for_address,  # type: ignore[arg-type]
            open_shell=self._setup.open_shell,
            open_winrm=self._open_winrm,
            issue_enrollment=issue,
            agent_version_online=version_online,
            agent_of_token=of_token,
        )

        async def one(position: int, plan: HostPlan) -> None:
            async with limit:
                outcome = await self._one_host(deployment, position, plan, deployer)
            await self._finish(principal, deployment, position, plan, outcome)

        await asyncio.gather(
            *(one(host.position, host.plan) for host in deployment.hosts), return_exceptions=True
        )
        self._active.pop(deployment.id, None)

    async def _one_host(
        self, deployment: Deployment, position: int, plan: HostPlan, deployer: HostDeployer
    ) -> HostOutcome:
        wanted = deployer.wanted_version(plan.target.transport)
        online = await self._db.read(lambda c: online_at_version(c, plan.target, wanted))
        if online is not None:
            return HostOutcome(
                DeployStage.DONE,
                True,
                reason=f"skipped: agent {online.agent_id} is online at {online.version} "
                f"(deployment {online.deployment_id})",
                agent_id=online.agent_id,
                found_version=online.version,
            )

        async def progress(**values: object) -> None:
            marks = {k: v.value if isinstance(v, DeployStage) else v for k, v in values.items()}
            marks |= {"result": HostResult.RUNNING.value, "updated_at": self._clock()}
            await self._db.write(lambda c: update_host(c, deployment.id, position, **marks))

        try:
            return await asyncio.wait_for(
                deployer.deploy(plan, progress), deployment.options.host_timeout_s
            )
        except TimeoutError:
            reached = await self._db.read(lambda c: load_deployment(c, deployment.id))
            stage = reached.hosts[position].stage if reached else DeployStage.PREFLIGHT
            return HostOutcome(
                stage,
                False,
                "time limit",
                f"{plan.target.label} took longer than {deployment.options.host_timeout_s:g} s "
                f"(it was at {stage.value})",
            )

    async def _finish(
        self,
        principal: Principal,
        deployment: Deployment,
        position: int,
        plan: HostPlan,
        outcome: HostOutcome,
    ) -> None:
        skipped = outcome.reason.startswith("skipped:")
        result = (
            HostResult.SKIPPED
            if skipped
            else HostResult.SUCCEEDED
            if outcome.succeeded
            else HostResult.FAILED
        )

        def unit(connection: Connection, entry: AuditEntry) -> None:
            values: dict[str, object] = {
                "stage": outcome.stage.value,
                "result": result.value,
                "failed_check": outcome.failed_check,
                # Host-reported words (stderr, versions) kept inert, as an agent's text is.
                "reason": sanitized(outcome.reason, max_chars=2000),
                "updated_at": self._clock(),
            }
            if outcome.agent_id:
                values["agent_id"] = outcome.agent_id
            if outcome.found_version or skipped:
                values["found_version"] = sanitized(outcome.found_version, max_chars=64)
            update_host(connection, deployment.id, position, **values)
            entry.detail |= {
                "deployment_id": deployment.id,
                "target": plan.target.label,
                "result": result.value,
                "stage": outcome.stage.value,
            }
            if outcome.failed_check:
                entry.detail["failed_check"] = outcome.failed_check
                entry.detail["reason"] = sanitized(outcome.reason, max_chars=500)
            token = host_token(connection, deployment.id, position)
            # A failed host's one-time token, issued and never used, enrolls nobody later.
            failed = result is HostResult.FAILED and token is not None
            if failed and revoke_unused(connection, token or "", principal.name, self._clock()):
                entry.detail["token_revoked"] = token or ""

        await self._audited.run(
            principal.name,
            "agents.deploy.host",
            unit,
            agent_id=outcome.agent_id,
            peer=principal.peer,
        )
