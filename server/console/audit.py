"""`sonde audit`: the audit log, newest first, for those allowed to read it (audit.read).

sonde audit [--who NAME] [--action ACTION|PREFIX*] [--agent AGENT] [--ticket N]
            [--since 2h|2026-12-01T09:00] [--limit N] [--before ID]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.text import Text

from sonde.server.console.arguments import audit_row, ticket_number
from sonde.server.console.context import Context
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import (
    format_time,
    machine_cell,
    short_id_chars,
    text,
)
from sonde.server.console.users import MAX_TOKEN_LIFETIME_S, seconds_between
from sonde.v1 import console_pb2

MAX_LIMIT = 1000


def since(value: str) -> datetime:
    """'2h', '3d' (that long ago) or an ISO date or time (local unless it says its zone)."""
    try:
        ago = seconds_between(
            value, shortest_s=1, longest_s=MAX_TOKEN_LIFETIME_S, bounds="1s and 3650d"
        )
    except argparse.ArgumentTypeError:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--since {value!r}: expected a span such as 2h or 3d, or a time such as "
                "2026-12-01T09:00"
            ) from None
        return moment.astimezone(UTC)  # a naive time is local
    return datetime.fromtimestamp(time.time() - ago, UTC)


def limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"--limit {value!r}: expected 1 to {MAX_LIMIT}")
    return int(value)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "audit",
        parents=[common],
        help="the audit log: who did what, to which machine, on which ticket (admin)",
        description="List audit entries newest first; every filter given must match.",
    )
    parser.add_argument("--who", default="", metavar="NAME", help="only this actor's")
    parser.add_argument(
        "--action", default="", metavar="ACTION", help="e.g. user.disable, or ticket.* for all"
    )
    parser.add_argument("--agent", default="", metavar="AGENT", help="only about this machine")
    parser.add_argument(
        "--ticket", type=ticket_number, default=0, metavar="N", help="only ticket N's"
    )
    parser.add_argument(
        "--since", type=since, default=None, metavar="WHEN", help="2h, 3d, or 2026-12-01T09:00"
    )
    parser.add_argument("--limit", type=limit, default=100, metavar="N", help="at most N (100)")
    parser.add_argument(
        "--before", type=audit_row, default=0, metavar="ID", help="older than row ID"
    )
    parser.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListAuditRequest(
        actor=args.who,
        action=args.action,
        agent=args.agent,
        ticket_id=args.ticket,
        limit=args.limit,
        before_id=args.before,
    )
    if args.since is not None:
        request.since.FromDatetime(args.since)
    response = client.call(client.stub.ListAudit, request)
    renderables: list[ListTable | Text] = [audit_table(response.entries)]
    if response.more:
        oldest = response.entries[-1].id
        renderables.append(
            Text(f"older entries match too: add --before {oldest} for the next page", style="dim")
        )
    ctx.out.result(response, *renderables)
    return 0


def audit_table(entries: Sequence[console_pb2.AuditEntry]) -> ListTable:
    """One row an entry: when with its zone, who, what, the machine (the name it reports over
    the start of its id), the ticket and ok or refused; why it was refused and what the entry
    recorded are wrapped under the row."""
    id_chars = short_id_chars(entry.agent_id for entry in entries if entry.agent_id)
    table = ListTable(
        "Audit log, newest first",
        [
            Column("when"),
            Column("who", Give.CUT),
            Column("action"),
            Column("machine", Give.CUT, min_width=id_chars),
            Column("#", justify="right"),  # the ticket, as in ticket list
            Column("result"),
            Column("row", justify="right", optional=True),
        ],
    )
    for entry in entries:
        refused = entry.result != "ok"
        table.add_row(
            format_time(entry.at),
            text(entry.actor),
            text(entry.action),
            machine_cell(entry.agent_hostname, entry.agent_id, id_chars)
            if entry.agent_id
            else Text("-"),
            str(entry.ticket_id) if entry.ticket_id else "-",
            Text("refused", style="yellow") if refused else Text("ok"),
            str(entry.id),
            detail=_detail(entry) if refused or entry.detail not in ("", "{}") else None,
        )
    return table


def _detail(entry: console_pb2.AuditEntry) -> Text:
    """Why it was refused (the server's words), then what the entry recorded (its JSON)."""
    lines: list[Text] = []
    if entry.result != "ok":
        lines.append(text(entry.result.removeprefix("refused").lstrip(": ") or entry.result))
    if entry.detail not in ("", "{}"):
        lines.append(text(entry.detail, style="dim"))
    return Text("\n").join(lines)
