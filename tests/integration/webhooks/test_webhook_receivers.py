"""The delivery against receivers that misbehave (slow, endless, huge headers, redirects), two
deliveries on one PostgreSQL database, and a transaction that commits after a later one."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sonde.server.domain.timeline import append_event
from sonde.server.storage.db import Database
from sonde.server.storage.tables import webhook_endpoints
from sonde.server.webhooks.delivery import Backoff, WebhookDelivery
from sonde.server.webhooks.posting import Poster
from sonde.v1 import console_pb2 as pb
from tests.integration.console.harness import Console
from tests.integration.webhooks.test_webhook_delivery import (
    add_webhook,
    all_readable,
    feed_ids,
    until,
    webhooks,
    work_a_ticket,
)
from tests.support.webhook_receiver import WebhookReceiver

ADMIN, BOB = Console.as_user("admin"), Console.as_user("bob")
FAST = Backoff(base_s=0.02, cap_s=0.1)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(tmp_path / "receiver") as running:
        yield running


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(tmp_path / "hostile", path="/evil") as running:
        yield running


def quick_delivery(
    console: Console, owner: str = "replica-a", timeout_s: float = 1.0
) -> WebhookDelivery:
    return WebhookDelivery(
        console.services.db,
        console.services.webhooks.credential_key,
        owner,
        backoff=FAST,
        poster=Poster(total_timeout_s=timeout_s, connect_timeout_s=timeout_s),
    )


@pytest.mark.parametrize("mode", ["slow", "huge_headers", "redirect"])
async def test_a_hostile_receiver_costs_at_most_the_timeout_and_holds_up_no_other(
    console: Console, receiver: WebhookReceiver, hostile: WebhookReceiver, mode: str
) -> None:
    hostile.state.mode = mode
    hostile.state.slow_s = 30.0
    hostile.state.redirect_to = receiver.url  # never followed
    bad = await add_webhook(console, hostile)
    good = await add_webhook(console, receiver)
    await work_a_ticket(console, "mouse")
    # The slow receiver is cut at the timeout; the others answer at once, and a longer timeout
    # keeps a loaded machine's TLS handshake from being mistaken for silence.
    worker = quick_delivery(console, timeout_s=1.0 if mode == "slow" else 4.0)
    started = time.monotonic()
    try:
        await until(lambda: len(receiver.state.events) >= 3, worker.start_round)
        failing: list[pb.Webhook] = []

        async def look() -> None:
            await worker.start_round()
            failing[:] = [w for w in await webhooks(console) if w.id == bad.id and w.failures]

        await until(lambda: bool(failing), look)
    finally:
        await worker.close()
    assert time.monotonic() - started < 10, "a hostile receiver held the delivery up"
    assert receiver.event_ids() == (await feed_ids(console))[-3:]
    assert all(event.document["webhook"] == good.id for event in receiver.state.events)
    problem = failing[0].last_error
    expected = {
        "slow": "no answer within",
        "huge_headers": "a malformed answer",
        "redirect": "HTTP 302",
    }[mode]
    assert problem.startswith(expected), problem
    assert failing[0].delivered == 0


async def test_an_endless_2xx_answer_is_delivered_without_reading_it(
    console: Console, receiver: WebhookReceiver
) -> None:
    receiver.state.mode = "huge"
    await add_webhook(console, receiver)
    await work_a_ticket(console, "disk")
    worker = quick_delivery(console)
    started = time.monotonic()
    try:
        await until(lambda: len(receiver.state.events) >= 3, worker.deliver_due)
    finally:
        await worker.close()
    assert time.monotonic() - started < 10
    listed = await webhooks(console)
    assert (listed[0].delivered, listed[0].failures) == (3, 0)


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_two_deliveries_on_one_postgresql_database_never_send_an_event_twice(
    console: Console, receiver: WebhookReceiver, db_url: str
) -> None:
    await add_webhook(console, receiver)
    other_db = await Database.open(db_url)  # another replica: its own connections
    first = WebhookDelivery(
        console.services.db, console.services.webhooks.credential_key, "replica-a", poll_s=0.01
    )
    second = WebhookDelivery(
        other_db, console.services.webhooks.credential_key, "replica-b", poll_s=0.01
    )
    running = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        for number in range(12):
            await work_a_ticket(console, f"ticket {number}")
        await until(lambda: len(receiver.state.events) >= 36, lambda: asyncio.sleep(0.05), s=60)
        await asyncio.sleep(0.5)  # any second sending would have come by now
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await other_db.close()
    assert receiver.event_ids() == (await feed_ids(console))[-36:]
    assert len(receiver.state.attempts) == 36  # not one POST twice
    assert (await webhooks(console))[0].delivered == 36


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_an_event_whose_transaction_commits_after_a_later_one_is_waited_for(
    console: Console, receiver: WebhookReceiver
) -> None:
    await add_webhook(console, receiver)
    ticket = (
        await console.stub.OpenTicket(pb.OpenTicketRequest(title="slow"), metadata=BOB)
    ).ticket
    await all_readable(console)
    worker = quick_delivery(console)
    engine = console.services.db.engine
    try:
        await until(lambda: len(receiver.state.events) >= 1, worker.deliver_due)
        async with engine.connect() as early:
            # The early transaction takes its id (its first write) before the later one starts.
            await early.begin()
            await _comment(early, ticket.id, "written first, committed last")
            await console.stub.CommentTicket(
                pb.CommentTicketRequest(id=ticket.id, body="written second, committed first"),
                metadata=BOB,
            )
            for _ in range(10):
                await worker.deliver_due()
                await asyncio.sleep(0.05)
            assert receiver.kinds() == ["opened"], "an event passed one not yet committed"
            await early.commit()
        await until(lambda: len(receiver.state.events) >= 3, worker.deliver_due)
    finally:
        await worker.close()
    bodies = [event.document["body"] for event in receiver.state.events[1:]]
    assert bodies == ["written first, committed last", "written second, committed first"]


async def _comment(connection: AsyncConnection, ticket_id: int, body: str) -> None:
    def write(sync_connection: object) -> None:
        append_event(
            sync_connection,  # type: ignore[arg-type]
            ticket_id,
            "comment",
            "bob",
            datetime.now(UTC),
            body=body,
            touch_ticket=False,
        )

    await connection.run_sync(write)


async def test_a_lease_held_elsewhere_is_waited_for_and_a_lapsed_one_taken_over(
    console: Console, receiver: WebhookReceiver
) -> None:
    await add_webhook(console, receiver)
    await work_a_ticket(console, "lease")
    await all_readable(console)

    async def lease(until_at: datetime) -> None:
        await console.services.db.write(
            lambda connection: connection.execute(
                update(webhook_endpoints).values(lease_owner="dead-replica", lease_until=until_at)
            )
        )

    await lease(datetime.now(UTC) + timedelta(seconds=60))
    worker = quick_delivery(console)
    try:
        assert await worker.deliver_due() == 0
        assert receiver.state.attempts == []
        await lease(datetime.now(UTC) - timedelta(seconds=1))  # that replica died a while ago
        assert await worker.deliver_due() == 1
    finally:
        await worker.close()
    assert receiver.kinds() == ["opened", "comment", "resolved"]
    owners = await console.services.db.read(
        lambda connection: connection.execute(select(webhook_endpoints.c.lease_owner)).all()
    )
    assert owners == [(None,)]  # given back once caught up


async def test_a_port_that_never_answers_the_tls_handshake_costs_the_timeout(
    console: Console, receiver: WebhookReceiver
) -> None:
    with socket.socket() as silent:  # the kernel completes TCP; nobody ever speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/in"
        added = await console.stub.AddWebhook(
            pb.AddWebhookRequest(url=url, ca_pem=receiver.ca_pem), metadata=ADMIN
        )
        await work_a_ticket(console, "silence")
        worker = quick_delivery(console)
        failing: list[pb.Webhook] = []

        async def look() -> None:
            await worker.deliver_due()
            failing[:] = [w for w in await webhooks(console) if w.failures]

        started = time.monotonic()
        try:
            await until(lambda: bool(failing), look)
        finally:
            await worker.close()
    assert time.monotonic() - started < 10
    assert failing[0].id == added.webhook.id
    assert failing[0].last_error.startswith("no answer within"), failing[0].last_error
