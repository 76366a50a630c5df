"""The web form's listener against clients that hold connections (server/web/connections.py):
the real WebListener (aiohttp, TLS with a certificate the test makes) on 127.0.0.1 port 0,
clients on real sockets from 127.0.0.1 and 127.0.0.2, limits made small for the test."""

from __future__ import annotations

import asyncio
import contextlib
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

HEAD_TIMEOUT_S = 1.0
# The deadlines' tests: a head's made short.
DEADLINES = WebConnectionLimits(head_timeout_s=HEAD_TIMEOUT_S, idle_timeout_s=5.0)
# The caps' tests: no deadline cuts what they hold while they count.
PATIENT = WebConnectionLimits(
    head_timeout_s=60, idle_timeout_s=60, max_connections=6, max_per_address=3
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


async def open_count_is(web: WebSide, count: int) -> None:
    """Wait until the listener counts `count` open connections (it takes each a moment)."""
    deadline = time.monotonic() + 10
    while web.listener.connections.open != count:
        assert time.monotonic() < deadline, f"{web.listener.connections.open} open, not {count}"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def web_side(folder: Path, limits: WebConnectionLimits) -> AsyncIterator[WebSide]:
    tls = listener_tls(folder, ["localhost", "127.0.0.1"], label="web")
    chain = folder / "web-server.pem"
    listener = WebListener(chain, chain, mails_requesters=False, limits=limits)
    port = await listener.start("127.0.0.1:0")
    client_tls = ssl.create_default_context(cafile=str(tls.ca_file))
    try:
        yield WebSide(listener, port, client_tls)
    finally:
        await listener.stop()


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[WebSide]:
    async with web_side(tmp_path, DEADLINES) as side:
        yield side


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
    pause_s = 0.1

    def drip() -> float:
        started = time.monotonic()
        for byte in STYLE_REQUEST[:-2]:  # never the head's last line end
            try:
                dripping.sendall(bytes([byte]))
            except OSError:
                break
            if closed_by_server(dripping):
                break
            time.sleep(pause_s)
        return time.monotonic() - started

    took = await asyncio.to_thread(drip)
    # Bytes kept coming, and still the head's deadline cut it, well before the drip's end.
    assert took < len(STYLE_REQUEST) * pause_s * 0.75, took
    assert await asyncio.to_thread(wait_all_closed, [dripping], 5) >= 0


async def test_a_kept_connection_gets_the_deadline_again_for_each_head(web: WebSide) -> None:
    kept = await asyncio.to_thread(web.connect)

    def three_requests_then_silence() -> tuple[list[bytes], float, bool]:
        opened = time.monotonic()
        kept.settimeout(10)
        answers = []
        for pause_s in (0, HEAD_TIMEOUT_S / 2, HEAD_TIMEOUT_S / 2):
            time.sleep(pause_s)
            kept.sendall(STYLE_REQUEST)
            answers.append(kept.recv(65536))
        served_for = time.monotonic() - opened
        # Now nothing more comes, and it is closed.
        return answers, served_for, wait_all_closed([kept], 5) >= 0

    answers, served_for, closed = await asyncio.to_thread(three_requests_then_silence)
    assert [answer[:13] for answer in answers] == [b"HTTP/1.1 200 "] * 3
    # Served past one head's deadline from the connection's start: each answer restarts it.
    assert served_for > HEAD_TIMEOUT_S
    assert closed


async def test_an_address_over_its_cap_is_told_why_and_another_address_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sonde.server.web.connections")
    async with web_side(tmp_path, PATIENT) as web:
        held = [await asyncio.to_thread(web.connect) for _ in range(PATIENT.max_per_address)]
        await open_count_is(web, PATIENT.max_per_address)

        one_more = await asyncio.to_thread(web.connect)
        answer = await asyncio.to_thread(answer_of, one_more)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"Retry-After: 30\r\n" in answer
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
        await open_count_is(web, PATIENT.max_per_address - 1)
        assert await asyncio.to_thread(web.style) == 200  # under its cap again
        for connection in held[1:]:
            connection.close()


async def test_the_listener_over_its_cap_refuses_every_address(tmp_path: Path) -> None:
    async with web_side(tmp_path, PATIENT) as web:
        sources = [f"127.0.0.{n}" for n in range(2, 2 + PATIENT.max_connections)]
        held = [await asyncio.to_thread(web.connect, source) for source in sources]
        await open_count_is(web, PATIENT.max_connections)
        refused = await asyncio.to_thread(web.connect, "127.0.0.99")
        answer = await asyncio.to_thread(answer_of, refused)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"The helpdesk's web form is busy" in answer
        for connection in held:
            connection.close()
        await open_count_is(web, 0)
        assert await asyncio.to_thread(web.style, "127.0.0.99") == 200


async def test_stopping_closes_every_connection_at_once(tmp_path: Path) -> None:
    async with web_side(tmp_path, PATIENT) as web:
        held = [await asyncio.to_thread(web.connect) for _ in range(3)]
        await web.listener.stop()
        # Long before any deadline of theirs.
        assert await asyncio.to_thread(wait_all_closed, held, 10) < 10
