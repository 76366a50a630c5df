"""The web form's listener against clients that hold connections (server/web/connections.py):
the real WebListener (aiohttp, TLS with a certificate the test makes) on 127.0.0.1 port 0,
clients on real sockets from 127.0.0.1 and 127.0.0.2, limits made small for the test."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sonde.server.web.connections import WebConnectionLimits
from sonde.server.web.listener import WebListener
from tests.support.idle_connections import closed_by_server, wait_all_closed
from tests.support.listener_certificates import listener_tls

HEAD_TIMEOUT_S = 0.6
LIMITS = WebConnectionLimits(
    head_timeout_s=HEAD_TIMEOUT_S, idle_timeout_s=5.0, max_connections=6, max_per_address=3
)
STYLE_REQUEST = b"GET /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n"


@dataclass
class WebSide:
    listener: WebListener
    port: int
    client_tls: ssl.SSLContext

    def connect(self, source: str = "127.0.0.1") -> ssl.SSLSocket:
        """A TLS connection from `source` that has sent nothing yet."""
        raw = socket.create_connection(("127.0.0.1", self.port), 10, (source, 0))
        return self.client_tls.wrap_socket(raw, server_hostname="localhost")

    def style(self, source: str = "127.0.0.1") -> int:
        """GET /style.css on a connection of its own from `source`: the status."""
        connection = self.connect(source)
        with connection:
            connection.sendall(STYLE_REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            status_line = answer_of(connection).split(b"\r\n", 1)[0]
        return int(status_line.split()[1])


def answer_of(connection: ssl.SSLSocket) -> bytes:
    """What the server sent until it closed the connection."""
    connection.settimeout(10)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[WebSide]:
    tls = listener_tls(tmp_path, ["localhost", "127.0.0.1"], label="web")
    chain = tmp_path / "web-server.pem"
    listener = WebListener(chain, chain, mails_requesters=False, limits=LIMITS)
    port = await listener.start("127.0.0.1:0")
    client_tls = ssl.create_default_context(cafile=str(tls.ca_file))
    try:
        yield WebSide(listener, port, client_tls)
    finally:
        await listener.stop()


async def test_a_connection_that_sends_no_head_is_closed_while_others_are_served(
    web: WebSide,
) -> None:
    silent = await asyncio.to_thread(web.connect)
    opened = time.monotonic()
    assert await asyncio.to_thread(web.style) == 200
    took = await asyncio.to_thread(wait_all_closed, [silent], 10)
    assert HEAD_TIMEOUT_S * 0.8 <= time.monotonic() - opened <= 5, took
    assert web.listener.connections.open == 0


async def test_a_head_dripped_byte_by_byte_is_cut_at_the_deadline(web: WebSide) -> None:
    dripping = await asyncio.to_thread(web.connect)

    def drip() -> float:
        started = time.monotonic()
        for byte in STYLE_REQUEST[:-2]:  # never the head's last line end
            try:
                dripping.sendall(bytes([byte]))
            except OSError:
                break
            if closed_by_server(dripping):
                break
            time.sleep(0.05)
        return time.monotonic() - started

    took = await asyncio.to_thread(drip)
    # Bytes kept coming, and still the head's deadline closed it, well before the drip's end.
    assert took < len(STYLE_REQUEST) * 0.05 * 0.8
    assert await asyncio.to_thread(wait_all_closed, [dripping], 5) >= 0


async def test_a_kept_connection_gets_the_deadline_again_for_each_head(web: WebSide) -> None:
    kept = await asyncio.to_thread(web.connect)

    def two_requests_then_silence() -> tuple[bytes, bytes, bool]:
        kept.settimeout(10)
        kept.sendall(STYLE_REQUEST)
        first = kept.recv(65536)
        time.sleep(HEAD_TIMEOUT_S / 2)
        kept.sendall(STYLE_REQUEST)
        second = kept.recv(65536)
        # More than one head's time since the connection opened: served, as the deadline
        # starts again after each answer. Now nothing more comes, and it is closed.
        return first, second, wait_all_closed([kept], 5) >= 0

    first, second, closed = await asyncio.to_thread(two_requests_then_silence)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert second.startswith(b"HTTP/1.1 200 ")
    assert closed


async def test_an_address_over_its_cap_is_told_why_and_another_address_is_served(
    web: WebSide, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sonde.server.web.connections")
    held = [await asyncio.to_thread(web.connect) for _ in range(LIMITS.max_per_address)]
    await asyncio.sleep(0.1)  # the server has taken each one
    assert web.listener.connections.open == LIMITS.max_per_address

    one_more = await asyncio.to_thread(web.connect)
    answer = await asyncio.to_thread(answer_of, one_more)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Too many connections from your address at once" in answer
    again = await asyncio.to_thread(web.connect)
    assert b" 503 " in await asyncio.to_thread(answer_of, again)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "web form: refusing connections from 127.0.0.1: it holds 3 already "
        "(max_web_connections_per_address)"
    ]

    assert await asyncio.to_thread(web.style, "127.0.0.2") == 200
    held[0].close()
    await asyncio.sleep(0.2)
    assert await asyncio.to_thread(web.style) == 200  # under its cap again
    for connection in held[1:]:
        connection.close()


async def test_the_listener_over_its_cap_refuses_every_address(web: WebSide) -> None:
    sources = [f"127.0.0.{n}" for n in range(2, 2 + LIMITS.max_connections)]
    held = [await asyncio.to_thread(web.connect, source) for source in sources]
    await asyncio.sleep(0.1)
    assert web.listener.connections.open == LIMITS.max_connections
    refused = await asyncio.to_thread(web.connect, "127.0.0.99")
    answer = await asyncio.to_thread(answer_of, refused)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"The helpdesk's web form is busy" in answer
    # The held ones send nothing: the head's deadline frees the listener for the others.
    await asyncio.to_thread(wait_all_closed, held, 5)
    await asyncio.sleep(0.1)
    assert web.listener.connections.open == 0
    assert await asyncio.to_thread(web.style, "127.0.0.99") == 200


async def test_stopping_closes_every_connection_at_once(tmp_path: Path, web: WebSide) -> None:
    held = [await asyncio.to_thread(web.connect) for _ in range(3)]
    started = time.monotonic()
    await web.listener.stop()
    assert time.monotonic() - started < HEAD_TIMEOUT_S
    await asyncio.to_thread(wait_all_closed, held, 2)
