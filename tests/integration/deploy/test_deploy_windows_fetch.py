"""Push install with the Windows host fetching the MSI from the server's package listener over
HTTPS (server/api/package_listener.py, server/remote/msi_fetch.py), against the WinRS endpoint
whose fetch.ps1 does a real HTTPS GET with the certificate pinned (tests/support/winrs_deploy.py).

A host that reaches the listener fetches it, and nothing is uploaded over WinRM; one behind a
firewall has it streamed; `fetch` asked for a host that cannot reach it fails preflight and
says what to do. A machine in the middle is refused: one showing another certificate before
any byte is kept, and one showing the server's own certificate (its key stolen) with other
bytes by the hash; msiexec never runs on either.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from sonde.server import pki
from sonde.server.api.package_listener import PackageListener
from sonde.server.remote import winrm_powershell as ps
from sonde.server.remote.msi_fetch import PackageOffer, fetch_on_host
from sonde.server.remote.windows_install import load_msi, preflight_windows
from sonde.server.storage.tables import agents
from sonde.v1 import console_pb2_grpc, deploy_pb2
from tests.integration.deploy.deploy_support import finished, results, windows_lab
from tests.integration.remote.test_winrm_shell import _real_host, opened
from tests.support.live_server import LiveServer, live_server
from tests.support.winrs_deploy import WindowsHost, start_windows_host

USER, PASSWORD = "helpdesk", "a-throwaway-winrs-password"
MSI_BYTES = 700 * 1024
MSI_PATH = "C:\\Windows\\Temp\\sonde-agent-0.1.0.msi"


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    msi = tmp_path / "sonde-agent-0.1.0.msi"
    msi.write_bytes(os.urandom(MSI_BYTES))
    async with live_server(
        tmp_path / "server", db_url, msi=msi, package_address="127.0.0.1:0"
    ) as running:
        yield running


@pytest.fixture
def windows(tmp_path: Path) -> Iterator[list[WindowsHost]]:
    hosts = [start_windows_host(tmp_path / f"win-{n}", USER, PASSWORD) for n in range(2)]
    yield hosts
    for host in hosts:
        host.stop()


class RogueListener:
    """A TLS server in the middle: it answers every request 200 with other bytes of the
    MSI's length, showing the certificate it is given."""

    def __init__(self, certificate: Path, key: Path) -> None:
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(certificate, key)
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        self.served = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.socket.accept()
            except OSError:
                return
            try:
                with self.tls.wrap_socket(client, server_side=True) as tls:
                    tls.recv(8192)
                    body = os.urandom(MSI_BYTES)
                    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n"
                    tls.sendall(head.encode() + body)
                    self.served += 1
            except (OSError, ssl.SSLError):
                continue  # a client that refused our certificate

    def close(self) -> None:
        self.socket.close()


async def _deploy(
    console: console_pb2_grpc.ConsoleServiceAsyncStub, hosts: list[WindowsHost], delivery: str
) -> deploy_pb2.Deployment:
    request = deploy_pb2.StartDeploymentRequest(
        hosts=[
            deploy_pb2.DeployTarget(
                transport=deploy_pb2.DEPLOY_TRANSPORT_WINRM,
                address=f"{USER}@{host.address}",
                credential="lab-winrm",
            )
            for host in hosts
        ],
        options=deploy_pb2.DeployOptions(online_timeout_s=30, msi_delivery=delivery),
    )
    return await finished(console, (await console.StartDeployment(request)).deployment.id)


def _uploads(host: WindowsHost) -> int:
    return sum(command.script == ps.RECEIVER for command in host.endpoint.finished)


async def test_hosts_fetch_the_msi_over_https_where_they_reach_the_server_and_else_get_it_streamed(
    live: LiveServer, windows: list[WindowsHost], tmp_path: Path
) -> None:
    fetcher, walled = windows
    walled.reaches_server = False
    async with live.console_channel(live.admin_token) as channel:
        console = console_pb2_grpc.ConsoleServiceStub(channel)
        await windows_lab(live, console, [host.address for host in windows], USER, PASSWORD)
        # Fetch is asked for: the host behind a firewall fails preflight, nothing installed.
        refused = await _deploy(console, [walled], "fetch")
        assert results(refused) == {f"{USER}@{walled.address}": ("FAILED", "package")}, refused
        assert "--msi-delivery stream" in refused.hosts[0].reason
        assert walled.installs == []
        assert walled.files == {}

        done = await _deploy(console, windows, "")
        assert results(done) == {
            f"{USER}@{fetcher.address}": ("SUCCEEDED", ""),
            f"{USER}@{walled.address}": ("SUCCEEDED", ""),
        }, done
        delivered = {host.address: host.msi_delivery for host in done.hosts}
        assert delivered == {
            f"{USER}@{fetcher.address}": "fetched",
            f"{USER}@{walled.address}": "streamed",
        }
        # The fetcher got it over HTTPS from the listener, whole; nothing crossed WinRM.
        (url,) = fetcher.fetches
        assert url == f"https://{live.server.package_address}/packages/" + (
            f"{_sha256(tmp_path / 'sonde-agent-0.1.0.msi')}/sonde-agent-0.1.0.msi"
        )
        assert fetcher.files[MSI_PATH] == (tmp_path / "sonde-agent-0.1.0.msi").read_bytes()
        assert _uploads(fetcher) == 0
        assert _uploads(walled) == 1
        assert walled.fetches == []
        assert len(fetcher.installs) == 1
        assert len(walled.installs) == 1
        fetched_agent = next(h.agent_id for h in done.hosts if h.msi_delivery == "fetched")

        # A machine in the middle with its own certificate: refused by the pin.
        other = pki.CertificateAuthority.create("Not Sonde")
        certificate, key = other.issue_server(["127.0.0.1"])
        (tmp_path / "other.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (tmp_path / "other.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        paths = live.server.options.data.pki
        for rogue_certificate, rogue_key, check in (
            (tmp_path / "other.crt", tmp_path / "other.key", "pinned certificate"),
            (paths.server_certificate, paths.server_key, "SHA-256"),
        ):
            rogue = RogueListener(rogue_certificate, rogue_key)
            fetcher.diverted_to = ("127.0.0.1", rogue.port)
            fetcher.installed = ""  # as if uninstalled: the deployment does not skip it
            fetcher.files.clear()
            try:
                await _agent_removed(live, fetcher, fetched_agent)
                middle = await _deploy(console, [fetcher], "fetch")
            finally:
                rogue.close()
            (row,) = middle.hosts
            assert (deploy_pb2.DeployHostResult.Name(row.result), row.failed_check) == (
                "DEPLOY_HOST_RESULT_FAILED",
                "install",
            ), middle
            assert check in row.reason, row.reason
            assert fetcher.files == {}  # nothing kept
            assert len(fetcher.installs) == 1  # msiexec never ran again
        assert rogue.served == 1  # the one with the stolen key sent its bytes; they were refused


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _agent_removed(live: LiveServer, host: WindowsHost, agent_id: str) -> None:
    """Its agent stopped and seen offline, as on a machine whose agent was removed."""
    for process in host.processes:
        process.terminate()
        process.wait(10)
    deadline = time.monotonic() + 20
    while await live.db.read(
        lambda c: c.execute(select(agents.c.connected).where(agents.c.id == agent_id)).scalar()
    ):
        assert time.monotonic() < deadline, "the stopped agent still reads as connected"
        await asyncio.sleep(0.1)


async def test_real_windows_host_fetches_with_the_pin(tmp_path: Path) -> None:
    """fetch.ps1 in real Windows PowerShell: HttpWebRequest's certificate callback, Schannel,
    Get-FileHash. Needs SONDE_WINRM_* (tests/integration/remote/test_winrm_shell.py) and
    SONDE_PACKAGE_LISTEN, an address of this machine the Windows host reaches (HOST:PORT)."""
    configured = _real_host()
    listen = os.environ.get("SONDE_PACKAGE_LISTEN", "")
    if configured is None or not listen:
        pytest.skip(
            "no real Windows host: set SONDE_WINRM_ENDPOINT, SONDE_WINRM_USER, "
            "SONDE_WINRM_PASSWORD and SONDE_PACKAGE_LISTEN (this machine's HOST:PORT)"
        )
    host, password = configured
    paths = pki.PkiPaths(tmp_path / "pki")
    paths.root.mkdir(mode=0o700)
    pki.initialise(paths, [listen.rpartition(":")[0]])
    msi_file = tmp_path / "sonde-agent-0.1.0.msi"
    msi_file.write_bytes(os.urandom(MSI_BYTES))
    msi = load_msi(msi_file)
    listener = PackageListener(msi, paths.server_certificate, paths.server_key)
    await listener.start(listen)
    shell = await opened(host, password)
    target = "C:\\Windows\\Temp\\sonde-fetch-test.msi"
    try:
        offer = listener.offer(listen)
        found = await preflight_windows(shell, min_free_bytes=0, msi_size=1, package_url=offer.url)
        assert found.reaches_server
        fetched = await fetch_on_host(shell, offer, sha256=msi.sha256, size=MSI_BYTES, path=target)
        assert fetched.exit_code == 0, fetched.said
        assert listener.downloads == 1
        wrong_pin = PackageOffer(offer.url, "00" * 32)
        refused = await fetch_on_host(
            shell, wrong_pin, sha256=msi.sha256, size=MSI_BYTES, path=target
        )
        assert refused.exit_code == 3, refused.said
        wrong_hash = await fetch_on_host(shell, offer, sha256="0" * 64, size=MSI_BYTES, path=target)
        assert wrong_hash.exit_code == 2, wrong_hash.said
    finally:
        await shell.close()
        await listener.stop()
