"""What the web listener allows one connection (docs/web.md, "Connections").

The web form shares the server's process, and so its open files, with the agents' and the
technicians' gRPC listeners. aiohttp bounds a request's body but not how long its head may
take, and it keeps an idle connection an hour: a client that opens connections and sends
nothing, or drips a head a byte at a time, would hold files until the agents could not
connect. So each connection of the web listener:

- is refused at once, with a 503 saying why, when its address (an IPv4 address or an IPv6
  /64) already holds `max_per_address` connections (0: no cap per address), or the listener
  holds `max_connections`;
- has `head_timeout_s` for its TLS handshake, then for its first request's head, and after
  each answer for the next request's head; past that it is cut (aborted: no TLS goodbye is
  waited for), a request being served never is (its body has the listener's own deadline);
- sent no request for `idle_timeout_s` after an answer, is closed (aiohttp's keep-alive).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from sonde.server.peer_addresses import http_peer_address

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class WebConnectionLimits:
    head_timeout_s: float = 20.0
    idle_timeout_s: float = 15.0
    max_connections: int = 512
    max_per_address: int = 32


def refusal(text: str) -> bytes:
    """A whole HTTP answer, 503, for a connection refused before any request of it is read."""
    body = text.encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Retry-After: 30\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


class WebConnections:
    """The web listener's protocol factory: counts its open connections, in all and per
    address, and bounds each one it admits (the module's rules). `middleware` tells each
    connection when a request of it is served."""

    def __init__(
        self, limits: WebConnectionLimits, make_handler: Callable[[], RequestHandler]
    ) -> None:
        self.limits = limits
        self.make_handler = make_handler  # aiohttp's handler for a connection admitted
        self._per_address: dict[str, int] = {}
        self._open = 0
        self._warned: set[str] = set()
        self._by_handler: dict[RequestHandler, _Connection] = {}

    @property
    def open(self) -> int:
        return self._open

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def admit(self, address: str) -> str | None:
        """None and the connection counted, or why it is refused (a line for the client)."""
        held = self._per_address.get(address, 0)
        if self.limits.max_per_address and held >= self.limits.max_per_address:
            self._warn_once(
                address,
                "web form: refusing connections from %s: it holds %d already "
                "(max_web_connections_per_address)",
                address, held,
            )  # fmt: skip
            return "Too many connections from your address at once: try again in a minute.\n"
        if self._open >= self.limits.max_connections:
            self._warn_once(
                "", "web form: refusing connections: %d open (max_web_connections)", self._open
            )
            return "The helpdesk's web form is busy: try again in a minute.\n"
        self._per_address[address] = held + 1
        self._open += 1
        return None

    def opened(self, handler: RequestHandler, connection: _Connection) -> None:
        self._by_handler[handler] = connection

    def closed(self, handler: RequestHandler, address: str) -> None:
        self._by_handler.pop(handler, None)
        held = self._per_address.pop(address, 0) - 1
        if held > 0:
            self._per_address[address] = held
        self._open -= 1
        # Said again once the address (or the listener) has been back under its cap.
        if held < self.limits.max_per_address:
            self._warned.discard(address)
        if self._open < self.limits.max_connections:
            self._warned.discard("")

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = self._by_handler.get(request.protocol)
        if connection is None:  # an application served without this factory (a test's)
            return await handler(request)
        connection.request_started()
        try:
            return await handler(request)
        finally:
            connection.request_ended()


class _Connection(asyncio.Protocol):
    """One connection: aiohttp's handler of it, and the deadline on the head it awaits."""

    def __init__(self, connections: WebConnections) -> None:
        self._connections = connections
        self._handler: RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._address = ""
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        address = http_peer_address(str(peer[0]) if peer else "")
        refused = self._connections.admit(address)
        if refused is not None:
            transport.write(refusal(refused))
            transport.close()
            return
        self._address = address
        self._transport = transport
        self._handler = self._connections.make_handler()
        self._connections.opened(self._handler, self)
        self._await_head()
        self._handler.connection_made(transport)

    def _await_head(self) -> None:
        loop = asyncio.get_running_loop()
        timeout_s = self._connections.limits.head_timeout_s
        self._head_timer = loop.call_later(timeout_s, self._head_too_late)

    def _head_too_late(self) -> None:
        self._head_timer = None
        if self._handler is not None and self._transport is not None:
            log.info(
                "web form: cut a connection from %s: no request head within %g s",
                self._address, self._connections.limits.head_timeout_s,
            )  # fmt: skip
            self._transport.abort()

    def request_started(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def request_ended(self) -> None:
        if self._handler is not None and self._head_timer is None:
            self._await_head()  # the next request's head, if the client keeps the connection

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.data_received(data)

    def eof_received(self) -> None:
        if self._handler is not None:
            self._handler.eof_received()

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._handler is not None:
            handler, self._handler = self._handler, None
            self._connections.closed(handler, self._address)
            handler.connection_lost(exc)
