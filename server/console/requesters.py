"""`sonde requester find PREFIX`: who called before, by the start of a word of their name or
address, with the machines of their tickets; and the lookup `sonde ticket open --requester`
makes while the caller talks (docs/tickets.md, "Taking a call")."""

from __future__ import annotations

import argparse

from sonde.server.console.client import ConsoleClient
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_time, machine_name, text
from sonde.v1 import console_pb2

USUAL = "usual"  # `--agent usual`: the requester's usual machine


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    requester = commands.add_parser(
        "requester", parents=[common], help="people who called before and their machines"
    )
    actions = requester.add_subparsers(dest="requester_command", metavar="COMMAND")
    actions.required = True
    find = actions.add_parser(
        "find", parents=[common], help="by the start of any word of the name or address"
    )
    find.add_argument("prefix", metavar="PREFIX", help='"mar", "dupont", "marie@"')
    find.set_defaults(handler=run_find)


def requesters_table(found: list[console_pb2.KnownRequester]) -> ListTable:
    table = ListTable(
        f"{len(found)} requesters",
        [
            Column("requester", Give.CUT),
            Column("tickets"),
            Column("last"),
            Column("machines", Give.WRAP),
        ],
    )
    for known in found:
        machines = ", ".join(
            f"{machine_name(m.hostname, m.agent_id)} x{m.tickets}" for m in known.machines
        )
        table.add_row(
            text(known.requester),
            text(str(known.tickets)),
            text(format_time(known.last_at)),
            text(machines or "-"),
        )
    return table


def run_find(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListRequestersRequest(prefix=args.prefix)
    response = client.call(client.stub.ListRequesters, request)
    ctx.out.result(response, requesters_table(list(response.requesters)))
    return 0


def looked_up(client: ConsoleClient, typed: str) -> console_pb2.KnownRequester | None:
    """The one known requester `typed` names (the start of a word of theirs), None for a new
    one; several: refused, naming them, so the technician says more."""
    response: console_pb2.ListRequestersResponse = client.call(
        client.stub.ListRequesters, console_pb2.ListRequestersRequest(prefix=typed)
    )
    found: list[console_pb2.KnownRequester] = list(response.requesters)
    exact = [known for known in found if known.requester.lower() == typed.lower()]
    if exact:
        return exact[0]
    if len(found) == 1:
        return found[0]
    if not found:
        return None
    names = "; ".join(known.requester for known in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    raise CliError(
        "INVALID_ARGUMENT",
        f"--requester {typed!r} could be {len(found)} people who called before: {names}{more}. "
        "Say more of the name, or add --new-requester to keep it as typed",
    )


def usual_machine(known: console_pb2.KnownRequester | None) -> console_pb2.RequesterMachine | None:
    if known is None or not known.usual_agent_id:
        return None
    return next((m for m in known.machines if m.agent_id == known.usual_agent_id), None)
