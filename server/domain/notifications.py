"""Notifications to the requester on open and resolve, kept in an outbox (docs/mail.md,
"Notifications").

A notification is a row of `outbox` written in the unit of work of the ticket change it tells:
a ticket opened or resolved, and the mail that says so, commit together or not at all, and a
server that dies before sending sends it after its restart. The sender (mail_sender.py) sends
the due rows, oldest first, and marks each sent; a failure is retried after 1, 2, 4, ...
minutes (at most an hour apart) and given up after MAX_ATTEMPTS, saying why.

A requester is written to when the ticket's requester holds a mail address ("Marie Dupont
<marie@example.org>", as a mail's ticket has it, or a bare address); a name alone gets no mail.
Nothing is queued unless the server sends notifications (`sonde-server run --smtp`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy.engine import Connection

from sonde.server.domain.ticket_model import TicketRecord
from sonde.server.storage.tables import outbox

MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(hours=1)
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_BODIES = {
    "opened": "Your request has been opened as ticket {reference}: {title}.\n\n"
    "Reply to this mail, keeping {reference} in the subject, to add to it.",
    "resolved": "Your request {reference} is resolved: {title}.\n\n{resolution}\n\n"
    "If it is not, reply to this mail, keeping {reference} in the subject.",
}


def requester_address(requester: str) -> tuple[str, str] | None:
    """(address, name) of a requester line that holds one mail address, else None."""
    if any(char in requester for char in "\r\n\0"):
        return None
    name, address = parseaddr(requester)
    if not _ADDRESS.fullmatch(address) or len(address) > 254:
        return None
    return address, name


def is_mail_address(text: str) -> bool:
    """Whether `text` is one plain mail address and nothing else: marie@example.org."""
    found = requester_address(text)
    return found is not None and found[0] == text


def retry_after(attempts: int) -> timedelta:
    """The wait before the next try once `attempts` have failed: doubling, at most LAST_RETRY."""
    delay: timedelta = FIRST_RETRY * (1 << min(max(attempts - 1, 0), 10))
    return min(delay, LAST_RETRY)


def queue_to_requester(
    connection: Connection,
    kind: str,
    ticket: TicketRecord,
    now: datetime,
    *,
    resolution: str = "",
    rating_link: str = "",
) -> bool:
    """Queue the `kind` mail to the ticket's requester; False when it has no address.
    `rating_link`: the satisfaction question's link (satisfaction.py), said at the end."""
    found = requester_address(ticket.requester)
    if found is None:
        return False
    address, name = found
    reference = f"[Sonde #{ticket.id}]"
    body = _BODIES[kind].format(reference=reference, title=ticket.title, resolution=resolution)
    if rating_link:
        body += f"\n\nHow did we do? Rate our answer from 1 to 5: {rating_link}\n"
    connection.execute(
        outbox.insert(),
        {
            "kind": kind,
            "ticket_id": ticket.id,
            "recipient": address,
            "recipient_name": name[:200],
            "title": ticket.title[:200],
            "body": body,
            "created_at": now,
            "next_attempt_at": now,
        },
    )
    return True
