"""The package listener: HTTPS that serves the agent's MSI to the Windows hosts a push install
has fetch it (server/remote/msi_fetch.py), and nothing else.

One path answers, /packages/<the MSI's SHA-256>/<its file name>, to GET and HEAD; every other
path is 404 and every other method 405. The MSI holds no secret (the enrollment string is an
install property given later over WinRM), so no login is asked; the URL names the hash the
host checks. The listener shows the server's own certificate (pki/server.crt), which
fetch.ps1 pins by its SHA-256.

Bounded against a hostile or broken client: the request head is at most 8 KiB and must arrive
within 10 s (the TLS handshake too), at most MAX_CLIENTS downloads run at once (the next gets
503 with Retry-After), and each chunk written must be taken within 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sonde.server.api.listeners import CannotListen, bind_failure_reason
from sonde.server.remote.msi_fetch import PackageOffer
from sonde.server.remote.windows_install import AgentMsi
from sonde.server.settings import split_address

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8 * 1024
HEAD_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 60.0
MAX_CLIENTS = 32
CHUNK_BYTES = 256 * 1024


def package_path(msi: AgentMsi) -> str:
    return f"/packages/{msi.sha256}/{msi.filename}"


def certificate_sha256(certificate_pem: bytes) -> str:
    """The SHA-256 of the certificate's DER, upper-case hex: what fetch.ps1 compares."""
    der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest().upper()


def _response(status: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close", "X-Content-Type-Options: nosniff"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if "Content-Length" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: text/plain; charset=utf-8")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class PackageListener:
    """Start with `await listener.start(address)`; `offer(name)` for deployments; stop()."""

    def __init__(self, msi: AgentMsi, certificate: Path, key: Path) -> None:
        self._msi = msi
        self._path = package_path(msi)
        self._certificate_pem = certificate.read_bytes()
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls.load_cert_chain(certificate, key)
        self._server: asyncio.Server | None = None
        self._clients = asyncio.Semaphore(MAX_CLIENTS)
        self.port = 0
        self.downloads = 0  # whole MSIs sent, since start

    async def start(self, address: str) -> int:
        host, port = split_address(address)
        try:
            self._server = await asyncio.start_server(
                self._serve,
                host or None,
                port,
                ssl=self._tls,
                ssl_handshake_timeout=HEAD_TIMEOUT_S,
                limit=MAX_HEAD_BYTES,
            )
        except OSError:
            raise CannotListen(address, "packages", bind_failure_reason(address)) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def offer(self, address: str) -> PackageOffer:
        """The URL hosts fetch from, `address` (HOST:PORT) being how they reach this listener."""
        return PackageOffer(
            f"https://{address}{self._path}",
            certificate_sha256(self._certificate_pem),
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            if self._clients.locked():
                writer.write(_response("503 Service Unavailable", {"Retry-After": "5"}, b"busy\n"))
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
                return
            async with self._clients:
                await self._answer(reader, writer, peer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away or stalled: nothing of ours to keep
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            writer.write(_response("431 Request Header Fields Too Large", body=b"too long\n"))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
            return
        words = head.split(b"\r\n", 1)[0].split(b" ")
        if len(words) != 3 or not words[2].startswith(b"HTTP/1."):
            writer.write(_response("400 Bad Request", body=b"not an HTTP/1 request\n"))
        elif words[0] not in {b"GET", b"HEAD"}:
            writer.write(_response("405 Method Not Allowed", {"Allow": "GET, HEAD"}))
        elif words[1] != self._path.encode("ascii"):
            writer.write(_response("404 Not Found", body=b"only the agent's MSI is served\n"))
        else:
            await self._send(writer, send_body=words[0] == b"GET", peer=peer)
            return
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)

    async def _send(self, writer: asyncio.StreamWriter, *, send_body: bool, peer: object) -> None:
        data = self._msi.data
        headers = {
            "Content-Type": "application/x-msi",
            "Content-Length": str(len(data)),
            "Content-Disposition": f'attachment; filename="{self._msi.filename}"',
            "X-Sonde-SHA256": self._msi.sha256,
        }
        writer.write(_response("200 OK", headers))
        started = time.monotonic()
        if send_body:
            view = memoryview(data)
            for at in range(0, len(data), CHUNK_BYTES):
                writer.write(view[at : at + CHUNK_BYTES])
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        if send_body:
            self.downloads += 1
            log.info(
                "sent %s to %s (%d bytes in %.1f s)",
                self._msi.filename,
                peer,
                len(data),
                time.monotonic() - started,
            )
