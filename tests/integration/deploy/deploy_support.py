"""What the push install tests do through the real console: store the fleet's credential,
trust host keys, start a deployment and follow it to its end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

from sqlalchemy import select

from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.winrm_hosts import WinRMChoices, WinRMHosts
from sonde.v1 import console_pb2, console_pb2_grpc, deploy_pb2
from tests.support.live_server import LiveServer
from tests.support.sshd import Sshd

SSH = deploy_pb2.DEPLOY_TRANSPORT_SSH
LAB_ADMIN = Principal(1, "admin", Role.ADMIN)


async def store_key(
    console: console_pb2_grpc.ConsoleServiceAsyncStub, name: str, sshd: Sshd, hosts: str
) -> None:
    await console.AddCredential(
        console_pb2.AddCredentialRequest(
            name=name,
            kind=console_pb2.CREDENTIAL_KIND_SSH_PRIVATE_KEY,
            user=sshd.user,
            hosts=[hosts],
            secret=sshd.user_key.decode(),
        )
    )


async def trust(console: console_pb2_grpc.ConsoleServiceAsyncStub, sshd: Sshd) -> None:
    await console.TrustHost(
        console_pb2.TrustHostRequest(
            address=f"127.0.0.1:{sshd.port}", fingerprint=sshd.host_key.fingerprint
        )
    )


def ssh_target(sshd: Sshd, credential: str = "") -> deploy_pb2.DeployTarget:
    return deploy_pb2.DeployTarget(
        transport=SSH, address=f"{sshd.user}@127.0.0.1:{sshd.port}", credential=credential
    )


async def finished(
    console: console_pb2_grpc.ConsoleServiceAsyncStub, deployment_id: str, timeout_s: float = 120
) -> deploy_pb2.Deployment:
    deadline = time.monotonic() + timeout_s
    while True:
        reply = await console.GetDeployment(deploy_pb2.GetDeploymentRequest(id=deployment_id))
        if reply.deployment.finished:
            return reply.deployment
        if time.monotonic() > deadline:
            raise AssertionError(f"deployment {deployment_id} not finished: {reply.deployment}")
        await asyncio.sleep(0.2)


def why(deployment: deploy_pb2.Deployment, address: str) -> str:
    """One host's row in a line, for an assertion's message: the whole deployment is cut
    short by pytest, and a rare failure must say what that host answered."""
    for host in deployment.hosts:
        if host.address == address:
            stage = deploy_pb2.DeployStage.Name(host.stage).removeprefix("DEPLOY_STAGE_")
            return f"{address} at {stage.lower()}, check {host.failed_check!r}: {host.reason}"
    return f"{address} is not in deployment {deployment.id}"


def results(deployment: deploy_pb2.Deployment) -> dict[str, tuple[str, str]]:
    """address -> (result, failed check)"""
    return {
        host.address: (
            deploy_pb2.DeployHostResult.Name(host.result).removeprefix("DEPLOY_HOST_RESULT_"),
            host.failed_check,
        )
        for host in deployment.hosts
    }


async def audit_rows(live: LiveServer, action: str) -> list[dict[str, object]]:
    from sonde.server.storage.tables import audit_log

    rows = await live.db.read(
        lambda connection: connection.execute(
            select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
        ).all()
    )
    return [
        {"result": row.result, "agent_id": row.agent_id, **json.loads(row.detail)} for row in rows
    ]


def addresses(hosts: Sequence[Sshd]) -> list[str]:
    return [f"{sshd.user}@127.0.0.1:{sshd.port}" for sshd in hosts]


async def windows_lab(
    live: LiveServer,
    console: console_pb2_grpc.ConsoleServiceAsyncStub,
    addresses: Sequence[str],
    user: str,
    password: str,
) -> None:
    """Stand-in Windows hosts made reachable: plain HTTP with Basic allowed for each (the
    WinRS endpoints speak nothing else) and their password stored as `lab-winrm`."""
    settings = WinRMHosts(live.db, live.writes)
    plain = WinRMChoices(https=False, auth="basic", allow_basic=True, allow_unencrypted=True)
    for address in addresses:
        await settings.set(LAB_ADMIN, address, plain)
    await console.AddCredential(
        console_pb2.AddCredentialRequest(
            name="lab-winrm",
            kind=console_pb2.CREDENTIAL_KIND_WINRM_PASSWORD,
            user=user,
            hosts=["127.0.0.1"],
            secret=password,
        )
    )
