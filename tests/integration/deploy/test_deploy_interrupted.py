"""A server that stops mid-deploy: the host's row says the stage it reached and that it was
interrupted (audited), the deployment is finished so nobody waits forever, and the retry
installs it. A server killed outright leaves the row `running`: once the host's time limit
has passed it reads as interrupted too, without anyone writing it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sonde.server.domain.deployment_store import update_host
from sonde.v1 import console_pb2_grpc, deploy_pb2
from tests.integration.deploy.deploy_support import (
    audit_rows,
    finished,
    results,
    ssh_target,
    store_key,
    trust,
)
from tests.support.deploy_hosts import TestHost, fleet_options
from tests.support.live_server import LiveServer


def _request(host: TestHost, root: Path) -> deploy_pb2.StartDeploymentRequest:
    options = fleet_options(root)
    return deploy_pb2.StartDeploymentRequest(
        hosts=[ssh_target(host.sshd)],
        options=deploy_pb2.DeployOptions(
            prefix=options.prefix,
            state_dir=options.state_dir,
            unit_dir=options.unit_dir,
            online_timeout_s=30,
            min_free_mb=50,
        ),
    )


async def test_a_stop_mid_install_leaves_the_stage_and_the_retry_finishes_it(
    live: LiveServer, host: TestHost, tmp_path: Path
) -> None:
    async with live.console_channel(live.admin_token) as channel:
        console = console_pb2_grpc.ConsoleServiceStub(channel)
        await store_key(console, "fleet-key", host.sshd, "127.0.0.1")
        await trust(console, host.sshd)
        started = await console.StartDeployment(_request(host, tmp_path / "hosts"))
        deployment_id = started.deployment.id
        deadline = time.monotonic() + 60
        while True:
            reply = await console.GetDeployment(deploy_pb2.GetDeploymentRequest(id=deployment_id))
            if reply.deployment.hosts[0].stage == deploy_pb2.DEPLOY_STAGE_INSTALL:
                break
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.05)
        await live.server.deployments.close()  # as a server's graceful stop does

        stopped = (
            await console.GetDeployment(deploy_pb2.GetDeploymentRequest(id=deployment_id))
        ).deployment
        assert stopped.finished
        (only,) = stopped.hosts
        assert results(stopped) == {only.address: ("FAILED", "interrupted")}
        assert only.stage == deploy_pb2.DEPLOY_STAGE_INSTALL
        assert f"at install: run `sonde deploy --retry {deployment_id}`" in only.reason
        (audited,) = await audit_rows(live, "agents.deploy.interrupted")
        assert audited["deployment_id"] == deployment_id
        assert audited["hosts"] == 1

        again = await console.StartDeployment(
            deploy_pb2.StartDeploymentRequest(retry=deployment_id)
        )
        redone = await finished(console, again.deployment.id)
        assert results(redone) == {only.address: ("SUCCEEDED", "")}, redone


async def test_a_host_left_running_by_a_dead_server_reads_as_interrupted(
    live: LiveServer, host: TestHost, tmp_path: Path
) -> None:
    async with live.console_channel(live.admin_token) as channel:
        console = console_pb2_grpc.ConsoleServiceStub(channel)
        # An untrusted key: the host fails at once; then its row is made to look as a killed
        # server leaves it (running, at install, last written long ago).
        started = await console.StartDeployment(_request(host, tmp_path / "hosts"))
        done = await finished(console, started.deployment.id)
        long_ago = datetime.now(UTC) - timedelta(hours=2)
        await live.db.write(
            lambda c: update_host(
                c, done.id, 0, result="running", stage="install", updated_at=long_ago
            )
        )
        seen = (await console.GetDeployment(deploy_pb2.GetDeploymentRequest(id=done.id))).deployment
        assert seen.finished
        assert results(seen) == {seen.hosts[0].address: ("FAILED", "interrupted")}
        assert "at install" in seen.hosts[0].reason
        # A fresh row is not: the host may still be running.
        await live.db.write(lambda c: update_host(c, done.id, 0, updated_at=datetime.now(UTC)))
        fresh = (
            await console.GetDeployment(deploy_pb2.GetDeploymentRequest(id=done.id))
        ).deployment
        assert not fresh.finished
