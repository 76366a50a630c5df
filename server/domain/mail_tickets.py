"""A mail read from the helpdesk's mailbox, made a ticket or a comment, exactly once.

`take` is one unit of work with its audit row (`ticket.mail`): the mail's record (its
Message-ID, the mailbox, UIDVALIDITY and UID), the ticket opened or the comment added, its
attachments, and the mailbox's reading moved past its UID all commit together, or nothing
does. The reader marks the mail done in the mailbox only after that commit (mail_poller.py).
So a server that dies between the two, or a connection dropped mid-fetch, reads the mail again
and finds its Message-ID taken: one ticket, never two.

What a mail becomes:

- a subject with the reference of an open (or resolved) ticket (`[Sonde #17]`), from that
  ticket's requester (the address of its requester line): a comment on it, with the mail's
  text and attachments; a resolved ticket stays resolved (a reply saying "it is broken again"
  is the technician's to judge and reopen);
- the reference of a ticket that is closed, does not exist, or is another person's (a
  reference is only a number anyone can type), or none: a new ticket (channel email), the
  sender as its requester, whose description says which reference it carried, so that no
  request is lost and nobody writes on another's ticket.

Everything from the mail is kept as text: HTML was turned to text by the parser, and the
console shows it inert like any ticket text. What the parser cut or refused is in the
ticket's timeline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from hashlib import sha256

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.notifications import requester_address
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.text import fitted
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventKind,
    TicketStatus,
)
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.domain.tickets import MAX_BODY_CHARS, MAX_NAME_CHARS, MAX_TITLE_CHARS, Tickets
from sonde.server.domain.timeline import append_event
from sonde.server.errors import NotFound
from sonde.server.intake.mail_message import IntakeAttachment, IntakeMail, ticket_reference
from sonde.server.storage.db import Database
from sonde.server.storage.tables import mail_intake, mailbox_state, ticket_attachments

# Who the mail's changes are by, in the timeline and the audit log.
MAIL_ACTOR = Principal(0, "mail", Role.L1)


class MailAction(enum.StrEnum):
    OPENED = "opened"
    COMMENTED = "commented"
    ALREADY_TAKEN = "already_taken"  # its Message-ID was taken before: nothing changed


@dataclass(frozen=True)
class MailTaken:
    action: MailAction
    ticket_id: int


@dataclass(frozen=True)
class MailboxPosition:
    uidvalidity: int
    last_uid: int


def mailbox_position(connection: Connection, mailbox: str) -> MailboxPosition | None:
    row = connection.execute(
        select(mailbox_state.c.uidvalidity, mailbox_state.c.last_uid).where(
            mailbox_state.c.mailbox == mailbox
        )
    ).first()
    return None if row is None else MailboxPosition(int(row.uidvalidity), int(row.last_uid))


class MailTickets:
    def __init__(
        self, db: Database, writes: AuditedWrites, tickets: Tickets, clock: Clock = utc_now
    ) -> None:
        self._db = db
        self._writes = writes
        self._tickets = tickets
        self._clock = clock

    async def position(self, mailbox: str) -> MailboxPosition | None:
        return await self._db.read(lambda c: mailbox_position(c, mailbox))

    async def moved(self, mailbox: str, position: MailboxPosition, error: str = "") -> None:
        """The reading of `mailbox` is at `position` (a UIDVALIDITY change starts it at 0)."""
        now = self._clock()

        def unit(connection: Connection) -> None:
            self._set_position(connection, mailbox, position, now, error)

        await self._db.write(unit)

    async def take(
        self,
        mailbox: str,
        uidvalidity: int,
        uid: int,
        mail: IntakeMail,
        *,
        automatic: bool = False,
    ) -> MailTaken:
        """Take one mail; `automatic` (an auto-reply, a bounce: automatic_mail.py) opens its
        ticket without mailing the sender back."""

        def unit(connection: Connection, entry: AuditEntry) -> MailTaken:
            now = self._clock()
            entry.detail |= {"message_id": mail.message_id[:200], "mailbox": mailbox, "uid": uid}
            taken = connection.execute(
                select(mail_intake.c.ticket_id).where(mail_intake.c.message_id == mail.message_id)
            ).scalar()
            position = MailboxPosition(uidvalidity, uid)
            if taken is not None:
                self._set_position(connection, mailbox, position, now, "")
                entry.detail["action"] = MailAction.ALREADY_TAKEN.value
                return MailTaken(MailAction.ALREADY_TAKEN, int(taken))
            target = self._open_ticket_of(connection, mail)
            text = _description(mail) if target is None else _comment(mail)
            if target is None:
                ticket = self._tickets.open_in(
                    connection,
                    entry,
                    MAIL_ACTOR,
                    title=fitted(mail.subject, MAX_TITLE_CHARS, multiline=False) or "(no subject)",
                    description=fitted(text, MAX_BODY_CHARS),
                    channel=TicketChannel.EMAIL,
                    requester=fitted(mail.sender_label, MAX_NAME_CHARS, multiline=False),
                    tell_requester=not automatic,
                )
                ticket_id, action = ticket.id, MailAction.OPENED
                event_id = None
            else:
                ticket_id, action = target, MailAction.COMMENTED
                event_id = append_event(
                    connection,
                    ticket_id,
                    TicketEventKind.COMMENT,
                    MAIL_ACTOR.name,
                    now,
                    body=fitted(text, MAX_BODY_CHARS),
                )
            if mail.warnings:
                append_event(
                    connection,
                    ticket_id,
                    TicketEventKind.COMMENT,
                    MAIL_ACTOR.name,
                    now,
                    body=fitted("Mail intake: " + "; ".join(mail.warnings), MAX_BODY_CHARS),
                )
            whole = _whole_text(text) if len(text) > MAX_BODY_CHARS else ()
            self._keep_attachments(connection, ticket_id, event_id, (*mail.attachments, *whole))
            connection.execute(
                mail_intake.insert(),
                {
                    "message_id": mail.message_id,
                    "mailbox": mailbox,
                    "uidvalidity": uidvalidity,
                    "uid": uid,
                    "ticket_id": ticket_id,
                    "action": action.value,
                    "sender": fitted(mail.sender_address or "", 320, multiline=False),
                    "taken_at": now,
                    "warnings": "\n".join(mail.warnings),
                },
            )
            self._set_position(connection, mailbox, position, now, "")
            entry.ticket_id = ticket_id
            entry.detail["action"] = action.value
            return MailTaken(action, ticket_id)

        return await self._writes.run(MAIL_ACTOR.name, "ticket.mail", unit, peer=mailbox)

    @staticmethod
    def _open_ticket_of(connection: Connection, mail: IntakeMail) -> int | None:
        """The ticket a reply goes on: its reference's, when that one exists, is not closed,
        and the mail comes from its requester (a reference is only a number: anyone could
        write it in a subject)."""
        if mail.ticket_id is None:
            return None
        try:
            ticket = load_ticket(connection, mail.ticket_id, lock=True)
        except NotFound:
            return None
        if ticket.status is TicketStatus.CLOSED:
            return None
        requester = requester_address(ticket.requester)
        sender = (mail.sender_address or "").lower()
        if requester is None or requester[0].lower() != sender:
            return None
        return ticket.id

    @staticmethod
    def _keep_attachments(
        connection: Connection,
        ticket_id: int,
        event_id: int | None,
        attachments: tuple[IntakeAttachment, ...],
    ) -> None:
        if not attachments:
            return
        connection.execute(
            ticket_attachments.insert(),
            [
                {
                    "ticket_id": ticket_id,
                    "event_id": event_id,
                    "name": attachment.file_name[:160],
                    "content_type": attachment.content_type[:120],
                    "size_bytes": attachment.size,
                    "sha256": attachment.sha256,
                    "content": attachment.content,
                    "refused": (attachment.refused or "")[:200],
                }
                for attachment in attachments
            ],
        )

    @staticmethod
    def _set_position(
        connection: Connection,
        mailbox: str,
        position: MailboxPosition,
        now: object,
        error: str,
    ) -> None:
        values = {
            "uidvalidity": position.uidvalidity,
            "last_uid": position.last_uid,
            "checked_at": now,
            "last_error": error[:2000],
        }
        stored = mailbox_position(connection, mailbox)
        if stored is None:
            connection.execute(mailbox_state.insert(), {"mailbox": mailbox, **values})
            return
        if stored.uidvalidity == position.uidvalidity and stored.last_uid > position.last_uid:
            values["last_uid"] = stored.last_uid  # never backwards within one UIDVALIDITY
        connection.execute(
            mailbox_state.update().where(mailbox_state.c.mailbox == mailbox).values(**values)
        )


def _description(mail: IntakeMail) -> str:
    carried = (
        f"This mail carried the reference {ticket_reference(mail.ticket_id)}, a ticket that "
        "is closed, does not exist, or is not this sender's: it is a new request.\n\n"
        if mail.ticket_id is not None
        else ""
    )
    kept = [a.file_name for a in mail.attachments if a.content is not None]
    files = f"\n\nAttached: {', '.join(kept)}" if kept else ""
    return f"{carried}From {mail.sender_label}:\n\n{mail.body}{files}"


def _comment(mail: IntakeMail) -> str:
    kept = [a.file_name for a in mail.attachments if a.content is not None]
    files = f"\n\nAttached: {', '.join(kept)}" if kept else ""
    return f"Mail from {mail.sender_label}: {mail.subject}\n\n{mail.body}{files}"


def _whole_text(text: str) -> tuple[IntakeAttachment]:
    """The mail's whole text, when the ticket's field could hold only its start."""
    data = text.encode("utf-8")
    return (
        IntakeAttachment(
            "message.txt", "text/plain; charset=utf-8", len(data), sha256(data).hexdigest(), data
        ),
    )
