"""Requests from the self-service web form (server/web/, docs/web.md): a person's name, how to
reach them, their machine's name and what is wrong become a ticket of channel web_form.

What a person types is checked field by field, each refusal naming its field, so the form can
be shown again with what they wrote and what to change: nothing they typed is lost to one bad
field. Text is kept as typed (HTML and script included: every reader shows it inert); control
and format characters, which could rewrite a technician's terminal, are refused.

Each form carries a one-time submission id (web_submissions): the same form sent twice, by a
reload or a double click, or by two requests racing, opens one ticket, and the second answer
names it. The machine is linked only when one live agent reports exactly that host name; any
other name stays in the description, "as typed", for the technician to look up: the form is
open to anyone, so a typed name must never pick a machine by prefix.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.notifications import is_mail_address
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.text import bad_character
from sonde.server.domain.ticket_model import TicketChannel
from sonde.server.domain.tickets import MAX_TITLE_CHARS, Tickets
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, web_submissions

WEB_ACTOR = Principal(0, "web-form", Role.L1)
MAX_NAME = 100
MAX_CONTACT = 254
MAX_MACHINE = 64
MAX_DESCRIPTION = 4000
MIN_DESCRIPTION = 3
SUBMISSION_ID = re.compile(r"[A-Za-z0-9_-]{22,64}")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{3,30}")
_FIELDS = ("name", "contact", "machine", "description")


@dataclass(frozen=True)
class FormRequest:
    name: str
    contact: str  # a mail address or a phone number
    machine: str  # "" when the person does not know it
    description: str

    @property
    def requester(self) -> str:
        """`Marie Dupont <marie@example.org>` (then mailed on open and resolve) or
        `Marie Dupont (+33 6 12 34 56 78)`."""
        if is_mail_address(self.contact):
            return f"{self.name} <{self.contact}>"
        return f"{self.name} ({self.contact})"

    @property
    def title(self) -> str:
        first = next((line.strip() for line in self.description.splitlines() if line.strip()), "")
        return first if len(first) <= 120 else first[:119] + "…"


class FormRefused(Exception):
    """The form as sent, with what is wrong per field (field -> reason)."""

    def __init__(self, values: dict[str, str], problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {why}" for name, why in problems.items()))
        self.values = values
        self.problems = problems


@dataclass(frozen=True)
class WebSubmitted:
    ticket_id: int
    again: bool  # this submission id had opened it already


def new_submission_id() -> str:
    return secrets.token_urlsafe(24)


def _field(
    values: dict[str, str],
    problems: dict[str, str],
    name: str,
    limit: int,
    *,
    required: bool,
    multiline: bool = False,
) -> str:
    # A lone CR is a line break too: a one-line field refuses it as such.
    text = values.get(name, "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if required and not text:
        problems[name] = "this field is required"
    elif len(text) > limit:
        problems[name] = f"{len(text):,} characters; at most {limit:,}"
    elif not multiline and "\n" in text:
        problems[name] = "one line only"
    elif (bad := bad_character(text, multiline=multiline)) is not None:
        problems[name] = f"the character U+{ord(bad):04X} is not accepted"
    return text


def checked_form(raw: dict[str, str]) -> FormRequest:
    """The form's fields checked; FormRefused lists every field to change."""
    values = {name: raw.get(name, "") for name in _FIELDS}
    problems: dict[str, str] = {}
    name = _field(values, problems, "name", MAX_NAME, required=True)
    contact = _field(values, problems, "contact", MAX_CONTACT, required=True)
    machine = _field(values, problems, "machine", MAX_MACHINE, required=False)
    description = _field(
        values, problems, "description", MAX_DESCRIPTION, required=True, multiline=True
    )
    if "contact" not in problems and not (is_mail_address(contact) or _PHONE.fullmatch(contact)):
        problems["contact"] = "a mail address (marie@example.org) or a phone number"
    if "name" not in problems and any(char in name for char in '<>"@,;'):
        problems["name"] = 'a name only, without < > " @ , ;'
    if "description" not in problems and len(description) < MIN_DESCRIPTION:
        problems["description"] = "say what is wrong in a few words"
    if problems:
        raise FormRefused(values, problems)
    return FormRequest(name, contact, machine, description)


def _machine(connection: Connection, typed: str) -> str | None:
    """The id of the one live agent reporting exactly this host name (any case), else None."""
    if not typed:
        return None
    found = connection.execute(
        select(agents.c.id)
        .where(func.lower(agents.c.hostname) == typed.lower())
        .where(agents.c.revoked_at.is_(None), agents.c.removed_at.is_(None))
        .limit(2)
    ).all()
    return str(found[0].id) if len(found) == 1 else None


class WebRequests:
    def __init__(
        self, db: Database, tickets: Tickets, writes: AuditedWrites, clock: Clock = utc_now
    ) -> None:
        self._db = db
        self._tickets = tickets
        self._writes = writes
        self._clock = clock

    async def submit(self, form: FormRequest, submission_id: str, peer: str) -> WebSubmitted:
        """Open the form's ticket, once per submission id (a malformed id: a fresh one)."""
        if not SUBMISSION_ID.fullmatch(submission_id):
            submission_id = new_submission_id()

        def unit(connection: Connection, entry: AuditEntry) -> WebSubmitted:
            earlier = _earlier(connection, submission_id)
            if earlier is not None:
                entry.detail["again"] = "yes"
                return WebSubmitted(earlier, again=True)
            agent_id = _machine(connection, form.machine)
            notes = [form.description]
            if form.machine and agent_id is None:
                notes.append(f"Machine as typed (no agent has that name): {form.machine}")
            elif form.machine:
                notes.append(f"Machine as typed: {form.machine}")
            ticket = self._tickets.open_in(
                connection,
                entry,
                WEB_ACTOR,
                title=form.title[:MAX_TITLE_CHARS],
                description="\n\n".join(notes),
                channel=TicketChannel.WEB_FORM,
                requester=form.requester,
                agent=agent_id,
            )
            connection.execute(
                web_submissions.insert(),
                {
                    "submission_id": submission_id,
                    "ticket_id": ticket.id,
                    "peer": peer[:64],
                    "submitted_at": self._clock(),
                },
            )
            entry.ticket_id = ticket.id
            return WebSubmitted(ticket.id, again=False)

        try:
            return await self._writes.run(WEB_ACTOR.name, "web.request", unit, peer=peer)
        except IntegrityError:
            # The same submission, sent twice at once: the other one committed its ticket.
            earlier = await self._db.read(lambda connection: _earlier(connection, submission_id))
            if earlier is None:
                raise
            return WebSubmitted(earlier, again=True)


def _earlier(connection: Connection, submission_id: str) -> int | None:
    found = connection.execute(
        select(web_submissions.c.ticket_id).where(web_submissions.c.submission_id == submission_id)
    ).scalar()
    return int(found) if found is not None else None
