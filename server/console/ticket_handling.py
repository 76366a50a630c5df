"""`sonde ticket set|take|hand-back|time`, `sonde queue` and `sonde category`: a ticket's
details and category tree, the queues SLA at risk first, taking and handing back, and the
time spent (docs/tickets.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sonde.server.console.arguments import page_limit, priority, time_spent
from sonde.server.console.context import Context
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_duration, format_time, text
from sonde.server.console.render_ticket import (
    level_label,
    nature_label,
    priority_text,
    status_label,
)
from sonde.v1 import console_pb2

Action = Callable[[str, str], argparse.ArgumentParser]
KINDS = {
    "incident": console_pb2.TICKET_KIND_INCIDENT,
    "request": console_pb2.TICKET_KIND_SERVICE_REQUEST,
    "service-request": console_pb2.TICKET_KIND_SERVICE_REQUEST,
}
OUTCOMES = {
    name.removeprefix("TICKET_OUTCOME_").lower().replace("_", "-"): number
    for name, number in console_pb2.TicketOutcome.items()
    if number
}
_SLA = {
    console_pb2.SLA_STATE_BREACHED: ("breached", "bold red"),
    console_pb2.SLA_STATE_AT_RISK: ("at risk", "yellow"),
    console_pb2.SLA_STATE_PAUSED: ("paused", "dim"),
    console_pb2.SLA_STATE_OK: ("ok", "green"),
}


def kind(value: str) -> console_pb2.TicketKind.ValueType:
    key = value.strip().lower()
    if key not in KINDS:
        raise argparse.ArgumentTypeError(f"unknown kind {value!r}: incident or request")
    return KINDS[key]


def outcome(value: str) -> console_pb2.TicketOutcome.ValueType:
    key = value.strip().lower().replace("_", "-")
    if key not in OUTCOMES:
        raise argparse.ArgumentTypeError(
            f"unknown outcome {value!r}: expected one of {', '.join(OUTCOMES)}"
        )
    return OUTCOMES[key]


def register_ticket_actions(action: Action) -> None:
    """`sonde ticket set|take|hand-back|time N`."""
    details = action(
        "set", "set its kind, category, requester, machine, priority or contract (SLA recounted)"
    )
    details.add_argument("--kind", type=kind, default=0, help="incident or request")
    details.add_argument("--category", default="", metavar="PATH", help="e.g. printing/spooler")
    details.add_argument("--requester", default="", metavar="NAME")
    details.add_argument("--agent", default="", metavar="AGENT", help="the machine concerned")
    details.add_argument("--priority", type=priority, default=0, help="p1 (critical) to p4 (low)")
    held_to = details.add_mutually_exclusive_group()
    held_to.add_argument("--contract", default="", metavar="NAME", help="its customer group")
    held_to.add_argument(
        "--default-contract", action="store_true", help="back to the default SLA policies"
    )
    details.set_defaults(handler=run_set)

    take = action("take", "take it from the queue (at L2: --category confirms or corrects)")
    take.add_argument("--category", default="", metavar="PATH")
    take.set_defaults(handler=run_take)

    back = action("hand-back", "L2 gives it back to L1, to whoever escalated it")
    back.add_argument("--note", required=True, help="what L1 is to do, or why it is theirs")
    back.set_defaults(handler=run_hand_back)

    spent = action("time", "log time spent on it")
    spent.add_argument("spent", type=time_spent, metavar="TIME", help="15m, 1h, 1h30m")
    spent.add_argument("--on", default="", metavar="TEXT", help="what it was spent on")
    spent.set_defaults(handler=run_time)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """`sonde queue` and `sonde category list|add|retire`."""
    queue = commands.add_parser(
        "queue",
        parents=[common],
        help="open tickets, SLA at risk first",
        description="The open tickets of a level (or both), breached first, then at risk "
        "(three quarters of their time gone), then by the next due time.",
    )
    queue.add_argument("--level", choices=["l1", "l2"], default="", help="one level's queue")
    queue.add_argument("--mine", action="store_true", help="only those assigned to you")
    queue.add_argument("--limit", type=page_limit, default=0, metavar="N", help="at most N")
    queue.set_defaults(handler=run_queue)

    category = commands.add_parser("category", parents=[common], help="the category tree")
    actions = category.add_subparsers(dest="category_command", metavar="COMMAND")
    actions.required = True
    listed = actions.add_parser("list", parents=[common], help="the tree")
    listed.add_argument("--all", action="store_true", help="retired ones too")
    listed.set_defaults(handler=run_category_list)
    add = actions.add_parser("add", parents=[common], help="add PATH under its parent (admin)")
    add.add_argument("path", metavar="PATH", help="e.g. printing/spooler")
    add.add_argument("--title", required=True, help="as technicians read it")
    add.set_defaults(handler=run_category_add)
    retire = actions.add_parser(
        "retire", parents=[common], help="offer PATH and what is under it no more (admin)"
    )
    retire.add_argument("path", metavar="PATH")
    retire.set_defaults(handler=run_category_retire)


def _said(ctx: Context, ticket: console_pb2.Ticket, what: str) -> None:
    who = f", {ticket.assignee} has it" if ticket.assignee else ", in the queue"
    ctx.out.done(
        f"ticket #{ticket.id} {what}: {status_label(ticket.status)} "
        f"({level_label(ticket.level)}){who}; {nature_label(ticket)}"
    )


def run_set(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.SetTicketDetailsRequest(
        id=args.id,
        kind=args.kind,
        category=args.category,
        requester=args.requester,
        agent=args.agent,
        priority=args.priority,
        contract=args.contract,
        default_contract=args.default_contract,
    )
    response = client.call(client.stub.SetTicketDetails, request)
    ctx.out.emit_message(response)
    _said(ctx, response.ticket, "set")
    return 0


def run_take(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.TakeTicketRequest(id=args.id, category=args.category)
    response = client.call(client.stub.TakeTicket, request)
    ctx.out.emit_message(response)
    _said(ctx, response.ticket, "taken")
    return 0


def run_hand_back(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.HandBackTicketRequest(id=args.id, note=args.note)
    response = client.call(client.stub.HandBackTicket, request)
    ctx.out.emit_message(response)
    _said(ctx, response.ticket, "handed back to L1")
    return 0


def run_time(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.LogTicketTimeRequest(id=args.id, seconds=args.spent, on_what=args.on)
    response = client.call(client.stub.LogTicketTime, request)
    ctx.out.emit_message(response)
    ticket = response.ticket
    ctx.out.done(
        f"ticket #{ticket.id}: {format_duration(args.spent)} logged, "
        f"{format_duration(ticket.time_spent_s)} in all"
    )
    return 0


def queue_table(response: console_pb2.ListQueueResponse) -> ListTable:
    more = f" ({response.more} more)" if response.more else ""
    table = ListTable(
        f"Queue: {len(response.tickets)} open tickets{more}",
        [
            Column("#"),
            Column("sla"),
            Column("due"),
            Column("pri"),
            Column("level", optional=True),
            Column("status", optional=True),
            Column("assignee", optional=True),
            Column("category", optional=True),
            Column("title", Give.WRAP),
        ],
    )
    for entry in response.tickets:
        ticket = entry.ticket
        label, style = _SLA.get(entry.sla, ("?", ""))
        table.add_row(
            text(str(ticket.id)),
            text(label, style),
            text(format_time(entry.due_at)),
            priority_text(ticket.priority),
            text(level_label(ticket.level)),
            text(status_label(ticket.status)),
            text(ticket.assignee or "-"),
            text(ticket.category or "-"),
            text(ticket.title),
        )
    return table


def run_queue(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    levels = {"l1": console_pb2.TICKET_LEVEL_L1, "l2": console_pb2.TICKET_LEVEL_L2}
    request = console_pb2.ListQueueRequest(
        level=levels.get(args.level, console_pb2.TICKET_LEVEL_UNSPECIFIED),
        mine=args.mine,
        limit=args.limit,
    )
    response = client.call(client.stub.ListQueue, request)
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
        return 0
    ctx.out.show(queue_table(response))
    return 0


def categories_table(response: console_pb2.ListCategoriesResponse) -> ListTable:
    table = ListTable(
        f"{len(response.categories)} categories",
        [Column("path"), Column("title", Give.WRAP), Column("retired", optional=True)],
    )
    for category in response.categories:
        retired = format_time(category.retired_at) if category.HasField("retired_at") else ""
        depth = category.path.count("/")
        table.add_row(text("  " * depth + category.path), text(category.title), text(retired))
    return table


def run_category_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListCategoriesRequest(include_retired=args.all)
    response = client.call(client.stub.ListCategories, request)
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
        return 0
    ctx.out.show(categories_table(response))
    return 0


def run_category_add(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.AddCategoryRequest(path=args.path, title=args.title)
    response = client.call(client.stub.AddCategory, request)
    ctx.out.emit_message(response)
    ctx.out.done(f"category {response.category.path} added: {response.category.title}")
    return 0


def run_category_retire(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(
        client.stub.RetireCategory, console_pb2.RetireCategoryRequest(path=args.path)
    )
    ctx.out.emit_message(response)
    ctx.out.done(f"category {response.category.path} retired, with what is under it")
    return 0
