"""ConsoleService methods for push install (server/domain/deployments.py): start a deployment,
read where each host got to. The CLI polls GetDeployment to draw its progress."""

from __future__ import annotations

from typing import Any

import grpc

from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.deployment_store import (
    Deployment,
    DeploymentHost,
    DeployOptions,
    HostPlan,
)
from sonde.server.errors import InvalidArgument
from sonde.server.remote.addresses import BadAddress, remote_target
from sonde.server.remote.shell import Transport
from sonde.server.services import ServerServices
from sonde.v1 import deploy_pb2

Context = grpc.aio.ServicerContext[Any, Any]
MAX_CREDENTIAL_CHARS = 64

_TRANSPORTS = {
    deploy_pb2.DEPLOY_TRANSPORT_SSH: Transport.SSH,
    deploy_pb2.DEPLOY_TRANSPORT_WINRM: Transport.WINRM,
}
_TRANSPORT_MESSAGES = {value: key for key, value in _TRANSPORTS.items()}


def host_plans(hosts: list[deploy_pb2.DeployTarget]) -> list[HostPlan]:
    plans = []
    for index, host in enumerate(hosts):
        transport = _TRANSPORTS.get(host.transport)
        if transport is None:
            raise InvalidArgument(f"host {index + 1}: say which transport, ssh or winrm")
        if len(host.credential) > MAX_CREDENTIAL_CHARS:
            raise InvalidArgument(f"host {index + 1}: a credential name is at most 64 characters")
        try:
            target = remote_target(host.address, transport)
        except BadAddress as bad:
            raise InvalidArgument(f"host {index + 1}: {bad}") from None
        plans.append(HostPlan(target, host.credential))
    return plans


def deploy_options(message: deploy_pb2.DeployOptions) -> DeployOptions:
    """The request's options over the defaults (a zero value keeps the default)."""
    defaults = DeployOptions()
    return DeployOptions(
        prefix=message.prefix or defaults.prefix,
        state_dir=message.state_dir or defaults.state_dir,
        unit_dir=message.unit_dir or defaults.unit_dir,
        parallel=message.parallel or defaults.parallel,
        host_timeout_s=float(message.host_timeout_s or defaults.host_timeout_s),
        online_timeout_s=float(message.online_timeout_s or defaults.online_timeout_s),
        min_free_mb=message.min_free_mb or defaults.min_free_mb,
        msi_delivery=message.msi_delivery or defaults.msi_delivery,
    )


def _host(host: DeploymentHost) -> deploy_pb2.DeploymentHost:
    target = host.plan.target
    message = deploy_pb2.DeploymentHost(
        transport=_TRANSPORT_MESSAGES[target.transport],
        address=f"{target.user}@{target.host}:{target.port}",
        credential=host.plan.credential_name,
        stage=deploy_pb2.DeployStage.Value(f"DEPLOY_STAGE_{host.stage.name}"),
        result=deploy_pb2.DeployHostResult.Value(f"DEPLOY_HOST_RESULT_{host.result.name}"),
        failed_check=host.failed_check,
        reason=host.reason,
        found_version=host.found_version,
        agent_id=host.agent_id or "",
        msi_delivery=host.msi_delivery,
    )
    message.updated_at.FromDatetime(host.updated_at)
    return message


def deployment_message(deployment: Deployment) -> deploy_pb2.Deployment:
    options = deployment.options
    message = deploy_pb2.Deployment(
        id=deployment.id,
        requested_by=deployment.requested_by,
        agent_version=deployment.agent_version,
        retry_of=deployment.retry_of or "",
        options=deploy_pb2.DeployOptions(
            prefix=options.prefix,
            state_dir=options.state_dir,
            unit_dir=options.unit_dir,
            parallel=options.parallel,
            host_timeout_s=round(options.host_timeout_s),
            online_timeout_s=round(options.online_timeout_s),
            min_free_mb=options.min_free_mb,
            msi_delivery=options.msi_delivery,
        ),
        hosts=[_host(host) for host in deployment.hosts],
        finished=deployment.finished,
    )
    message.created_at.FromDatetime(deployment.created_at)
    return message


class DeployMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def StartDeployment(
        self, request: deploy_pb2.StartDeploymentRequest, context: Context
    ) -> deploy_pb2.StartDeploymentResponse:
        principal = current_principal()
        if request.retry:
            if request.hosts:
                raise InvalidArgument("give either hosts or a deployment to retry, not both")
            started = await self._s.deployments.retry(principal, request.retry)
        else:
            started = await self._s.deployments.start(
                principal, host_plans(list(request.hosts)), deploy_options(request.options)
            )
        return deploy_pb2.StartDeploymentResponse(deployment=deployment_message(started))

    @translate_errors
    async def GetDeployment(
        self, request: deploy_pb2.GetDeploymentRequest, context: Context
    ) -> deploy_pb2.GetDeploymentResponse:
        current_principal()
        found = await self._s.deployments.get(request.id)
        return deploy_pb2.GetDeploymentResponse(deployment=deployment_message(found))
