"""LISTEN on PostgreSQL: wake-ups from every replica's transactions reach this replica.

One dedicated asyncpg connection per replica. When it drops, it reconnects with backoff and,
since notifications sent meanwhile are lost, wakes every local session and waiter to look at
the database again (the rows are the truth; a wake-up only says "look now").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from sonde.server.domain.wakeups import CHANNEL, Wake, Wakeups

log = logging.getLogger(__name__)

RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """postgresql+asyncpg://... as the plain DSN asyncpg.connect takes."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


class WakeListener:
    def __init__(self, url: str, wakeups: Wakeups) -> None:
        self._dsn = asyncpg_dsn(url)
        self._wakeups = wakeups
        self.listening = asyncio.Event()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        wake = Wake.decode(payload)
        if wake is None:
            log.warning("ignored a malformed wake-up %r", payload[:100])
            return
        self._wakeups.receive(wake)

    async def run(self) -> None:
        """Listen until cancelled."""
        failures = 0
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                delay = RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S) - 1)]
                failures += 1
                log.warning("cannot LISTEN for wake-ups (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                continue
            try:
                closed = asyncio.Event()
                connection.add_termination_listener(lambda _c, ended=closed: ended.set())
                await connection.add_listener(CHANNEL, self._on_notify)
                if failures:
                    self._wakeups.wake_all_sessions()
                failures = 0
                self.listening.set()
                await closed.wait()
                log.warning("the wake-up connection to PostgreSQL closed; reconnecting")
                failures = 1
            finally:
                self.listening.clear()
                if not connection.is_closed():
                    await connection.close(timeout=2)
