"""Mail intake end to end against a real dovecot on loopback over IMAPS, on SQLite and
PostgreSQL (server/intake/mail_poller.py, server/domain/mail_tickets.py): a new mail opens a
ticket, a reply with its reference is a comment, bad mail never loses a request, and neither
a connection cut mid-fetch nor a server that died before marking a mail makes it twice."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import func, select

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.mail_tickets import MailAction, MailTickets
from sonde.server.domain.roles import Role
from sonde.server.domain.ticket_model import TicketChannel, TicketOutcome, TicketStatus
from sonde.server.domain.tickets import Tickets
from sonde.server.intake.imap_mailbox import ImapMailbox, MailboxAccount, MailboxUnreachable
from sonde.server.intake.mail_message import parse_mail, ticket_reference
from sonde.server.intake.mail_poller import MailPoller, RoundReport
from sonde.server.storage.db import Database
from sonde.server.storage.tables import mail_intake, ticket_attachments, tickets
from tests.integration.storage.databases import db_url, pg_url, sqlite_template
from tests.support.cutting_proxy import cutting_proxy
from tests.support.dovecot import Dovecot, dovecot_available_or_reason, running_dovecot
from tests.unit.domain.builders import technician

__all__ = ["db_url", "pg_url", "sqlite_template"]  # the fixtures this module uses

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(bool(dovecot_available_or_reason()), reason=dovecot_available_or_reason()),
]


@pytest.fixture(scope="module")
def dovecot_server() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def dovecot(dovecot_server: Dovecot, request: pytest.FixtureRequest) -> Dovecot:
    """The module's dovecot with a folder of this test's own as its inbox."""
    named = re.sub(r"\W", "_", request.node.name)[:40]
    folder = f"{named}_{uuid.uuid4().hex[:8]}"
    client = dovecot_server.connect()
    try:
        status, reply = client.create(folder)
        assert status == "OK", reply
    finally:
        client.logout()
    return dataclasses.replace(dovecot_server, inbox=folder)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    try:
        yield database
    finally:
        await database.close()


def account(server: Dovecot, **changes: object) -> MailboxAccount:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "folder": server.inbox,
        "ca_file": server.ca_file,
        "timeout": 10.0,
    }
    values.update(changes)
    return MailboxAccount(**values)  # type: ignore[arg-type]


def mail(subject: str, body: str, *, sender: str = "marie@example.org") -> bytes:
    message = EmailMessage()
    message["From"] = f"Marie Dupont <{sender}>"
    message["To"] = "helpdesk@example.org"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    message.set_content(body)
    return bytes(message)


def intake(db: Database) -> tuple[Tickets, MailTickets]:
    writes = AuditedWrites(db)
    desk = Tickets(db, writes=writes)
    return desk, MailTickets(db, writes, desk)


async def _count(db: Database, table: object) -> int:
    return int(
        await db.read(lambda c: c.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]
    )


async def test_a_new_mail_opens_a_ticket_and_a_reply_is_a_comment(
    db: Database, dovecot: Dovecot
) -> None:
    desk, mail_tickets = intake(db)
    poller = MailPoller(account(dovecot), mail_tickets)
    dovecot.deliver(mail("Printer on floor 3 prints blank pages", "Since this morning."),
                    dovecot.inbox)  # fmt: skip
    assert await poller.round() == RoundReport(opened=1)
    (opened,) = await desk.list()
    assert opened.title == "Printer on floor 3 prints blank pages"
    assert opened.channel is TicketChannel.EMAIL
    assert opened.requester == "Marie Dupont <marie@example.org>"
    assert "Since this morning." in opened.description
    # Marked done in the mailbox, and nothing is read twice.
    assert all(b"\\Seen" in flags for flags in dovecot.flags_of_all(dovecot.inbox).values())
    assert await poller.round() == RoundReport()

    reply = mail(f"RE: {ticket_reference(opened.id)} Printer", "It prints again, thanks!")
    dovecot.deliver(reply, dovecot.inbox)
    assert await poller.round() == RoundReport(commented=1)
    ticket, timeline = await desk.get(opened.id)
    assert timeline[-1].actor == "mail"
    assert timeline[-1].body.startswith("Mail from Marie Dupont <marie@example.org>: RE: ")
    assert "It prints again, thanks!" in timeline[-1].body
    assert ticket.status is TicketStatus.NEW  # a reply moves nothing by itself
    assert len(await desk.list()) == 1

    # The same reference from someone else: a new request, not a comment on Marie's ticket.
    stranger = mail(f"Re: {ticket_reference(opened.id)}", "me too", sender="eve@example.net")
    dovecot.deliver(stranger, dovecot.inbox)
    assert await poller.round() == RoundReport(opened=1)
    _, timeline = await desk.get(opened.id)
    assert "me too" not in timeline[-1].body
    (other,) = [t for t in await desk.list() if t.id != opened.id]
    assert other.requester == "Marie Dupont <eve@example.net>"
    assert "is not this sender's" in other.description


async def test_a_reference_to_a_closed_or_unknown_ticket_is_a_new_request(
    db: Database, dovecot: Dovecot
) -> None:
    desk, mail_tickets = intake(db)
    ann = await technician(db, "ann", Role.L1)
    closed = await desk.open(ann, title="old one")
    await desk.close(ann, closed.id, "same as another", outcome=TicketOutcome.DUPLICATE)
    dovecot.deliver(mail(f"Re: {ticket_reference(closed.id)} old one", "again"), dovecot.inbox)
    dovecot.deliver(mail(f"Re: {ticket_reference(9999)} ?", "who knows"), dovecot.inbox)
    assert await MailPoller(account(dovecot), mail_tickets).round() == RoundReport(opened=2)
    new = [t for t in await desk.list() if t.id != closed.id]
    assert len(new) == 2
    assert f"carried the reference {ticket_reference(closed.id)}" in new[0].description
    assert f"carried the reference {ticket_reference(9999)}" in new[1].description


async def test_bad_mail_never_loses_a_request(db: Database, dovecot: Dovecot) -> None:
    desk, mail_tickets = intake(db)
    no_subject = EmailMessage()
    no_subject["From"] = "bob@example.org"
    no_subject.set_content("My screen is black\nsince the update")
    huge = mail("Huge", "x" * 60_000)
    # A CR LF decoded from an encoded word: a header that would be injected in a reply.
    injected = (
        b"From: mallory@example.org\r\nMessage-ID: <inj@example.org>\r\n"
        b"Subject: =?utf-8?q?Help=0D=0ABcc:_everyone@example.org?=\r\n\r\nheader injection\r\n"
    )
    html = EmailMessage()
    html["From"] = "eve@example.org"
    html["Subject"] = "<script>alert(1)</script> urgent"
    html.set_content("<p>Click <b>here</b><script>steal()</script></p>", subtype="html")
    with_files = mail("Scan attached", "see the file")
    attached = EmailMessage()
    attached["From"] = "jo@example.org"
    attached["Subject"] = "files"
    attached["Message-ID"] = make_msgid(domain="example.org")
    attached.set_content("two files")
    attached.add_attachment(b"\x00\x01binary" * 10, maintype="application",
                            subtype="octet-stream", filename="../../etc/passwd")  # fmt: skip
    attached.add_attachment(b"A" * (11 * 1024 * 1024), maintype="application",
                            subtype="pdf", filename="scan.pdf")  # fmt: skip
    garbage = b"\xff\xfe\x00 not a mail at all \x1b[31m"
    for raw in (bytes(no_subject), huge, injected, bytes(html), with_files, bytes(attached),
                garbage):  # fmt: skip
        dovecot.deliver(raw, dovecot.inbox)
    report = await MailPoller(account(dovecot), mail_tickets).round()
    assert report == RoundReport(opened=7)
    by_title = {ticket.title: ticket for ticket in await desk.list()}
    assert "My screen is black" in by_title
    injected_ticket = next(t for t in by_title.values() if t.title.startswith("Help"))
    assert "\n" not in injected_ticket.title
    assert "\r" not in injected_ticket.title
    scripted = next(t for t in by_title.values() if "urgent" in t.title)
    assert "<p>" not in scripted.description
    assert "steal()" not in scripted.description
    assert "Click here" in scripted.description
    big = by_title["Huge"]
    assert big.description.endswith("[... cut here: the whole text is attached]")
    kept = await db.read(
        lambda c: c.execute(select(ticket_attachments).order_by(ticket_attachments.c.id)).all()
    )
    whole = next(row for row in kept if row.ticket_id == big.id)
    assert whole.name == "message.txt"
    assert "x" * 60_000 in whole.content.decode()  # the whole body, not its first 10,000
    files = {row.name: row for row in kept if row.ticket_id != big.id}
    assert files["passwd"].content == b"\x00\x01binary" * 10
    assert files["scan.pdf"].content is None
    assert files["scan.pdf"].refused == "not kept: over 10 MiB"
    assert files["scan.pdf"].size_bytes == 11 * 1024 * 1024
    _, timeline = await desk.get(
        next(t.id for t in by_title.values() if t.requester.startswith("jo"))
    )
    assert timeline[-1].body == (
        "Mail intake: attachment 'scan.pdf' (11534336 bytes) not kept: over 10 MiB"
    )


async def test_a_cut_connection_or_a_crash_before_marking_makes_nothing_twice(
    db: Database, dovecot: Dovecot
) -> None:
    desk, mail_tickets = intake(db)
    dovecot.deliver(mail("VPN drops", "every 10 minutes " * 20_000), dovecot.inbox)
    with cutting_proxy(dovecot.port, cut_after=200_000) as proxy:
        cut = MailPoller(account(dovecot, port=proxy.port), mail_tickets)
        with pytest.raises(MailboxUnreachable, match="connection was lost during UID FETCH"):
            await cut.round()
        assert proxy.cuts == 1
    assert await desk.list() == []  # nothing taken from a half-read mail

    # The server dies after the take and before the mark: the take commits, the mark never.
    mailbox = ImapMailbox(account(dovecot))
    with mailbox:
        batch = mailbox.fetch_since(0, None)
    (fetched,) = batch.mails
    taken = await mail_tickets.take(
        ImapMailbox(account(dovecot)).where, batch.uidvalidity, 0, parse_mail(fetched.raw)
    )
    assert taken.action is MailAction.OPENED
    # On restart the position says UID 0: the mail is read again, and found taken.
    report = await MailPoller(account(dovecot), mail_tickets).round()
    assert report == RoundReport(already_taken=1)
    assert len(await desk.list()) == 1
    assert await _count(db, mail_intake) == 1
    assert await _count(db, tickets) == 1
