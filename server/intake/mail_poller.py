"""The mailbox read on a schedule: each new mail taken (a ticket or a comment), then marked
done in the mailbox (docs/mail.md, "Intake").

One round: log in, fetch the mails above the stored UID (in batches, oldest first), and for
each, parse it and take it (MailTickets.take: one transaction with its record and the new
position), and only then mark it done. A mail whose take failed is not marked: the round
stops there and the next one starts from it again. A connection dropped mid-fetch, or a
server that dies between the take and the mark, reads the mail again: its Message-ID is taken
already, so it makes nothing twice. A UIDVALIDITY change restarts from UID 0 with the new
value (Message-IDs still dedup). Errors are logged and stored with the mailbox's position
(`last_error`), and the next round comes after the interval, doubled after each failure up to
ten minutes.

imaplib is sync: every mailbox exchange runs in a thread (asyncio.to_thread), never on the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from sonde.server.domain.mail_tickets import MailAction, MailboxPosition, MailTickets
from sonde.server.intake.imap_mailbox import (
    ImapMailbox,
    MailboxAccount,
    MailboxError,
    UidValidityChanged,
)
from sonde.server.intake.mail_message import IntakeMail, parse_mail

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 600.0


@dataclass(frozen=True)
class RoundReport:
    opened: int = 0
    commented: int = 0
    already_taken: int = 0


class MailPoller:
    def __init__(
        self, account: MailboxAccount, mail_tickets: MailTickets, *, interval_s: float = 60.0
    ) -> None:
        self._account = account
        self._mail = mail_tickets
        self._interval_s = interval_s
        self.name = ImapMailbox(account).where

    async def run(self) -> None:
        """Rounds until cancelled."""
        wait = self._interval_s
        while True:
            try:
                await self.round()
                wait = self._interval_s
            except (MailboxError, OSError) as error:
                log.warning("mail intake from %s: %s", self.name, error)
                await self._note_error(str(error))
                wait = min(wait * 2, MAX_BACKOFF_S)
            except Exception as error:  # a round's bug must not end the mailbox's reading
                log.exception("mail intake from %s failed", self.name)
                await self._note_error(f"{type(error).__name__}: {error}")
                wait = min(wait * 2, MAX_BACKOFF_S)
            await asyncio.sleep(wait)

    async def round(self) -> RoundReport:
        """Read every new mail once; what became of them."""
        counts = {action: 0 for action in MailAction}
        mailbox = ImapMailbox(self._account)
        await asyncio.to_thread(mailbox.open)
        try:
            more = True
            while more:
                position = await self._mail.position(self.name)
                try:
                    batch = await asyncio.to_thread(
                        mailbox.fetch_since,
                        position.last_uid if position else 0,
                        position.uidvalidity if position else None,
                    )
                except UidValidityChanged as changed:
                    log.warning("mail intake from %s: %s", self.name, changed)
                    await self._mail.moved(self.name, MailboxPosition(changed.current, 0))
                    continue
                for fetched in batch.mails:
                    mail = await asyncio.to_thread(parse_mail, fetched.raw)
                    if fetched.truncated:
                        note = f"only the first {len(fetched.raw):,} of {fetched.size:,} bytes"
                        mail = _with_warning(mail, f"the mail was too large to fetch: {note}")
                    taken = await self._mail.take(self.name, batch.uidvalidity, fetched.uid, mail)
                    counts[taken.action] += 1
                    await asyncio.to_thread(mailbox.mark_done, fetched.uid)
                if not batch.mails and position is None:
                    await self._mail.moved(self.name, MailboxPosition(batch.uidvalidity, 0))
                more = batch.more
        finally:
            await asyncio.to_thread(mailbox.close)
        report = RoundReport(
            counts[MailAction.OPENED],
            counts[MailAction.COMMENTED],
            counts[MailAction.ALREADY_TAKEN],
        )
        if report != RoundReport():
            log.info(
                "mail intake from %s: %d opened, %d commented, %d taken before",
                self.name,
                report.opened,
                report.commented,
                report.already_taken,
            )
        return report

    async def _note_error(self, error: str) -> None:
        position = await self._mail.position(self.name)
        if position is not None:
            await self._mail.moved(self.name, position, error)


def _with_warning(mail: IntakeMail, warning: str) -> IntakeMail:
    return replace(mail, warnings=(*mail.warnings, warning))
