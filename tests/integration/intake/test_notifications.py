"""Notifications to requesters through a real SMTP server (aiosmtpd on loopback with STARTTLS,
tests/support/smtp_sink.py), on SQLite and PostgreSQL: the outbox row written with the ticket
change, sent after it with the reference in its subject; a name without an address gets
nothing; a relay that is down gets every mail once it is back, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.mail_tickets import MailAction, MailTickets
from sonde.server.domain.notifications import requester_address, retry_after
from sonde.server.domain.roles import Role
from sonde.server.domain.ticket_model import TicketOutcome
from sonde.server.domain.tickets import Tickets
from sonde.server.intake.automatic_mail import is_automatic
from sonde.server.intake.mail_message import parse_mail
from sonde.server.intake.mail_sender import NotificationSender
from sonde.server.intake.smtp_notify import SmtpRelay, SmtpSecurity
from sonde.server.storage.db import Database
from sonde.server.storage.tables import outbox
from tests.integration.storage.databases import db_url, pg_url, sqlite_template
from tests.support.smtp_sink import SmtpSink, free_port, running_smtp_sink
from tests.unit.domain.builders import Clock, technician

__all__ = ["db_url", "pg_url", "sqlite_template"]  # the fixtures this module uses


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with running_smtp_sink(tmp_path / "smtp") as running:
        yield running


def relay_of(sink: SmtpSink, port: int | None = None) -> SmtpRelay:
    return SmtpRelay(
        host="127.0.0.1",
        port=port or sink.port,
        security=SmtpSecurity.STARTTLS,
        ca_file=sink.ca_file,
        timeout=5,
    )


def test_a_requester_line_is_written_to_only_when_it_holds_one_address() -> None:
    assert requester_address("Marie Dupont <marie@example.org>") == (
        "marie@example.org",
        "Marie Dupont",
    )
    assert requester_address("marie@example.org") == ("marie@example.org", "")
    for nothing in ("Marie Dupont", "", "a@b", "x <not an address>", "a@b.c\r\nBcc: e@f.g"):
        assert requester_address(nothing) is None
    assert [retry_after(n) for n in (1, 2, 3, 7, 20)] == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(hours=1),
        timedelta(hours=1),
    ]


async def test_open_and_resolve_mail_the_requester_with_the_reference(
    db: Database, sink: SmtpSink
) -> None:
    clock = Clock()
    desk = Tickets(db, clock, writes=AuditedWrites(db, clock), notify=True)
    ann = await technician(db, "ann", Role.L1)
    ticket = await desk.open(ann, title="VPN drops", requester="Marie Dupont <marie@example.org>")
    await desk.open(ann, title="by phone", requester="Jean Martin")  # a name only: no mail
    sender = NotificationSender(db, relay_of(sink), "helpdesk@example.org", clock)
    assert await sender.send_due() == 1
    (opened,) = sink.wait_for(1)
    assert opened.recipients == ("marie@example.org",)
    message = opened.message()
    assert message["Subject"] == f"[Sonde #{ticket.id}] Your request is open: VPN drops"
    assert parse_mail(opened.raw).ticket_id == ticket.id  # a reply comes back to it
    await desk.resolve(
        ann, ticket.id, "Reinstalled the VPN client.", outcome=TicketOutcome.FIXED,
        time_spent=timedelta(minutes=10),
    )  # fmt: skip
    assert await sender.send_due() == 1
    _, resolved = sink.wait_for(2)
    body = resolved.message().get_content()
    assert "Reinstalled the VPN client." in body
    assert f"[Sonde #{ticket.id}]" in resolved.message()["Subject"]
    assert await sender.send_due() == 0  # nothing twice


async def test_a_relay_that_is_down_gets_every_mail_once_back_in_order(
    db: Database, sink: SmtpSink
) -> None:
    clock = Clock()
    desk = Tickets(db, clock, writes=AuditedWrites(db, clock), notify=True)
    ann = await technician(db, "ann", Role.L1)
    numbers = [
        (await desk.open(ann, title=f"request {n}", requester=f"u{n % 3}@example.org")).id
        for n in range(4)
    ]  # requests 0 and 3 are from the same requester
    down = NotificationSender(db, relay_of(sink, port=free_port()), "helpdesk@example.org", clock)
    assert await down.send_due() == 0
    rows = await db.read(lambda c: c.execute(select(outbox).order_by(outbox.c.id)).all())
    assert [row.attempts for row in rows] == [1, 0, 0, 0]  # the round stopped at the first
    assert rows[0].last_error
    back = NotificationSender(db, relay_of(sink), "helpdesk@example.org", clock)
    # The first waits for its retry time, and holds back request 3 to the same requester.
    assert await back.send_due() == 2
    clock.advance(minutes=1)
    assert await back.send_due() == 2
    received = sink.wait_for(4)
    subjects = [mail.message()["Subject"] for mail in received]
    assert subjects == [
        f"[Sonde #{numbers[n]}] Your request is open: request {n}" for n in (1, 2, 0, 3)
    ]


async def test_a_bounce_opens_its_ticket_but_is_never_answered(
    db: Database, sink: SmtpSink
) -> None:
    """A bounce of a notification comes back as a new mail: answering it would start a loop."""
    clock = Clock()
    writes = AuditedWrites(db, clock)
    desk = Tickets(db, clock, writes=writes, notify=True)
    intake = MailTickets(db, writes, desk, clock)
    bounce = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        b"Message-ID: <bounce-1@mx.example.org>\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n\r\nunknown user\r\n"
    )
    taken = await intake.take("box", 1, 1, parse_mail(bounce), automatic=is_automatic(bounce))
    assert taken.action is MailAction.OPENED
    person = b"From: marie@example.org\r\nMessage-ID: <m-1@example.org>\r\nSubject: hi\r\n\r\nx"
    await intake.take("box", 1, 2, parse_mail(person), automatic=is_automatic(person))
    sender = NotificationSender(db, relay_of(sink), "helpdesk@example.org", clock)
    assert await sender.send_due() == 1  # Marie's only
    (told,) = sink.wait_for(1)
    assert told.recipients == ("marie@example.org",)
