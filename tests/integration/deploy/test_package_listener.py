"""The package listener over real TLS (server/api/package_listener.py): the MSI at its one
path, with the length and hash a host checks; every other request refused saying why; a
client that stalls or sends too much cut off; past its limit of downloads, 503."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sonde.server import pki
from sonde.server.api import package_listener
from sonde.server.api.package_listener import PackageListener, certificate_sha256
from sonde.server.remote.windows_install import load_msi

MSI_BYTES = 3 * 1024 * 1024 + 17  # several chunks and a ragged end


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[PackageListener]:
    paths = pki.PkiPaths(tmp_path / "pki")
    paths.root.mkdir(mode=0o700)
    pki.initialise(paths, ["127.0.0.1"])
    msi = tmp_path / "sonde-agent-0.2.0.msi"
    msi.write_bytes(os.urandom(MSI_BYTES))
    running = PackageListener(load_msi(msi), paths.server_certificate, paths.server_key)
    await running.start("127.0.0.1:0")
    yield running
    await running.stop()


def _client() -> ssl.SSLContext:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE  # the pin decides, as fetch.ps1
    return tls


def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes, bytes]:
    """(status, headers, body, the certificate shown as DER)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=_client(), timeout=10)
    try:
        connection.connect()
        assert isinstance(connection.sock, ssl.SSLSocket)
        shown = connection.sock.getpeercert(binary_form=True) or b""
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read(), shown
    finally:
        connection.close()


def _raw(port: int, data: bytes) -> bytes:
    plain = socket.create_connection(("127.0.0.1", port), 10)
    with _client().wrap_socket(plain) as tls:
        tls.sendall(data)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        return answer


async def test_the_msi_is_served_whole_at_its_hash_path_under_the_pinned_certificate(
    listener: PackageListener, tmp_path: Path
) -> None:
    offer = listener.offer(f"127.0.0.1:{listener.port}")
    data = (tmp_path / "sonde-agent-0.2.0.msi").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    path = f"/packages/{digest}/sonde-agent-0.2.0.msi"
    assert offer.url == f"https://127.0.0.1:{listener.port}{path}"

    status, headers, body, shown = await asyncio.to_thread(_get, listener.port, path)
    assert status == 200
    assert body == data
    assert headers["Content-Length"] == str(len(data))
    assert headers["X-Sonde-SHA256"] == digest
    assert hashlib.sha256(shown).hexdigest().upper() == offer.certificate_sha256
    server_pem = (tmp_path / "pki" / "server.crt").read_bytes()
    assert certificate_sha256(server_pem) == offer.certificate_sha256
    assert listener.downloads == 1

    status, headers, body, _ = await asyncio.to_thread(_get, listener.port, path, "HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(data)))
    assert listener.downloads == 1  # a HEAD is not a download


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET /packages/0000/sonde-agent-0.2.0.msi HTTP/1.1", b"404"),
        (b"GET /packages/../../pki/server.key HTTP/1.1", b"404"),
        (b"GET / HTTP/1.1", b"404"),
        (b"POST /packages HTTP/1.1", b"405"),
        (b"DELETE {path} HTTP/1.1", b"405"),
        (b"GET {path}", b"400"),
        (b"\x00\xff\xfe binary", b"400"),
    ],
)
async def test_any_other_request_is_refused_saying_why(
    listener: PackageListener, request_line: bytes, status: bytes
) -> None:
    path = package_listener.package_path(listener._msi).encode()
    line = request_line.replace(b"{path}", path)
    answer = await asyncio.to_thread(_raw, listener.port, line + b"\r\nHost: x\r\n\r\n")
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == status, answer[:200]
    assert len(answer) < 1024  # never the MSI


async def test_a_head_over_8_kib_is_refused_and_a_silent_client_is_cut_off(
    listener: PackageListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = b"GET / HTTP/1.1\r\nX-Padding: " + b"a" * 9000 + b"\r\n\r\n"
    answer = await asyncio.to_thread(_raw, listener.port, huge)
    assert answer.startswith(b"HTTP/1.1 431 ")

    monkeypatch.setattr(package_listener, "HEAD_TIMEOUT_S", 0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await asyncio.to_thread(_raw, listener.port, b"GET / HTTP/1.1\r\n")  # never ends
    assert answer == b""  # closed without an answer
    assert loop.time() - started < 5


async def test_past_its_limit_of_clients_the_next_is_told_to_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(package_listener, "MAX_CLIENTS", 2)
    paths = pki.PkiPaths(tmp_path / "pki")
    paths.root.mkdir(mode=0o700)
    pki.initialise(paths, ["127.0.0.1"])
    msi = tmp_path / "sonde-agent-0.2.0.msi"
    msi.write_bytes(b"MSI")
    listener = PackageListener(load_msi(msi), paths.server_certificate, paths.server_key)
    await listener.start("127.0.0.1:0")
    held = []
    try:
        for _ in range(2):  # two clients that say nothing hold both places
            plain = socket.create_connection(("127.0.0.1", listener.port), 10)
            held.append(await asyncio.to_thread(_client().wrap_socket, plain))
        await asyncio.sleep(0.2)
        answer = await asyncio.to_thread(_raw, listener.port, b"GET / HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"Retry-After: 5" in answer
    finally:
        for client in held:
            client.close()
        await listener.stop()
