"""`sonde ticket escalate|wait|resume`: handing a ticket on and putting it on hold, each saying
what became of it (who has it now, what it waits for, how long it waited)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sonde.server.console.context import Context
from sonde.server.console.handover import handover
from sonde.server.console.render import format_duration, format_time
from sonde.server.console.render_ticket import level_label, status_label
from sonde.v1 import console_pb2

Action = Callable[[str, str], argparse.ArgumentParser]


def register(action: Action) -> None:
    """Add the subcommands; `action(name, help)` makes a `sonde ticket NAME N` parser."""
    escalate = action(
        "escalate",
        "hand over from L1 to L2: the current assignee lets it go unless --keep-assignee",
    )
    escalate.add_argument("--reason", required=True, help="why L1 cannot finish it")
    who = escalate.add_mutually_exclusive_group()
    who.add_argument("--to", default="", metavar="USER", help="an L2 technician")
    who.add_argument(
        "--keep-assignee",
        action="store_true",
        help="the current assignee keeps it (an l2 technician or an admin)",
    )
    escalate.set_defaults(handler=run_escalate)

    wait = action("wait", "put on hold, waiting on the requester: the resolve clock pauses")
    wait.add_argument("--reason", required=True, help="what it waits for")
    wait.set_defaults(handler=run_wait)

    resume = action("resume", "back to work after waiting, in the status it had")
    resume.add_argument("--note", default="", help="what came back")
    resume.set_defaults(handler=run_resume)


def run_escalate(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.EscalateTicketRequest(
        id=args.id, reason=args.reason, assignee=args.to, keep_assignee=args.keep_assignee
    )
    response = client.call(client.stub.EscalateTicket, request)
    ctx.out.emit_message(response)
    ticket = response.ticket
    ctx.out.done(
        f"ticket #{ticket.id} escalated to {level_label(ticket.level).upper()}, "
        f"{status_label(ticket.status)}: {handover(response.previous_assignee, ticket.assignee)}"
    )
    return 0


def run_wait(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.WaitTicketRequest(id=args.id, reason=args.reason)
    response = client.call(client.stub.WaitTicket, request)
    ctx.out.emit_message(response)
    ctx.out.done(
        f"ticket #{response.ticket.id} is waiting: {args.reason.strip()}. The resolve clock "
        f"is paused until `sonde ticket resume {response.ticket.id}`"
    )
    return 0


def run_resume(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ResumeTicketRequest(id=args.id, note=args.note)
    response = client.call(client.stub.ResumeTicket, request)
    ctx.out.emit_message(response)
    ticket = response.ticket
    ctx.out.done(
        f"ticket #{ticket.id} resumed, {status_label(ticket.status)}, after waiting "
        f"{format_duration(response.waited_s)}: resolve due moved to "
        f"{format_time(ticket.resolve_due_at)}"
    )
    return 0
