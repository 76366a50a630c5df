"""The PostgreSQL wake-up listener, against the real PostgreSQL on 127.0.0.1:5432.

A replica hears other replicas' changes through LISTEN. What it must survive: a notification
it cannot read, its connection being cut (notifications sent meanwhile are lost, so every local
session and waiter looks at the database again), and a database it cannot reach yet.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from sonde.server.domain.wake_listener import WakeListener, asyncpg_dsn
from sonde.server.domain.wakeups import CHANNEL, Wake, WakeKind, Wakeups

pytestmark = pytest.mark.postgres


async def eventually(what: str, probe: Callable[[], object], timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if probe():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout:g} s: {what}")


async def notify(url: str, payload: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
    finally:
        await connection.close()


@pytest.fixture
async def listening(pg_url: str) -> AsyncIterator[tuple[WakeListener, Wakeups, list[Wake]]]:
    """A listener on its own database, with one local agent session that records its wakes."""
    wakeups = Wakeups()
    heard: list[Wake] = []
    wakeups.attach_session("agent-1", heard.append)
    listener = WakeListener(pg_url, wakeups)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.listening.wait(), 20)
        yield listener, wakeups, heard
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_wake_up_it_cannot_read_is_logged_and_the_next_one_arrives(
    pg_url: str,
    listening: tuple[WakeListener, Wakeups, list[Wake]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, _, heard = listening
    caplog.set_level(logging.WARNING, logger="sonde.server.domain.wake_listener")
    await notify(pg_url, "due|agent-1")  # two fields, not three
    await notify(pg_url, "rebooted|agent-1|")  # no such kind
    await notify(pg_url, Wake(WakeKind.COMMANDS_DUE, "agent-1").encode())
    await eventually("the well-formed wake-up", lambda: heard)
    assert heard == [Wake(WakeKind.COMMANDS_DUE, "agent-1")]
    assert "ignored a malformed wake-up 'due|agent-1'" in caplog.text
    assert "ignored a malformed wake-up 'rebooted|agent-1|'" in caplog.text


async def test_a_cut_connection_reconnects_and_every_session_and_waiter_looks_again(
    pg_url: str, listening: tuple[WakeListener, Wakeups, list[Wake]]
) -> None:
    listener, wakeups, heard = listening
    waiter = wakeups.final_waiter("command-1")
    generation = wakeups.users_generation
    killer = await asyncpg.connect(asyncpg_dsn(pg_url), timeout=10)
    try:
        cut = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await killer.close()
    assert cut == 1
    # Nothing was notified: what the session hears is the listener's "look again".
    await eventually("the local session to be told to look again", lambda: heard)
    assert heard == [Wake(WakeKind.COMMANDS_DUE, "agent-1")]
    assert waiter.done()
    assert wakeups.users_generation == generation + 1  # cached principals are dropped
    await asyncio.wait_for(listener.listening.wait(), 20)
    await notify(pg_url, Wake(WakeKind.USERS).encode())
    await eventually(
        "a wake-up after the reconnect", lambda: wakeups.users_generation == generation + 2
    )


async def test_a_database_it_cannot_reach_is_retried_with_growing_delays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    listener = WakeListener(f"postgresql+asyncpg://sonde@127.0.0.1:{closed_port}/test", Wakeups())
    caplog.set_level(logging.WARNING, logger="sonde.server.domain.wake_listener")
    task = asyncio.create_task(listener.run())
    try:
        await eventually("a second retry", lambda: "retrying in 0.5 s" in caplog.text)
        assert "cannot LISTEN for wake-ups" in caplog.text
        assert "retrying in 0.2 s" in caplog.text
        assert not task.done()
        assert not listener.listening.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
