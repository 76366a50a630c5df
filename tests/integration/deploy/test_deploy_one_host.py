"""A push install to one real sshd host, end to end: the server logs in with the stored key,
preflights, makes the venv from the wheelhouse, enrolls with a one-time token sent on stdin,
writes the unit, starts it (the stand-in systemctl runs its ExecStart), and the agent, a real
process, enrolls and comes online. Re-running the same deployment skips the host."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from sonde.server.storage.tables import agents, enrollment_tokens
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


def _options(root: Path) -> deploy_pb2.DeployOptions:
    options = fleet_options(root)
    return deploy_pb2.DeployOptions(
        prefix=options.prefix,
        state_dir=options.state_dir,
        unit_dir=options.unit_dir,
        online_timeout_s=30,
        min_free_mb=50,
    )


async def test_a_push_install_makes_the_venv_and_the_unit_and_the_agent_comes_online(
    live: LiveServer, host: TestHost, tmp_path: Path
) -> None:
    async with live.console_channel(live.admin_token) as channel:
        console = console_pb2_grpc.ConsoleServiceStub(channel)
        await store_key(console, "fleet-key", host.sshd, "127.0.0.1")
        await trust(console, host.sshd)
        started = await console.StartDeployment(
            deploy_pb2.StartDeploymentRequest(
                hosts=[ssh_target(host.sshd)], options=_options(tmp_path / "hosts")
            )
        )
        done = await finished(console, started.deployment.id)
        (only,) = done.hosts
        assert results(done) == {only.address: ("SUCCEEDED", "")}, only.reason
        assert only.stage == deploy_pb2.DEPLOY_STAGE_DONE
        assert only.found_version == ""
        assert done.agent_version == "0.1.0"

        # The venv, the unit, the enrollment, all where the options said.
        assert (host.prefix / "pyvenv.cfg").is_file()
        assert (host.prefix / "bin" / "sonde-agent").is_file()
        assert not (host.prefix / ".wheels").exists()  # the wheels are removed
        unit = host.unit_file.read_text()
        assert f"ExecStart={host.prefix}/bin/sonde-agent run --state " in unit
        assert host.unit_file.stat().st_mode & 0o777 == 0o644
        state = host.folder / "var" / "lib" / "sonde-agent"
        assert (state / "agent.json").is_file()

        # The agent is a real process, online, at the wheel's version, with its own token.
        row = await live.db.read(
            lambda c: c.execute(select(agents).where(agents.c.id == only.agent_id)).one()
        )
        assert row.connected is True
        assert row.agent_version == "0.1.0"
        token = await live.db.read(
            lambda c: c.execute(
                select(enrollment_tokens).where(enrollment_tokens.c.id == row.enrolled_with_token)
            ).one()
        )
        assert (token.uses_granted, token.uses_left) == (1, 0)
        assert token.created_by == "admin"

        # Audited: the deployment, and the host's end with its agent.
        (start,) = await audit_rows(live, "agents.deploy")
        assert start["deployment_id"] == done.id
        assert start["hosts"] == 1
        (end,) = await audit_rows(live, "agents.deploy.host")
        assert end["agent_id"] == only.agent_id
        assert end["result"] == "succeeded"

        # The same command again logs in nowhere: the agent is online at that version.
        again = await console.StartDeployment(
            deploy_pb2.StartDeploymentRequest(
                hosts=[ssh_target(host.sshd)], options=_options(tmp_path / "hosts")
            )
        )
        redone = await finished(console, again.deployment.id)
        assert results(redone) == {only.address: ("SKIPPED", "")}
        assert redone.hosts[0].agent_id == only.agent_id
        assert only.agent_id in redone.hosts[0].reason
