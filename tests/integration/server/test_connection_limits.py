"""The connection limits on a real grpc.aio TLS server with the Sonde listeners' options.

Each limit is one gRPC core channel argument (server/api/connection_limits.py) or the
per-address scan (server/api/address_caps.py); these tests show that grpcio really applies
them, and that what must stay open (a call in flight, a channel used again) does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest

from sonde.server.api.address_caps import AddressCap, enforced_here, listener_connections
from sonde.server.api.app import COMMON_OPTIONS
from sonde.server.api.connection_limits import listener_options
from sonde.server.pki import PkiPaths, initialise
from sonde.server.settings import ConnectionLimits
from tests.support.idle_connections import (
    HalfOpen,
    closing_all,
    count_open,
    open_connections,
    wait_all_closed,
)

SHORT = ConnectionLimits(handshake_timeout_s=1.0, idle_connection_timeout_s=2.0)
SERVER_NAME = "localhost"


@dataclass
class Listener:
    port: int
    ca_file: Path

    def channel(self) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(self.ca_file.read_bytes())
        options = [("grpc.ssl_target_name_override", SERVER_NAME)]
        return grpc.aio.secure_channel(f"127.0.0.1:{self.port}", credentials, options)


async def _wait(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    """Answers after the seconds the request names: a call that stays in flight."""
    await asyncio.sleep(float(request or b"0"))
    return request


async def serve(
    tmp_path: Path, limits: ConnectionLimits, max_connections: int
) -> AsyncIterator[Listener]:
    paths = PkiPaths(tmp_path / "pki")
    initialise(paths, [SERVER_NAME])
    server = grpc.aio.server(options=COMMON_OPTIONS + listener_options(limits, max_connections))
    handler = grpc.method_handlers_generic_handler(
        "test.Desk", {"Wait": grpc.unary_unary_rpc_method_handler(_wait)}
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(paths.server_key.read_bytes(), paths.server_certificate.read_bytes())]
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield Listener(port, paths.ca_certificate)
    finally:
        await server.stop(0)


@pytest.fixture
async def short_limits(tmp_path: Path) -> AsyncIterator[Listener]:
    async for listener in serve(tmp_path, SHORT, max_connections=1_000):
        yield listener


async def call_wait(channel: grpc.aio.Channel, seconds: float) -> bytes:
    wait: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Desk/Wait")
    return await wait(str(seconds).encode(), timeout=seconds + 20)


@pytest.mark.parametrize("kind", [HalfOpen.TCP, HalfOpen.TLS, HalfOpen.HTTP2])
async def test_connections_that_never_call_are_closed_by_the_server(
    short_limits: Listener, kind: HalfOpen
) -> None:
    # Without the limits gRPC core keeps them 120 s (handshake) or for ever (idle).
    connections = await asyncio.to_thread(
        open_connections, short_limits.port, kind, 50, short_limits.ca_file, SERVER_NAME
    )
    with closing_all(connections):
        await asyncio.to_thread(wait_all_closed, connections, 20.0)


async def test_a_call_in_flight_outlives_the_idle_limit_and_an_idle_channel_reconnects(
    short_limits: Listener,
) -> None:
    async with short_limits.channel() as channel:
        # In flight for twice the idle limit, as an agent's Session always is.
        assert await call_wait(channel, 2 * SHORT.idle_connection_timeout_s) == b"4.0"
        await asyncio.sleep(SHORT.idle_connection_timeout_s + 2)  # idle: the server closes it
        assert await call_wait(channel, 0) == b"0"  # a technician's next call, unaware


async def test_the_listener_cap_closes_connections_past_it_at_once(tmp_path: Path) -> None:
    async for listener in serve(tmp_path, ConnectionLimits(), max_connections=5):
        connections = await asyncio.to_thread(open_connections, listener.port, HalfOpen.TCP, 20)
        with closing_all(connections):
            # Within the 20 s handshake timeout: only the cap can have closed these.
            await asyncio.sleep(1.0)
            assert await asyncio.to_thread(count_open, connections) == 5


@pytest.mark.skipif(not enforced_here(), reason="the per-address cap reads /proc/net/tcp")
async def test_an_address_past_its_cap_loses_its_newest_connections(tmp_path: Path) -> None:
    async for listener in serve(tmp_path, ConnectionLimits(), max_connections=1_000):
        async with listener.channel() as channel:
            held = asyncio.ensure_future(call_wait(channel, 3))  # the oldest: a session
            await asyncio.sleep(0.5)
            cap = AddressCap(listener.port, 10, "the test listener")
            assert cap.enforce() == 0  # a scan before the flood: the session is seen first
            newer = await asyncio.to_thread(open_connections, listener.port, HalfOpen.TCP, 30)
            with closing_all(newer):
                await asyncio.sleep(0.5)  # accepted by the server
                assert cap.enforce() == 21
                assert len(list(listener_connections(listener.port))) <= 10
                # The FINs of the 21 cut connections reach the client side soon, not at once.
                open_left = await asyncio.to_thread(count_open, newer)
                for _ in range(50):
                    if open_left == 9:
                        break
                    await asyncio.sleep(0.1)
                    open_left = await asyncio.to_thread(count_open, newer)
                assert open_left == 9
                assert await held == b"3"
                assert cap.enforce() == 0
