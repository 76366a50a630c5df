"""Push install over WinRM to the WinRS endpoint (tests/support/winrs_deploy.py): preflight,
the MSI streamed with its hash checked, msiexec given ENROLLMENT from the run document's
environment (never a command line), and the "service" (a real agent process) enrolled with
that host's one-use token and online. A host whose login is not an admin, and one with the
wrong password, fail saying so."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sonde.server.storage.tables import agents
from sonde.v1 import console_pb2_grpc, deploy_pb2
from tests.integration.deploy.deploy_support import finished, results, why, windows_lab
from tests.support.live_server import LiveServer, live_server
from tests.support.winrs_deploy import WindowsHost, start_windows_host

USER, PASSWORD = "helpdesk", "a-throwaway-winrs-password"


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    msi = tmp_path / "sonde-agent-0.1.0.msi"
    msi.write_bytes(os.urandom(300 * 1024))  # what msiexec reads is the stand-in's to judge
    async with live_server(tmp_path / "server", db_url, msi=msi) as running:
        yield running


@pytest.fixture
def windows(tmp_path: Path) -> Iterator[list[WindowsHost]]:
    hosts = [start_windows_host(tmp_path / f"win-{n}", USER, PASSWORD) for n in range(3)]
    yield hosts
    for host in hosts:
        host.stop()


async def test_a_push_install_over_winrm_streams_the_msi_and_the_service_comes_online(
    live: LiveServer, windows: list[WindowsHost]
) -> None:
    good, not_admin, wrong_password = windows
    not_admin.admin = False
    wrong_password.endpoint.password = "another-password"
    async with live.console_channel(live.admin_token) as channel:
        console = console_pb2_grpc.ConsoleServiceStub(channel)
        await windows_lab(live, console, [host.address for host in windows], USER, PASSWORD)
        request = deploy_pb2.StartDeploymentRequest(
            hosts=[
                deploy_pb2.DeployTarget(
                    transport=deploy_pb2.DEPLOY_TRANSPORT_WINRM,
                    address=f"{USER}@{host.address}",
                    credential="lab-winrm",
                )
                for host in windows
            ],
            options=deploy_pb2.DeployOptions(online_timeout_s=30),
        )
        done = await finished(console, (await console.StartDeployment(request)).deployment.id)
        report = results(done)
        by_address = {host.address: host for host in done.hosts}
        assert report[f"{USER}@{good.address}"] == ("SUCCEEDED", ""), why(
            done, f"{USER}@{good.address}"
        )
        # A rare "login" failure here (seen once in a loaded CI run, not reproduced) must say
        # what the host answered.
        assert report[f"{USER}@{not_admin.address}"] == ("FAILED", "admin"), why(
            done, f"{USER}@{not_admin.address}"
        )
        assert "Administrators" in by_address[f"{USER}@{not_admin.address}"].reason
        assert report[f"{USER}@{wrong_password.address}"] == ("FAILED", "credentials")

        # The MSI arrived whole (the receiver checked its hash) and msiexec got the string.
        assert list(good.files) == ["C:\\Windows\\Temp\\sonde-agent-0.1.0.msi"]
        (enrollment,) = good.installs
        assert enrollment.startswith("sonde-enroll-1.")
        # Never on a command line: not in any WinRS command or its arguments.
        for command in good.endpoint.finished:
            assert enrollment not in command.command
            assert all(enrollment not in argument for argument in command.arguments)
        assert not_admin.installs == []
        assert not_admin.files == {}

        agent_id = by_address[f"{USER}@{good.address}"].agent_id
        row = await live.db.read(
            lambda c: c.execute(select(agents).where(agents.c.id == agent_id)).one()
        )
        assert row.connected is True
        assert row.agent_version == "0.1.0"

        # Fixed: the login made an admin, the password reset. The retry touches only those.
        not_admin.admin = True
        wrong_password.endpoint.password = PASSWORD
        again = await console.StartDeployment(deploy_pb2.StartDeploymentRequest(retry=done.id))
        redone = results(await finished(console, again.deployment.id))
        assert redone == {
            f"{USER}@{good.address}": ("SKIPPED", ""),
            f"{USER}@{not_admin.address}": ("SUCCEEDED", ""),
            f"{USER}@{wrong_password.address}": ("SUCCEEDED", ""),
        }
        assert len(good.installs) == 1  # not installed again
