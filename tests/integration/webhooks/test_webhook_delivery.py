"""Outbound webhooks end to end: a real console server adds the endpoint and writes ticket
events through the real domain; the real delivery POSTs them over TLS to a real HTTPS receiver
on 127.0.0.1 that checks each signature with the secret AddWebhook showed once. On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc.aio
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sonde.server.storage.tables import audit_log, ticket_events, webhook_endpoints
from sonde.server.webhooks.delivery import Backoff, WebhookDelivery
from sonde.server.webhooks.feed import feed_end
from sonde.v1 import console_pb2 as pb
from tests.integration.console.harness import Console
from tests.support.webhook_receiver import WebhookReceiver

ADMIN, BOB = Console.as_user("admin"), Console.as_user("bob")
FAST = Backoff(base_s=0.02, cap_s=0.1)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(tmp_path / "receiver") as running:
        yield running


async def add_webhook(
    console: Console, receiver: WebhookReceiver, events: list[str] | None = None
) -> pb.Webhook:
    added = await console.stub.AddWebhook(
        pb.AddWebhookRequest(url=receiver.url, ca_pem=receiver.ca_pem, events=events or []),
        metadata=ADMIN,
    )
    receiver.state.secret = added.secret.encode()
    return added.webhook


def delivery(console: Console, owner: str = "replica-a", **options: object) -> WebhookDelivery:
    return WebhookDelivery(
        console.services.db,
        console.services.webhooks.credential_key,
        owner,
        backoff=FAST,
        **options,  # type: ignore[arg-type]
    )


async def until(
    done: Callable[[], bool], step: Callable[[], Awaitable[object]], s: float = 20
) -> None:
    deadline = time.monotonic() + s
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        await step()
        await asyncio.sleep(0.02)


async def feed_ids(console: Console) -> list[str]:
    """Every ticket event's id in the feed's order."""
    rows = await console.services.db.read(
        lambda connection: connection.execute(
            select(ticket_events.c.id).order_by(ticket_events.c.xact_id, ticket_events.c.id)
        ).all()
    )
    return [str(row[0]) for row in rows]


async def webhooks(console: Console) -> list[pb.Webhook]:
    return list(
        (await console.stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=ADMIN)).webhooks
    )


async def all_readable(console: Console) -> None:
    """Wait until every event written so far is below the feed's horizon (PostgreSQL: until
    the transactions running anywhere on the server when they were written have ended)."""

    def behind(connection: Connection) -> bool:
        newest = connection.execute(
            select(ticket_events.c.xact_id, ticket_events.c.id)
            .order_by(ticket_events.c.xact_id.desc(), ticket_events.c.id.desc())
            .limit(1)
        ).first()
        readable = feed_end(connection)
        return newest is not None and (newest[0], newest[1]) != (readable.xact, readable.event)

    deadline = time.monotonic() + 20
    while await console.services.db.read(behind):
        assert time.monotonic() < deadline, "the feed's horizon did not move"
        await asyncio.sleep(0.05)


async def work_a_ticket(console: Console, title: str) -> int:
    """Open, comment, resolve: three events."""
    ticket = (await console.stub.OpenTicket(pb.OpenTicketRequest(title=title), metadata=BOB)).ticket
    await console.stub.CommentTicket(
        pb.CommentTicketRequest(id=ticket.id, body=f"called about {title}"), metadata=BOB
    )
    await console.stub.ResolveTicket(
        pb.ResolveTicketRequest(
            id=ticket.id,
            resolution="restarted the spooler",
            outcome=pb.TICKET_OUTCOME_FIXED,
            time_spent_s=300,
        ),
        metadata=BOB,
    )
    return ticket.id


async def test_each_event_arrives_signed_in_order_and_the_secret_is_shown_once(
    console: Console, receiver: WebhookReceiver
) -> None:
    await work_a_ticket(console, "before the webhook")  # not sent: it starts from now
    await all_readable(console)
    hook = await add_webhook(console, receiver)
    ticket_id = await work_a_ticket(console, "printer jam")
    worker = delivery(console)
    try:
        await until(lambda: len(receiver.state.events) >= 3, worker.deliver_due)
    finally:
        await worker.close()
    assert receiver.kinds() == ["opened", "comment", "resolved"]
    assert receiver.event_ids() == (await feed_ids(console))[-3:]
    assert receiver.state.unverified == 0
    comment = receiver.state.events[1].document
    assert comment["ticket_id"] == ticket_id
    assert comment["body"] == "called about printer jam"
    assert comment["actor"] == "bob"
    assert comment["ticket"]["title"] == "printer jam"
    assert comment["webhook"] == hook.id
    listed = (await console.stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=ADMIN)).webhooks
    assert [(w.id, w.delivered, w.pending, w.failures) for w in listed] == [(hook.id, 3, 0, 0)]
    assert listed[0].custom_ca
    assert "secret" not in str(listed[0]).lower()


async def test_a_receiver_that_answers_503_gets_every_event_once_it_is_back_in_order(
    console: Console, receiver: WebhookReceiver
) -> None:
    await add_webhook(console, receiver)
    receiver.state.mode = "unavailable"
    for title in ("vpn", "mail", "screen"):
        await work_a_ticket(console, title)
    worker = delivery(console)
    try:
        await until(lambda: len(receiver.state.attempts) >= 4, worker.deliver_due)
        listed = await console.stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=ADMIN)
        down = listed.webhooks[0]
        assert (down.delivered, down.pending) == (0, 9)
        assert down.failures >= 1
        assert down.last_error.startswith("HTTP 503")
        assert down.HasField("next_attempt_at")
        written = await feed_ids(console)
        # While it is down, only the first event is tried, again and again: none is skipped.
        assert set(receiver.state.attempts) == {written[-9]}
        receiver.state.mode = "ok"
        await until(lambda: len(receiver.state.events) >= 9, worker.deliver_due)
        for _ in range(3):
            await worker.deliver_due()  # nothing is left to send, and nothing is sent again
    finally:
        await worker.close()
    assert receiver.event_ids() == written[-9:]
    assert receiver.kinds() == ["opened", "comment", "resolved"] * 3
    back = (await console.stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=ADMIN)).webhooks[0]
    assert (back.delivered, back.pending, back.failures) == (9, 0, 0)


async def test_a_receiver_whose_port_is_closed_gets_every_event_once_it_listens_again(
    console: Console, receiver: WebhookReceiver
) -> None:
    await add_webhook(console, receiver)
    receiver.stop()
    await work_a_ticket(console, "keyboard")
    worker = delivery(console)
    try:
        failures: list[pb.Webhook] = []

        async def attempt() -> None:
            await worker.deliver_due()
            failures[:] = [w for w in await webhooks(console) if w.failures >= 2]

        await until(lambda: bool(failures), attempt)
        assert failures[0].last_error.startswith("cannot connect")
        assert failures[0].delivered == 0
        await work_a_ticket(console, "mouse")  # written while it is down
        receiver.start()
        await until(lambda: len(receiver.state.events) >= 6, worker.deliver_due)
    finally:
        await worker.close()
    assert receiver.event_ids() == (await feed_ids(console))[-6:]


async def test_only_the_kinds_asked_for_are_sent_and_the_others_do_not_hold_the_cursor(
    console: Console, receiver: WebhookReceiver
) -> None:
    await add_webhook(console, receiver, events=["resolved"])
    await work_a_ticket(console, "one")
    await work_a_ticket(console, "two")
    worker = delivery(console)
    try:
        await until(lambda: len(receiver.state.events) >= 2, worker.deliver_due)
        await worker.deliver_due()
    finally:
        await worker.close()
    assert receiver.kinds() == ["resolved", "resolved"]
    listed = (await console.stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=ADMIN)).webhooks
    assert (listed[0].delivered, listed[0].pending) == (2, 0)


async def test_a_webhook_row_pointed_elsewhere_in_the_database_sends_nothing_there(
    console: Console, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """The secret is bound to the URL: a row whose URL was changed does not open."""
    hook = await add_webhook(console, receiver)
    with WebhookReceiver(tmp_path / "elsewhere") as elsewhere:
        elsewhere.state.secret = receiver.state.secret
        stored = await console.services.db.read(
            lambda connection: connection.execute(select(webhook_endpoints)).one()
        )
        assert receiver.state.secret not in bytes(stored.ciphertext)
        await console.services.db.write(
            lambda connection: connection.execute(
                update(webhook_endpoints).values(url=elsewhere.url, ca_pem=elsewhere.ca_pem)
            )
        )
        await work_a_ticket(console, "hijack")
        worker = delivery(console)
        errors: list[str] = []

        async def attempt() -> None:
            await worker.deliver_due()
            errors[:] = [w.last_error for w in await webhooks(console) if w.id == hook.id]

        try:
            await until(lambda: bool(errors and errors[0]), attempt)
        finally:
            await worker.close()
        assert elsewhere.state.attempts == []
    assert "does not open" in errors[0]


async def test_removed_webhooks_are_sent_nothing_more(
    console: Console, receiver: WebhookReceiver
) -> None:
    hook = await add_webhook(console, receiver)
    await work_a_ticket(console, "old")
    await all_readable(console)
    removed = await console.stub.RemoveWebhook(pb.RemoveWebhookRequest(id=hook.id), metadata=ADMIN)
    assert (removed.webhook.id, removed.webhook.pending) == (hook.id, 3)
    assert await webhooks(console) == []
    worker = delivery(console)
    try:
        assert await worker.deliver_due() == 0
    finally:
        await worker.close()
    assert receiver.state.attempts == []


async def test_adding_and_removing_are_audited_without_the_secret_or_the_urls_query(
    console: Console, receiver: WebhookReceiver
) -> None:
    added = await console.stub.AddWebhook(
        pb.AddWebhookRequest(url=receiver.url + "?token=receiver-side-token", events=["closed"]),
        metadata=ADMIN,
    )
    await console.stub.RemoveWebhook(pb.RemoveWebhookRequest(id=added.webhook.id), metadata=ADMIN)
    rows = await console.services.db.read(
        lambda connection: connection.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.detail)
            .where(audit_log.c.action.like("webhook.%"))
            .order_by(audit_log.c.id)
        ).all()
    )
    assert [(row.actor, row.action) for row in rows] == [
        ("admin", "webhook.add"),
        ("admin", "webhook.remove"),
    ]
    for row in rows:
        assert receiver.url in row.detail or added.webhook.id in row.detail
        assert "receiver-side-token" not in row.detail
        assert added.secret not in row.detail


async def test_a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(
    console: Console, receiver: WebhookReceiver
) -> None:
    hook = await add_webhook(console, receiver)
    old_secret = receiver.state.secret
    worker = delivery(console)
    try:
        await work_a_ticket(console, "before")
        await until(lambda: len(receiver.state.events) >= 3, worker.deliver_due)

        rotated = await console.stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(id=hook.id), metadata=ADMIN
        )
        assert rotated.secret
        assert rotated.secret.encode() != old_secret
        until_s = rotated.webhook.previous_secret_until.seconds - time.time()
        assert 24 * 3600 - 60 < until_s <= 24 * 3600
        # The receiver still checks with the old secret: every event verifies meanwhile.
        await work_a_ticket(console, "during the overlap")
        await until(lambda: len(receiver.state.events) >= 6, worker.deliver_due)
        assert [e.signatures for e in receiver.state.events] == [1, 1, 1, 2, 2, 2]
        receiver.state.secret = rotated.secret.encode()  # switched when it liked
        await work_a_ticket(console, "switched")
        await until(lambda: len(receiver.state.events) >= 9, worker.deliver_due)

        # Rotated again with no overlap: the old one stops at once, so a receiver still on it
        # refuses, and gets every event, in order, once it has the new secret.
        again = await console.stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(id=hook.id, overlap_s=0), metadata=ADMIN
        )
        assert not again.webhook.HasField("previous_secret_until")
        await work_a_ticket(console, "no overlap")
        await until(lambda: receiver.state.unverified >= 1, worker.deliver_due)
        receiver.state.secret = again.secret.encode()
        await until(lambda: len(receiver.state.events) >= 12, worker.deliver_due)
    finally:
        await worker.close()
    assert receiver.state.unverified >= 1
    assert receiver.event_ids() == (await feed_ids(console))[-12:]
    # Switched within the overlap: still both; after the rotation with none, only the new.
    assert [e.signatures for e in receiver.state.events][6:] == [2, 2, 2, 1, 1, 1]
    [listed] = await webhooks(console)
    assert (listed.delivered, listed.pending) == (12, 0)

    rows = await console.services.db.read(
        lambda connection: connection.execute(
            select(audit_log.c.action, audit_log.c.detail, audit_log.c.result)
            .where(audit_log.c.action == "webhook.rotate")
            .order_by(audit_log.c.id)
        ).all()
    )
    assert [row.result for row in rows] == ["ok", "ok"]
    assert ['"overlap_s":86400' in rows[0].detail, '"overlap_s":0' in rows[1].detail] == [True] * 2
    for row in rows:
        assert rotated.secret not in row.detail
        assert again.secret not in row.detail


async def test_a_rotation_is_refused_for_an_unknown_webhook_a_long_overlap_or_a_short_secret(
    console: Console, receiver: WebhookReceiver
) -> None:
    hook = await add_webhook(console, receiver)
    refusals = [
        (pb.RotateWebhookSecretRequest(id="nope"), ADMIN, "NOT_FOUND", "no webhook has the id"),
        (
            pb.RotateWebhookSecretRequest(id=hook.id, overlap_s=8 * 86400),
            ADMIN,
            "INVALID_ARGUMENT",
            "0 s to 7 days",
        ),
        (pb.RotateWebhookSecretRequest(id=hook.id, secret="short"), ADMIN, "INVALID_ARGUMENT", ""),
    ]
    for request, who, code, said in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await console.stub.RotateWebhookSecret(request, metadata=who)
        assert refused.value.code().name == code
        assert said in (refused.value.details() or "")
    [listed] = await webhooks(console)
    assert not listed.HasField("previous_secret_until")  # nothing changed
