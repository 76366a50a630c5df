"""A hostile host lies about the agent it enrolled: it says it enrolled as another machine's
agent, one that is online at the wanted version. The deployment believes only the agent that
enrolled with this host's one-time token, so it fails the host and never records the other
agent as deployed there."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sonde.server.storage.tables import deployment_hosts, enrollment_tokens
from sonde.v1 import console_pb2_grpc, deploy_pb2
from tests.integration.deploy.deploy_support import (
    audit_rows,
    finished,
    results,
    ssh_target,
    trust,
)
from tests.support.deploy_hosts import TestHost, fleet_options, provision_agent, start_host
from tests.support.live_server import LiveServer, live_server
from tests.support.sshd import ed25519_pair

# The host's python answers the enroll step with the id it read from lie.txt, and runs the
# real interpreter for everything else.
LIAR = """#!/bin/sh
case "$2" in
  *"from sonde.agent.enroll"*) cat >/dev/null; printf '{"agent_id": "%s"}' "$(cat {lie})"; exit 0;;
esac
exec {python} "$@"
"""


@pytest.fixture
async def live(
    sqlite_template: Path, tmp_path: Path, wheelhouse: Path
) -> AsyncIterator[LiveServer]:
    target = tmp_path / "sonde.db"
    shutil.copyfile(sqlite_template, target)
    server = live_server(
        tmp_path / "server", f"sqlite+aiosqlite:///{target}", wheelhouse=wheelhouse
    )
    async with server as running:
        yield running


@pytest.fixture
def hosts(tmp_path: Path, agent_template: Path) -> Iterator[tuple[TestHost, TestHost]]:
    honest, liar = start_host(tmp_path / "hosts"), start_host(tmp_path / "hosts")
    for host in (honest, liar):
        provision_agent(host, agent_template)
    try:
        yield honest, liar
    finally:
        honest.stop()
        liar.stop()


def _request(host: TestHost, root: Path, online_s: int) -> deploy_pb2.StartDeploymentRequest:
    options = fleet_options(root)
    return deploy_pb2.StartDeploymentRequest(
        hosts=[ssh_target(host.sshd, "fleet-key")],
        options=deploy_pb2.DeployOptions(
            prefix=options.prefix,
            state_dir=options.state_dir,
            unit_dir=options.unit_dir,
            online_timeout_s=online_s,
            min_free_mb=50,
        ),
    )


async def test_a_host_claiming_another_agent_is_not_believed(
    live: LiveServer, hosts: tuple[TestHost, TestHost], tmp_path: Path
) -> None:
    from sonde.v1 import console_pb2

    honest, liar = hosts
    private, public = ed25519_pair()
    for host in hosts:
        host.authorize(public)
    async with live.console_channel(live.admin_token) as channel:
        console = console_pb2_grpc.ConsoleServiceStub(channel)
        await console.AddCredential(
            console_pb2.AddCredentialRequest(
                name="fleet-key",
                kind=console_pb2.CREDENTIAL_KIND_SSH_PRIVATE_KEY,
                user="root",
                hosts=["127.0.0.1"],
                secret=private.decode(),
            )
        )
        for host in hosts:
            await trust(console, host.sshd)
        first = await console.StartDeployment(_request(honest, tmp_path / "hosts", 30))
        done = await finished(console, first.deployment.id)
        (honest_row,) = done.hosts
        assert results(done) == {honest_row.address: ("SUCCEEDED", "")}, done

        python = liar.prefix / "bin" / "python"
        real = liar.prefix / "bin" / "python3"  # the venv's own: its site-packages with it
        python.unlink()
        lie = liar.folder / "lie.txt"
        lie.write_text(honest_row.agent_id)
        python.write_text(LIAR.replace("{lie}", str(lie)).replace("{python}", str(real)))
        python.chmod(0o755)
        # A script cannot be another script's interpreter: sonde-agent keeps a real one, so
        # preflight still finds the agent installed and the install is skipped.
        script = liar.prefix / "bin" / "sonde-agent"
        script.write_text(f"#!{real}\n" + script.read_text().split("\n", 1)[1])

        second = await console.StartDeployment(_request(liar, tmp_path / "hosts", 3))
        lied = await finished(console, second.deployment.id)
        (liar_row,) = lied.hosts
        assert results(lied) == {liar_row.address: ("FAILED", "online")}, liar_row
        assert liar_row.found_version == "0.1.0"  # the lie was told to the enroll step
        assert "no agent enrolled with its one-time token has connected" in liar_row.reason
        assert liar_row.agent_id == ""  # never the honest host's agent
        # The token it was given and never used is taken back, with the host's audit row.
        token = await live.db.read(
            lambda c: c.execute(
                select(enrollment_tokens)
                .join(deployment_hosts, deployment_hosts.c.token_id == enrollment_tokens.c.id)
                .where(deployment_hosts.c.deployment_id == lied.id)
            ).one()
        )
        assert token.revoked_at is not None
        assert token.uses_left == 1
        (ended,) = [
            row
            for row in await audit_rows(live, "agents.deploy.host")
            if row["deployment_id"] == lied.id
        ]
        assert ended["token_revoked"] == token.id

        # The same command for both again: the honest host is skipped, the liar is not.
        both = deploy_pb2.StartDeploymentRequest(
            hosts=[ssh_target(honest.sshd, "fleet-key"), ssh_target(liar.sshd, "fleet-key")],
            options=_request(liar, tmp_path / "hosts", 3).options,
        )
        again = await finished(console, (await console.StartDeployment(both)).deployment.id)
        assert results(again) == {
            honest_row.address: ("SKIPPED", ""),
            liar_row.address: ("FAILED", "online"),
        }

        # Its next answer is terminal escapes: stored inert, as an agent's text is.
        python.write_text(
            "#!/bin/sh\nprintf '\\033[2J\\033]0;owned\\007enroll failed\\n' >&2\nexit 1\n"
        )
        hostile = await finished(
            console,
            (await console.StartDeployment(_request(liar, tmp_path / "hosts", 3))).deployment.id,
        )
        (row,) = hostile.hosts
        assert results(hostile) == {row.address: ("FAILED", "enroll")}
        assert "enroll failed" in row.reason
        assert "\x1b" not in row.reason
        assert "\x07" not in row.reason
