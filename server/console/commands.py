"""`sonde commands`: what the server asked of agents, its state, and cancelling what has not run.

sonde commands [--agent A] [--state S ...] [--ticket N] [--limit N]
sonde commands show ID
sonde commands cancel ID [--reason TEXT]
"""

from __future__ import annotations

import argparse

from sonde.server.console.arguments import page_limit, ticket_number
from sonde.server.console.context import Context
from sonde.server.console.render_command import (
    STATE_NAMES,
    command_detail,
    commands_table,
    machine,
    state_label,
)
from sonde.v1 import console_pb2


def _state(value: str) -> console_pb2.CommandState.ValueType:
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in STATE_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown state {value!r}: expected one of {', '.join(sorted(STATE_NAMES))}"
        )
    return STATE_NAMES[key]


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "commands",
        parents=[common],
        help="what the server asked of agents: queued, running, finished",
        description="List commands newest first, show one, or cancel one that has not finished.",
    )
    parser.add_argument("--agent", default="", metavar="AGENT", help="only this agent's")
    parser.add_argument(
        "--state",
        type=_state,
        action="append",
        default=[],
        metavar="STATE",
        help="only in this state (repeatable): " + ", ".join(sorted(STATE_NAMES)),
    )
    parser.add_argument(
        "--ticket", type=ticket_number, default=0, metavar="N", help="only ticket N's"
    )
    parser.add_argument(
        "--limit", type=page_limit, default=100, metavar="N", help="at most N (100)"
    )
    parser.set_defaults(handler=run_list)
    actions = parser.add_subparsers(dest="commands_action", metavar="{show,cancel}")
    show = actions.add_parser("show", parents=[common], help="one command and its times")
    show.add_argument("id", metavar="ID", help="the command id")
    show.set_defaults(handler=run_show)
    cancel = actions.add_parser(
        "cancel", parents=[common], help="cancel a command that has not finished"
    )
    cancel.add_argument("id", metavar="ID", help="the command id")
    cancel.add_argument("--reason", default="", help="why, for the command and the audit log")
    cancel.set_defaults(handler=run_cancel)


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListCommandsRequest(
        agent=args.agent, states=args.state, ticket_id=args.ticket, limit=args.limit
    )
    response = client.call(client.stub.ListCommands, request)
    ctx.out.result(response, commands_table(response.commands))
    return 0


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.GetCommand, console_pb2.GetCommandRequest(id=args.id))
    ctx.out.result(response, command_detail(response.command))
    return 0


def run_cancel(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.CancelCommandRequest(id=args.id, reason=args.reason)
    response = client.call(client.stub.CancelCommand, request)
    command = response.command
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
    else:
        ctx.out.done(
            f"cancelled command {command.id} for {machine(command)}: "
            f"it is {state_label(command.state)}"
        )
    return 0
