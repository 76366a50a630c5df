"""The outbox sent: notifications written with their ticket changes (server/domain/
notifications.py), mailed over SMTP with TLS after the commit, oldest first.

Every few seconds the rows not sent are sent one by one, oldest first. A sent one is marked
sent. One that fails is retried after 1, 2, 4, ... minutes (at most an hour apart) and given
up after MAX_ATTEMPTS with the relay's last answer; a round stops at the first failure. A row
waiting for its retry holds back the later rows to the same address, so that each requester
gets their mails in the order of the changes once the relay is back. A row whose address the
builder refuses is given up at once. smtplib is sync: each send runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.notifications import MAX_ATTEMPTS, retry_after
from sonde.server.intake.smtp_notify import (
    InvalidNotification,
    NotificationKind,
    NotificationNotSent,
    SmtpRelay,
    SmtpSecurity,
    build_notification,
    send_notification,
)
from sonde.server.storage.db import Database
from sonde.server.storage.tables import outbox
from sonde.server.storage.types import AnyRow

log = logging.getLogger(__name__)

PASSWORD_VARIABLE = "SONDE_SMTP_PASSWORD"  # noqa: S105 (the variable's name)
ROUND_S = 5.0
BATCH = 20
_SCHEMES = {
    "smtp+starttls": (587, SmtpSecurity.STARTTLS),
    "smtps": (465, SmtpSecurity.IMPLICIT_TLS),
}


class BadRelay(ValueError):
    """The SMTP settings cannot be used; the message says why."""


def smtp_relay(url: str, *, ca_file: Path | None = None) -> SmtpRelay:
    """The relay `url` names: smtp+starttls://[USER@]HOST[:PORT] or smtps://...; a login's
    password from SONDE_SMTP_PASSWORD."""
    try:
        where = urllib.parse.urlsplit(url)
        port = where.port
    except ValueError as error:
        raise BadRelay(f"{url[:80]!r} is not an SMTP URL: {error}") from None
    if where.scheme not in _SCHEMES:
        raise BadRelay(
            f"{url[:80]!r}: the relay is smtp+starttls://[USER@]HOST[:PORT] or "
            "smtps://[USER@]HOST[:PORT] (plain SMTP is refused)"
        )
    if where.password is not None:
        raise BadRelay(f"the password is not given in the URL: use {PASSWORD_VARIABLE}")
    if not where.hostname:
        raise BadRelay(f"{url[:80]!r}: say the relay's host")
    if ca_file is not None and not ca_file.is_file():
        raise BadRelay(f"the SMTP CA file {ca_file} does not exist")
    user = urllib.parse.unquote(where.username) if where.username else None
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if user is not None and not password:
        raise BadRelay(f"the relay's login {user} needs its password: set {PASSWORD_VARIABLE}")
    default_port, security = _SCHEMES[where.scheme]
    return SmtpRelay(
        host=where.hostname,
        port=port or default_port,
        security=security,
        ca_file=ca_file,
        user=user,
        password=password,
    )


def _unsent(connection: Connection) -> list[AnyRow]:
    return list(
        connection.execute(
            select(outbox)
            .where(outbox.c.sent_at.is_(None), outbox.c.given_up_at.is_(None))
            .order_by(outbox.c.id)
            .limit(BATCH)
        ).all()
    )


class NotificationSender:
    def __init__(self, db: Database, relay: SmtpRelay, sender: str, clock: Clock = utc_now) -> None:
        self._db = db
        self._relay = relay
        self._sender = sender
        self._clock = clock

    async def run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception:  # a round's bug must not end the sending
                log.exception("notifications: a round failed")
            await asyncio.sleep(ROUND_S)

    async def send_due(self) -> int:
        """Send what is due, oldest first, each requester's in the order of their changes (a
        row waiting for its retry holds back the later ones to the same address); the round
        stops at the first failure. How many went out."""
        sent = 0
        now = self._clock()
        held: set[str] = set()
        for row in await self._db.read(_unsent):
            if row.recipient in held or row.next_attempt_at > now:
                held.add(row.recipient)
                continue
            try:
                message = build_notification(
                    kind=NotificationKind(row.kind),
                    ticket_id=row.ticket_id,
                    title=row.title,
                    body=row.body,
                    sender=self._sender,
                    recipient=row.recipient,
                    recipient_name=row.recipient_name,
                )
            except (InvalidNotification, ValueError) as refused:
                await self._ended(row.id, given_up=True, error=f"not sendable: {refused}")
                continue
            try:
                await asyncio.to_thread(send_notification, self._relay, message)
            except (NotificationNotSent, OSError) as error:
                await self._failed(row, str(error))
                break  # the relay is likely down: the rest wait for the next round
            await self._ended(row.id, given_up=False, error="")
            sent += 1
        return sent

    async def _ended(self, row_id: int, *, given_up: bool, error: str) -> None:
        now = self._clock()
        values = {"given_up_at": now} if given_up else {"sent_at": now}

        def unit(connection: Connection) -> None:
            connection.execute(
                outbox.update()
                .where(outbox.c.id == row_id)
                .values(**values, last_error=error[:2000])
            )

        await self._db.write(unit)

    async def _failed(self, row: AnyRow, error: str) -> None:
        now = self._clock()
        attempts = int(row.attempts) + 1
        log.warning("notification %d to %s not sent (try %d): %s", row.id, row.recipient,
                    attempts, error)  # fmt: skip
        values: dict[str, object] = {
            "attempts": attempts,
            "next_attempt_at": now + retry_after(attempts),
            "last_error": error[:2000],
        }
        if attempts >= MAX_ATTEMPTS:
            values["given_up_at"] = now

        def unit(connection: Connection) -> None:
            connection.execute(outbox.update().where(outbox.c.id == row.id).values(**values))

        await self._db.write(unit)
