"""The requester's satisfaction: on resolve, a link in the "resolved" mail asks for a rating from
1 to 5 and a comment (docs/web.md, "Satisfaction"); the answer is stored, written on the
ticket's timeline, and counted in the interventions report.

The link holds a random secret (RATING_TOKEN_BYTES); the database keeps only its SHA-256, so
neither a copy of it nor a technician can answer for the requester. A link works for
RATING_LIFETIME and once: a second answer is refused, saying it was given. A ticket resolved
again (reopened, resolved anew) asks again, with a new link; each answer is kept.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.notifications import requester_address
from sonde.server.domain.text import checked_text
from sonde.server.domain.ticket_model import TicketEventKind, TicketRecord
from sonde.server.domain.timeline import append_event
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import satisfaction, tickets

RATING_LIFETIME = timedelta(days=30)
RATING_TOKEN_BYTES = 24
MAX_COMMENT = 2000
RATER = "requester"
ASKED_BY_MAIL = "mail"  # satisfaction.asked_on: a link in the "resolved" mail


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def ask_in(connection: Connection, ticket: TicketRecord, now: datetime, base_url: str) -> str:
    """The rating link for a ticket just resolved, stored in the resolve's transaction; "" when
    the server asks none (no web listener) or the requester cannot be mailed it."""
    if not base_url or requester_address(ticket.requester) is None:
        return ""
    token = secrets.token_urlsafe(RATING_TOKEN_BYTES)
    connection.execute(
        satisfaction.insert(),
        {
            "ticket_id": ticket.id,
            "token_sha256": token_sha256(token),
            "asked_on": ASKED_BY_MAIL,
            "asked_at": now,
            "expires_at": now + RATING_LIFETIME,
        },
    )
    return f"{base_url.rstrip('/')}/rate/{token}"


@dataclass(frozen=True)
class RatingAsked:
    ticket_id: int
    title: str
    rating: int | None  # the answer given, if any
    expired: bool


@dataclass(frozen=True)
class Rated:
    ticket_id: int
    rating: int


RATING_CHOICE = "choose a rating from 1 (bad) to 5 (very good)"


def checked_rating(rating: str) -> int:
    if rating.strip() not in {"1", "2", "3", "4", "5"}:
        raise InvalidArgument(RATING_CHOICE)
    return int(rating)


class Satisfaction:
    def __init__(self, db: Database, writes: AuditedWrites, clock: Clock = utc_now) -> None:
        self._db = db
        self._writes = writes
        self._clock = clock

    async def asked(self, token: str) -> RatingAsked:
        """What the link asks about; NotFound for a link that is no link of ours."""

        def unit(connection: Connection) -> RatingAsked:
            row = connection.execute(
                select(satisfaction, tickets.c.title)
                .join(tickets, tickets.c.id == satisfaction.c.ticket_id)
                .where(satisfaction.c.token_sha256 == token_sha256(token))
            ).first()
            if row is None:
                raise NotFound("this rating link is not one of ours, or was mistyped")
            return RatingAsked(
                int(row.ticket_id),
                str(row.title),
                None if row.rating is None else int(row.rating),
                row.expires_at <= self._clock(),
            )

        return await self._db.read(unit)

    async def answer(self, token: str, rating: int, comment: str, peer: str) -> Rated:
        """Store the requester's answer, once, while the link lives (audited `ticket.rated`)."""
        if not 1 <= rating <= 5:
            raise InvalidArgument(RATING_CHOICE)
        comment = checked_text("the comment", comment, max_chars=MAX_COMMENT)

        def unit(connection: Connection, entry: AuditEntry) -> Rated:
            now = self._clock()
            row = connection.execute(
                select(satisfaction)
                .where(satisfaction.c.token_sha256 == token_sha256(token))
                .with_for_update()
            ).first()
            if row is None:
                raise NotFound("this rating link is not one of ours, or was mistyped")
            entry.ticket_id = int(row.ticket_id)
            if row.rating is not None:
                raise Conflict(f"this ticket was rated already ({row.rating}/5): thank you")
            if row.expires_at <= now:
                raise Conflict("this rating link has expired (links work for 30 days)")
            entry.detail["rating"] = rating
            said = f"Rated {rating}/5 by the requester"
            return store_answer_in(connection, row, rating, comment, now=now, said=said)

        return await self._writes.run(RATER, "ticket.rated", unit, peer=peer)


def store_answer_in(
    connection: Connection,
    question: Row[Any],
    rating: int,
    comment: str,
    *,
    now: datetime,
    said: str,
) -> Rated:
    """Store the answer to `question` (a satisfaction row, locked) and write it on its ticket's
    timeline, by the requester: "`said`: comment"."""
    connection.execute(
        update(satisfaction)
        .where(satisfaction.c.id == question.id)
        .values(rating=rating, comment=comment, answered_at=now)
    )
    ticket_id = int(question.ticket_id)
    body = f"{said}: {comment}" if comment else said
    append_event(connection, ticket_id, TicketEventKind.RATED, RATER, now, body=body)
    return Rated(ticket_id, rating)
