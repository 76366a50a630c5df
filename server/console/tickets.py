"""`sonde ticket open|list|show|comment|assign|resolve|close|reopen` (escalate, wait and resume:
ticket_flow.py; set, take, hand-back and time: ticket_handling.py)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

from rich.text import Text

from sonde.server.console import requesters, ticket_flow, ticket_handling
from sonde.server.console.arguments import (
    page_limit,
    page_offset,
    priority,
    snapshot_number,
    ticket_number,
    time_spent,
)
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.render import machine_name
from sonde.server.console.render_ticket import level_label, status_label, ticket_view, tickets_table
from sonde.v1 import console_pb2

CHANNELS = {
    "phone": console_pb2.TICKET_CHANNEL_PHONE,
    "email": console_pb2.TICKET_CHANNEL_EMAIL,
    "web": console_pb2.TICKET_CHANNEL_WEB_FORM,
    "agent": console_pb2.TICKET_CHANNEL_AGENT,
    "monitoring": console_pb2.TICKET_CHANNEL_MONITORING,
}
STATUSES = {
    "new": console_pb2.TICKET_STATUS_NEW,
    "in_progress": console_pb2.TICKET_STATUS_IN_PROGRESS,
    "waiting": console_pb2.TICKET_STATUS_WAITING,
    "resolved": console_pb2.TICKET_STATUS_RESOLVED,
    "closed": console_pb2.TICKET_STATUS_CLOSED,
}
LEVELS = {"l1": console_pb2.TICKET_LEVEL_L1, "l2": console_pb2.TICKET_LEVEL_L2}

EnumT = TypeVar("EnumT")


def _parse_choice(what: str, choices: Mapping[str, EnumT], value: str) -> EnumT:
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in choices:
        expected = ", ".join(name.replace("_", "-") for name in choices)
        raise argparse.ArgumentTypeError(f"unknown {what} {value!r}: expected one of {expected}")
    return choices[key]


def channel(value: str) -> console_pb2.TicketChannel.ValueType:
    return _parse_choice("channel", CHANNELS, value)


def status(value: str) -> console_pb2.TicketStatus.ValueType:
    return _parse_choice("status", STATUSES, value)


def level(value: str) -> console_pb2.TicketLevel.ValueType:
    return _parse_choice("level", LEVELS, value)


def _text_argument(words: list[str], what: str) -> str:
    """Words joined by spaces; a lone '-' reads the text from stdin (for several lines)."""
    value = sys.stdin.read() if words == ["-"] else " ".join(words)
    if not value.strip():
        raise CliError("INVALID_ARGUMENT", f"the {what} is empty")
    return value.strip()


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    ticket = commands.add_parser("ticket", parents=[common], help="open and work tickets")
    actions = ticket.add_subparsers(dest="ticket_command", metavar="COMMAND")
    actions.required = True

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, parents=[common], help=help_text, description=help_text)
        if name not in ("open", "list"):
            parser.add_argument("id", type=ticket_number, metavar="N", help="ticket number")
        return parser

    opened = action("open", "open a ticket")
    opened.add_argument("--title", required=True, help="what the user reports, in one line")
    opened.add_argument("--description", default="", help="details")
    opened.add_argument("--channel", type=channel, default=0, help=", ".join(CHANNELS))
    opened.add_argument(
        "--requester",
        default="",
        help="who reported it; the start of a word of someone who called before takes theirs",
    )
    opened.add_argument(
        "--new-requester", action="store_true", help="take --requester as typed, not looked up"
    )
    opened.add_argument("--priority", type=priority, default=0, help="p1 (critical) to p4 (low)")
    opened.add_argument(
        "--agent",
        default="",
        metavar="AGENT",
        help="the workstation concerned; `usual`: the requester's usual machine",
    )
    opened.add_argument("--assignee", default="", metavar="USER", help="who works on it")
    opened.add_argument(
        "--kind", type=ticket_handling.kind, default=0, help="incident (default) or request"
    )
    opened.add_argument("--category", default="", metavar="PATH", help="e.g. printing/spooler")
    opened.add_argument(
        "--contract", default="", metavar="NAME", help="the customer group whose SLA applies"
    )
    opened.add_argument(
        "--snapshot",
        type=snapshot_number,
        default=0,
        metavar="ID",
        help="attach an existing diagnostic",
    )
    opened.set_defaults(handler=run_open)

    listed = action("list", "list tickets (closed ones only with --all or --status closed)")
    listed.add_argument(
        "--status",
        type=status,
        nargs="+",
        action="extend",
        default=[],
        metavar="S",
        help="new, in-progress, waiting, resolved, closed",
    )
    listed.add_argument("--level", type=level, default=0, help="l1 or l2")
    who = listed.add_mutually_exclusive_group()
    who.add_argument("--assignee", default="", metavar="USER")
    who.add_argument("--mine", action="store_true", help="assigned to you")
    listed.add_argument("--agent", default="", metavar="AGENT")
    listed.add_argument("--all", action="store_true", help="include closed tickets")
    listed.add_argument(
        "--limit",
        type=page_limit,
        default=0,
        metavar="N",
        help="at most N (1 to 1000, default 100)",
    )
    listed.add_argument(
        "--offset", type=page_offset, default=0, metavar="N", help="skip the first N (paging)"
    )
    listed.set_defaults(handler=run_list)

    action("show", "a ticket with its SLA and timeline").set_defaults(handler=run_show)

    comment = action("comment", "add a comment to the timeline")
    comment.add_argument("text", nargs="+", metavar="TEXT", help="the comment ('-': stdin)")
    comment.set_defaults(handler=run_comment)

    assign = action("assign", "assign to USER (default: yourself)")
    assign.add_argument("user", nargs="?", default="", metavar="USER")
    assign.set_defaults(handler=run_assign)

    ticket_flow.register(action)  # escalate, wait, resume
    ticket_handling.register_ticket_actions(action)  # set, take, hand-back, time

    _closure_actions(action)  # resolve, close

    reopen = action("reopen", "reopen a resolved or closed ticket")
    reopen.add_argument("--reason", required=True, help="why it is not fixed")
    reopen.set_defaults(handler=run_reopen)


def _closure_actions(action: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """`resolve` and `close`: the outcome and the time spent that closure needs."""
    resolve = action("resolve", "mark resolved: what fixed it, how, and the time spent")
    resolve.add_argument("--resolution", required=True, help="what fixed it")
    resolve.add_argument(
        "--outcome",
        type=ticket_handling.outcome,
        required=True,
        help=", ".join(ticket_handling.OUTCOMES),
    )
    resolve.add_argument(
        "--time-spent",
        type=time_spent,
        required=True,
        metavar="TIME",
        help="the time spent on it (15m, 1h30m), added to its total",
    )
    resolve.set_defaults(handler=run_resolve)

    close = action("close", "close a ticket whose record is complete")
    close.add_argument("--note", default="", help="a closing note")
    close.add_argument(
        "--outcome",
        type=ticket_handling.outcome,
        default=0,
        help="closing an unresolved ticket: why (duplicate, cancelled)",
    )
    close.set_defaults(handler=run_close)


def _changed(ctx: Context, ticket: console_pb2.Ticket, what: str) -> None:
    assignee = f", assigned to {ticket.assignee}" if ticket.assignee else ""
    # The machine by the name it reports and its id (for `open`: whom --agent reached).
    agent = (
        f", agent {machine_name(ticket.agent_hostname, ticket.agent_id, ticket.agent_removed)}"
        if ticket.agent_id
        else ""
    )
    ctx.out.done(
        f"ticket #{ticket.id} {what}: {status_label(ticket.status)} "
        f"({level_label(ticket.level)}){assignee}{agent}"
    )


def run_open(args: argparse.Namespace, ctx: Context) -> int:
    if not args.title.strip():
        raise CliError("INVALID_ARGUMENT", "--title is empty: say what the user reports")
    client = ctx.client()
    requester, agent, suggested = args.requester.strip(), args.agent, None
    known = None
    if requester and not args.new_requester:
        known = requesters.looked_up(client, requester)
        requester = known.requester if known is not None else requester
    usual = requesters.usual_machine(known)
    if agent.strip().lower() == requesters.USUAL:
        if usual is None:
            raise CliError(
                "INVALID_ARGUMENT",
                f"--agent usual: {requester or 'the requester'} has no machine on past tickets",
            )
        agent = usual.agent_id
    elif not agent and usual is not None:
        suggested = usual
    request = console_pb2.OpenTicketRequest(
        title=args.title.strip(),
        description=args.description,
        channel=args.channel,
        requester=requester,
        priority=args.priority,
        agent=agent,
        assignee=args.assignee,
        snapshot_id=args.snapshot,
        kind=args.kind,
        category=args.category,
        contract=args.contract,
    )
    response = client.call(client.stub.OpenTicket, request)
    ctx.out.emit_message(response)
    _changed(ctx, response.ticket, "opened")
    if known is not None and known.requester != args.requester.strip():
        ctx.out.done(f"requester: {known.requester} ({known.tickets} past ticket(s))")
    if suggested is not None:
        name = machine_name(suggested.hostname, suggested.agent_id)
        ctx.out.done(
            f"their usual machine: {name}, on {suggested.tickets} of their tickets; link it: "
            f"sonde ticket set {response.ticket.id} --agent {suggested.agent_id}"
        )
    return 0


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    assignee = args.assignee
    if args.mine:
        assignee = client.call(client.stub.WhoAmI, console_pb2.WhoAmIRequest()).user.name
    request = console_pb2.ListTicketsRequest(
        statuses=args.status,
        level=args.level,
        assignee=assignee,
        agent=args.agent,
        limit=args.limit,
        include_closed=args.all,
        offset=args.offset,
    )
    response = client.call(client.stub.ListTickets, request)
    if not response.tickets and not ctx.out.json_mode:
        ctx.out.done("no tickets match" if not args.offset else f"no tickets past {args.offset}")
        return 0
    table = tickets_table(response.tickets)
    if not response.more:
        ctx.out.result(response, table)
        return 0
    after = next_page(args, args.offset + len(response.tickets))
    ctx.out.result(response, table, Text(f"{response.more} more: {after}", style="dim"))
    return 0


def next_page(args: argparse.Namespace, offset: int) -> str:
    """The `sonde ticket list` line of the next page: the same filters, a later --offset."""
    words = ["sonde", "ticket", "list"]
    if args.status:
        names = {number: name.replace("_", "-") for name, number in STATUSES.items()}
        words += ["--status", *(names[number] for number in args.status)]
    if args.level:
        words += ["--level", next(n for n, v in LEVELS.items() if v == args.level)]
    if args.mine:
        words.append("--mine")
    elif args.assignee:
        words += ["--assignee", shlex.quote(args.assignee)]
    if args.agent:
        words += ["--agent", shlex.quote(args.agent)]
    if args.all:
        words.append("--all")
    if args.limit:
        words += ["--limit", str(args.limit)]
    return " ".join([*words, "--offset", str(offset)])


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.GetTicket, console_pb2.GetTicketRequest(id=args.id))
    ctx.out.result(response, ticket_view(response))
    return 0


def run_comment(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    body = _text_argument(args.text, "comment")
    request = console_pb2.CommentTicketRequest(id=args.id, body=body)
    response = client.call(client.stub.CommentTicket, request)
    ctx.out.emit_message(response)
    _changed(ctx, response.ticket, "commented")
    return 0


def run_assign(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.AssignTicketRequest(id=args.id, assignee=args.user)
    response = client.call(client.stub.AssignTicket, request)
    ctx.out.emit_message(response)
    _changed(ctx, response.ticket, "assigned")
    return 0


def run_resolve(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ResolveTicketRequest(
        id=args.id,
        resolution=args.resolution,
        outcome=args.outcome,
        time_spent_s=args.time_spent,
    )
    response = client.call(client.stub.ResolveTicket, request)
    ctx.out.emit_message(response)
    _changed(ctx, response.ticket, "resolved")
    return 0


def run_close(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.CloseTicketRequest(id=args.id, note=args.note, outcome=args.outcome)
    response = client.call(client.stub.CloseTicket, request)
    ctx.out.emit_message(response)
    _changed(ctx, response.ticket, "closed")
    return 0


def run_reopen(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ReopenTicketRequest(id=args.id, reason=args.reason)
    response = client.call(client.stub.ReopenTicket, request)
    ctx.out.emit_message(response)
    _changed(ctx, response.ticket, "reopened")
    return 0
