"""Closure quality: what a ticket's record must hold before it closes, and the time spent.

Resolving asks for an outcome (the resolution category), a note and the time spent. Closing
checks that the record is complete and otherwise refuses with the whole list of what is
missing, each item saying how to give it:

- a category from the tree (`sonde ticket set N --category PATH`);
- the requester;
- the machine, for an incident (a service request may have none);
- an outcome;
- the time spent;
- the verification of the last fix run on the ticket: ended (not pending or waiting for a
  restart), and cleared when the outcome says fixed.

A request closed as duplicate or cancelled (with the note saying of what, or why) was never
worked: its outcome and note are its whole record. A run's `--resolve-if-cleared` resolves
as `fixed` (its verification said so) without the time spent: the technician logs it
(`sonde ticket time N 15m`) before closing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.server.domain.ticket_model import TicketKind, TicketOutcome, TicketRecord
from sonde.server.errors import InvalidArgument
from sonde.server.storage.tables import commands, script_runs

MAX_TIME_SPENT = timedelta(hours=24)  # at once: a day's work at most per entry
# Outcomes of a ticket that was never worked on: no machine nor time asked for.
NOT_WORKED = frozenset({TicketOutcome.DUPLICATE, TicketOutcome.CANCELLED})
_UNFINISHED = {"pending": "still pending", "after_restart": "waiting for the machine to restart"}


def checked_time_spent(spent: timedelta) -> int:
    """Seconds of a time spent: more than nothing, at most MAX_TIME_SPENT at once."""
    if spent <= timedelta(0):
        raise InvalidArgument("the time spent must be more than nothing, e.g. 15m or 1h30m")
    if spent > MAX_TIME_SPENT:
        raise InvalidArgument(
            f"{spent} at once is more than a day: log it in parts, as it was spent"
        )
    return int(spent.total_seconds())


def shown_time(seconds: int) -> str:
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def last_fix_verification(connection: Connection, ticket_id: int) -> tuple[str, str] | None:
    """(run id, verification) of the newest run on the ticket that has something to verify."""
    row = connection.execute(
        select(script_runs.c.command_id, script_runs.c.verification)
        .join(commands, commands.c.id == script_runs.c.command_id)
        .where(commands.c.ticket_id == ticket_id)
        .where(script_runs.c.verification.not_in(["", "none"]))
        .order_by(commands.c.created_at.desc(), commands.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (str(row.command_id), str(row.verification))


def missing_for_close(
    connection: Connection, ticket: TicketRecord, outcome: TicketOutcome | None
) -> list[str]:
    """What the record lacks to be closed with `outcome`, each saying how to give it. A
    request closed as duplicate or cancelled was never worked: its outcome and the note saying
    why are its record."""
    if outcome in NOT_WORKED:
        return []
    missing = []
    if ticket.category is None:
        missing.append(f"a category (sonde ticket set {ticket.id} --category PATH)")
    if not ticket.requester:
        missing.append(f"the requester (sonde ticket set {ticket.id} --requester NAME)")
    if ticket.kind is TicketKind.INCIDENT and ticket.agent_id is None:
        missing.append(f"the machine, for an incident (sonde ticket set {ticket.id} --agent NAME)")
    if outcome is None:
        missing.append("an outcome (resolve it with --outcome, or close with --outcome)")
    if ticket.time_spent_s == 0:
        missing.append(f"the time spent (sonde ticket time {ticket.id} 15m)")
    last = last_fix_verification(connection, ticket.id)
    if last is not None:
        run_id, verification = last
        if verification in _UNFINISHED:
            missing.append(
                f"the verification of run {run_id[:8]}, {_UNFINISHED[verification]} "
                f"(sonde run show {run_id[:8]})"
            )
        elif verification == "not_cleared" and outcome is TicketOutcome.FIXED:
            missing.append(
                f"a fix that held: run {run_id[:8]}'s finding did not clear; reopen and fix "
                "it again, or resolve with the outcome it had (workaround, third-party, ...)"
            )
    return missing
