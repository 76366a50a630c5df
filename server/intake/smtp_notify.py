"""Notifications by mail: the requester when a ticket opens and resolves, the assignee when it
is assigned and when its SLA is at risk, each subject carrying the ticket's reference.

`build_notification` makes the message: one sender and one recipient address, refused if
either holds a line break or is not one address; names and subject are one line (control
characters become spaces), so nothing that came in by mail can add a header. The body is
plain text. `send_notification` sends it over SMTP with STARTTLS or implicit TLS, the server's
certificate verified against a CA file or the system store, an optional login, `timeout`
seconds on every socket operation. Whatever fails, `NotificationNotSent` says what the
server answered. Sync (smtplib): from asyncio, `await asyncio.to_thread(send_notification, ...)`.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from enum import StrEnum
from pathlib import Path

from sonde.server.intake.mail_message import _clean_line, ticket_reference

TITLE_MAX_CHARS = 150
# Python's folder breaks "Subject: [Sonde #17] ..." before the reference, which readers then
# show with a leading space; a subject is at most about 200 characters, well under RFC 5322's
# 998, so it is never folded.
_POLICY = SMTP.clone(max_line_length=998)


class NotificationKind(StrEnum):
    OPENED = "opened"  # to the requester
    RESOLVED = "resolved"  # to the requester
    ASSIGNED = "assigned"  # to the assignee
    SLA_AT_RISK = "sla_at_risk"  # to the assignee
    SLA_BREACHED = "sla_breached"  # to the assignee


_WORDING: dict[NotificationKind, str] = {
    NotificationKind.OPENED: "Your request is open",
    NotificationKind.RESOLVED: "Your request is resolved",
    NotificationKind.ASSIGNED: "Assigned to you",
    NotificationKind.SLA_AT_RISK: "SLA at risk",
    NotificationKind.SLA_BREACHED: "SLA breached",
}


class InvalidNotification(ValueError):
    """The notification was refused before sending: an address or a field is not usable."""


class NotificationNotSent(Exception):
    """The SMTP server could not be reached, was not trusted, or refused the mail; the message
    says which and what it answered."""


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # port 587
    IMPLICIT_TLS = "tls"  # port 465


@dataclass(frozen=True)
class SmtpRelay:
    host: str
    port: int = 587
    security: SmtpSecurity = SmtpSecurity.STARTTLS
    ca_file: Path | None = None  # None: the system's trust store
    user: str | None = None  # None: no login
    password: str = ""
    timeout: float = 30.0


def notification_subject(kind: NotificationKind, ticket_id: int, title: str) -> str:
    """`[Sonde #17] Your request is open: Printer on floor 2 jams`."""
    return f"{ticket_reference(ticket_id)} {_WORDING[kind]}: {_clean_line(title, TITLE_MAX_CHARS)}"


def mail_address(address: str, name: str = "") -> Address:
    """One address, refused unless it is exactly one `local@domain` with no line break; the
    display name becomes one line."""
    if any(ch in address for ch in "\r\n\0") or _clean_line(address, 320) != address.strip():
        raise InvalidNotification(f"an address may not hold control characters: {address!r}")
    address = address.strip()
    if address.count("@") != 1 or any(ch in address for ch in " ,;<>\"'()"):
        raise InvalidNotification(f"not one mail address: {address!r}")
    try:
        parsed = Address(display_name=_clean_line(name, 200), addr_spec=address)
    except (ValueError, IndexError) as error:
        raise InvalidNotification(f"not a mail address: {address!r} ({error})") from error
    if not parsed.username or not parsed.domain:
        raise InvalidNotification(f"not a mail address: {address!r}")
    return parsed


def build_notification(
    *,
    kind: NotificationKind,
    ticket_id: int,
    title: str,
    body: str,
    sender: str,
    recipient: str,
    sender_name: str = "Sonde helpdesk",
    recipient_name: str = "",
) -> EmailMessage:
    message = EmailMessage(policy=_POLICY)
    message["From"] = mail_address(sender, sender_name)
    message["To"] = mail_address(recipient, recipient_name)
    message["Subject"] = notification_subject(kind, ticket_id, title)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=message["From"].addresses[0].domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    message["X-Sonde-Ticket"] = str(ticket_id)
    message.set_content(body.replace("\r\n", "\n").replace("\r", "\n"))
    return message


def _tls_context(relay: SmtpRelay) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(relay.ca_file) if relay.ca_file is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def send_notification(relay: SmtpRelay, message: EmailMessage) -> None:
    where = f"the SMTP server {relay.host}:{relay.port}"
    context = _tls_context(relay)
    try:
        if relay.security is SmtpSecurity.IMPLICIT_TLS:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                relay.host, relay.port, context=context, timeout=relay.timeout
            )
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout)
        with client:
            if relay.security is SmtpSecurity.STARTTLS:
                client.starttls(context=context)
                client.ehlo()
            if relay.user is not None:
                client.login(relay.user, relay.password)
            client.send_message(message)
    except ssl.SSLCertVerificationError as error:
        raise NotificationNotSent(
            f"{where} was refused: its certificate is not trusted ({error.verify_message})"
        ) from error
    except smtplib.SMTPRecipientsRefused as error:
        answers = "; ".join(
            f"{who}: {code} {_text(text)}" for who, (code, text) in error.recipients.items()
        )
        raise NotificationNotSent(f"{where} refused the recipient: {answers}") from error
    except smtplib.SMTPResponseException as error:
        raise NotificationNotSent(
            f"{where} answered {error.smtp_code} {_text(error.smtp_error)}"
        ) from error
    except smtplib.SMTPNotSupportedError as error:
        raise NotificationNotSent(f"{where} does not offer it: {error}") from error
    except (smtplib.SMTPException, ssl.SSLError, OSError) as error:
        raise NotificationNotSent(f"{where} could not be used: {error}") from error


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", errors="replace") if isinstance(answer, bytes) else answer
