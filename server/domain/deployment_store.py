"""The rows of push installs (tables deployments, deployment_hosts): what each host reached.

A deployment's hosts are written with it, `pending`, in the transaction that audits
`agents.deploy`; each host's row then moves through its stages (progress marks, written as
they happen, so a crash leaves the stage each host reached) and ends in one result, written
with its `agents.deploy.host` audit row.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.tables import agents, deployment_hosts, deployments
from sonde.server.storage.types import AnyRow


class DeployStage(enum.StrEnum):
    PLANNED = "planned"
    PREFLIGHT = "preflight"
    INSTALL = "install"
    ENROLL = "enroll"
    START = "start"
    ONLINE = "online"  # waiting for the agent's first Hello
    DONE = "done"


class HostResult(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # its agent was already online at the wanted version

    @property
    def final(self) -> bool:
        return self in {HostResult.SUCCEEDED, HostResult.FAILED, HostResult.SKIPPED}


@dataclass(frozen=True)
class DeployOptions:
    """Where the agent goes on each host and how long each step may take."""

    prefix: str = "/opt/sonde-agent"
    state_dir: str = "/var/lib/sonde-agent"
    unit_dir: str = "/etc/systemd/system"
    parallel: int = 8
    host_timeout_s: float = 600.0
    online_timeout_s: float = 60.0
    min_free_mb: int = 200
    msi_delivery: str = "auto"  # Windows: fetch over HTTPS, stream over WinRM, or auto

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DeployOptions:
        values = json.loads(text)
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        return cls(**known)


@dataclass(frozen=True)
class HostPlan:
    """One host as the admin named it: where to log in and with which stored credential."""

    target: RemoteTarget
    credential_name: str = ""


@dataclass(frozen=True)
class DeploymentHost:
    position: int
    plan: HostPlan
    stage: DeployStage
    result: HostResult
    failed_check: str  # the preflight check or the step that failed
    reason: str
    found_version: str  # the agent version installed before, "" for none
    agent_id: str | None
    token_id: str | None
    updated_at: datetime
    msi_delivery: str = ""  # Windows: how the MSI got there, fetched or streamed


@dataclass(frozen=True)
class Deployment:
    id: str
    requested_by: str
    created_at: datetime
    agent_version: str
    options: DeployOptions
    retry_of: str | None
    hosts: tuple[DeploymentHost, ...]

    @property
    def finished(self) -> bool:
        return all(host.result.final for host in self.hosts)


def insert_deployment(
    connection: Connection,
    deployment_id: str,
    *,
    requested_by: str,
    at: datetime,
    agent_version: str,
    options: DeployOptions,
    plans: list[HostPlan],
    retry_of: str | None,
) -> None:
    connection.execute(
        deployments.insert(),
        {
            "id": deployment_id,
            "requested_by": requested_by,
            "created_at": at,
            "agent_version": agent_version,
            "options": options.to_json(),
            "retry_of": retry_of,
        },
    )
    connection.execute(
        deployment_hosts.insert(),
        [
            {
                "deployment_id": deployment_id,
                "position": position,
                "transport": plan.target.transport.value,
                "login": plan.target.user,
                "host": plan.target.host,
                "port": plan.target.port,
                "credential_name": plan.credential_name,
                "stage": DeployStage.PLANNED.value,
                "result": HostResult.PENDING.value,
                "updated_at": at,
            }
            for position, plan in enumerate(plans)
        ],
    )


def update_host(
    connection: Connection, deployment_id: str, position: int, **values: object
) -> None:
    connection.execute(
        deployment_hosts.update()
        .where(
            deployment_hosts.c.deployment_id == deployment_id,
            deployment_hosts.c.position == position,
        )
        .values(**values)
    )


def _host(row: AnyRow) -> DeploymentHost:
    target = RemoteTarget(Transport(row.transport), row.login, row.host, row.port)
    return DeploymentHost(
        position=row.position,
        plan=HostPlan(target, row.credential_name),
        stage=DeployStage(row.stage),
        result=HostResult(row.result),
        failed_check=row.failed_check,
        reason=row.reason,
        found_version=row.found_version,
        agent_id=row.agent_id,
        token_id=row.token_id,
        updated_at=row.updated_at,
        msi_delivery=row.msi_delivery,
    )


# A running host's row is refreshed at each stage and each host is cancelled after
# host_timeout_s: a row older than that, and this much more, belongs to a server that died.
STALE_GRACE_S = 60.0


def interrupted_reason(deployment_id: str, stage: DeployStage) -> str:
    return (
        f"the server stopped while this host was at {stage.value}: run "
        f"`sonde deploy --retry {deployment_id}`"
    )


def load_deployment(
    connection: Connection, deployment_id: str, *, at: datetime | None = None
) -> Deployment | None:
    """The deployment and its hosts; read `at` a time, a deployment whose server died (a
    running host's row older than its time limit allows) reads as interrupted: its unfinished
    hosts failed, check `interrupted`, at the stage each reached."""
    row = connection.execute(select(deployments).where(deployments.c.id == deployment_id)).first()
    if row is None:
        return None
    rows = connection.execute(
        select(deployment_hosts)
        .where(deployment_hosts.c.deployment_id == deployment_id)
        .order_by(deployment_hosts.c.position)
    ).all()
    options = DeployOptions.from_json(row.options)
    hosts = [_host(host) for host in rows]
    limit = timedelta(seconds=options.host_timeout_s + STALE_GRACE_S)
    if at is not None and any(
        host.result is HostResult.RUNNING and at - host.updated_at > limit for host in hosts
    ):
        hosts = [
            host
            if host.result.final
            else replace(
                host,
                result=HostResult.FAILED,
                failed_check="interrupted",
                reason=interrupted_reason(deployment_id, host.stage),
            )
            for host in hosts
        ]
    return Deployment(
        id=row.id,
        requested_by=row.requested_by,
        created_at=row.created_at,
        agent_version=row.agent_version,
        options=options,
        retry_of=row.retry_of,
        hosts=tuple(hosts),
    )


def unfinished_hosts(connection: Connection, deployment_id: str) -> list[DeploymentHost]:
    found = load_deployment(connection, deployment_id)
    return [] if found is None else [host for host in found.hosts if not host.result.final]


@dataclass(frozen=True)
class OnlineAgent:
    agent_id: str
    version: str
    deployment_id: str


def online_at_version(
    connection: Connection, target: RemoteTarget, version: str
) -> OnlineAgent | None:
    """The agent a deployment put on `target` when it is connected now at `version`."""
    found = connection.execute(
        select(
            deployment_hosts.c.agent_id, deployment_hosts.c.deployment_id, agents.c.agent_version
        )
        .join(agents, agents.c.id == deployment_hosts.c.agent_id)
        .where(
            and_(
                deployment_hosts.c.transport == target.transport.value,
                deployment_hosts.c.host == target.host,
                deployment_hosts.c.port == target.port,
                deployment_hosts.c.result.in_(
                    [HostResult.SUCCEEDED.value, HostResult.SKIPPED.value]
                ),
                agents.c.connected.is_(True),
                agents.c.revoked_at.is_(None),
                agents.c.removed_at.is_(None),
                agents.c.agent_version == version,
            )
        )
        .order_by(deployment_hosts.c.updated_at.desc())
        .limit(1)
    ).first()
    if found is None:
        return None
    return OnlineAgent(found.agent_id, found.agent_version, found.deployment_id)


def agent_online(connection: Connection, agent_id: str) -> str | None:
    """The version an agent reports when it is connected now; None when it is not."""
    row = connection.execute(
        select(agents.c.agent_version).where(
            agents.c.id == agent_id, agents.c.connected.is_(True), agents.c.revoked_at.is_(None)
        )
    ).first()
    return None if row is None else str(row.agent_version)


def agent_of_token(connection: Connection, token_id: str) -> tuple[str, str] | None:
    """The agent enrolled with `token_id` and connected now, and its version (a Windows
    service enrolls itself at its first start: this is how a deployment finds it)."""
    row = connection.execute(
        select(agents.c.id, agents.c.agent_version).where(
            agents.c.enrolled_with_token == token_id,
            agents.c.connected.is_(True),
            agents.c.revoked_at.is_(None),
        )
    ).first()
    return None if row is None else (str(row.id), str(row.agent_version))


def host_token(connection: Connection, deployment_id: str, position: int) -> str | None:
    """The one-time enrollment token issued for a host of a deployment, if one was."""
    token = connection.execute(
        select(deployment_hosts.c.token_id).where(
            deployment_hosts.c.deployment_id == deployment_id,
            deployment_hosts.c.position == position,
        )
    ).scalar_one_or_none()
    return None if token is None else str(token)
