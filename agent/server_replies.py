"""Requests the agent sends on its stream for its local user (`sonde-agent help`, `fix`,
`rate`), each waiting for the server's reply with the same request id."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Reply = TypeVar("Reply")


class AwaitedReplies(Generic[Reply]):
    """The requests of one kind sent and waiting for their reply, by request id."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Reply]] = {}

    async def ask(
        self, request_id: str, send: Callable[[], Awaitable[None]], timeout_s: float
    ) -> Reply:
        """Send (with `send`) and wait for the reply: TimeoutError after `timeout_s`, or the
        exception `end` was given when the stream ended first."""
        waiting: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiting

        async def send_and_wait() -> Reply:
            await send()
            return await waiting

        try:
            return await asyncio.wait_for(send_and_wait(), timeout_s)
        finally:
            self._waiting.pop(request_id, None)

    def settle(self, request_id: str, reply: Reply) -> None:
        """The server's reply; one nobody waits for (any more) is dropped."""
        waiting = self._waiting.get(request_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(reply)

    def end(self, error: Exception) -> None:
        """The stream ended: every request still waiting fails with `error`."""
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(error)
