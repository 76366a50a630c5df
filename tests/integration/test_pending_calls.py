"""Calls that reach the server while its event loop is busy wait for it; none is thrown away.

gRPC core keeps the calls that arrived before the asyncio server asked for them (it asks one
at a time). With core's defaults it cancels new ones at random past 1,000 of them and all
past 3,000, which in a connect storm threw away agent sessions whose TLS handshake was done.
Here a real grpc.aio server with the Sonde listeners' options has its loop held up by one
call while 3,500 more arrive on 127.0.0.1; once the loop is free, every one is answered.
"""

from __future__ import annotations

import asyncio
import threading

import grpc
import grpc.aio
import pytest

from sonde.server.api.app import COMMON_OPTIONS

pytestmark = pytest.mark.slow

CALLS = 3_500  # over core's default hard limit (3,000)


async def test_calls_waiting_for_a_busy_loop_are_all_answered() -> None:
    all_sent = threading.Event()

    async def hold(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        # Blocks the loop itself, as a storm's work does: nothing else is taken meanwhile.
        all_sent.wait(30)
        threading.Event().wait(1.0)  # the last calls sent reach the server
        return b"held"

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "test.Pending",
        {
            "Hold": grpc.unary_unary_rpc_method_handler(hold),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
        },
    )
    server = grpc.aio.server(options=COMMON_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    outcomes: list[str] = []

    def client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            hold_call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/test.Pending/Hold"
            )
            echo_call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/test.Pending/Echo"
            )
            held = hold_call.future(b"", timeout=60)
            futures: list[grpc.Future[bytes]] = [
                echo_call.future(str(n).encode(), timeout=60) for n in range(CALLS)
            ]
            all_sent.set()
            for n, future in enumerate(futures):
                try:
                    outcomes.append("ok" if future.result() == str(n).encode() else "wrong")
                except grpc.RpcError as error:
                    outcomes.append(error.code().name)
            held.result()

    thread = threading.Thread(target=client)
    thread.start()
    try:
        while thread.is_alive():
            await asyncio.sleep(0.1)
    finally:
        all_sent.set()
        thread.join(60)
        await server.stop(0)
    assert outcomes.count("ok") == CALLS, {name: outcomes.count(name) for name in set(outcomes)}
