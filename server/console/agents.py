"""`sonde agents`, `sonde agent show`, `sonde agents revoke`, `sonde agents remove`: the
workstations the server knows.

AGENT is sent as typed: the server resolves it, ids before the host names agents report
(resolve_agent in server/domain/agents.py).
"""

from __future__ import annotations

import argparse
import sys

from rich.console import RenderableType
from rich.text import Text

from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.render import agent_detail, agents_table, machine_name
from sonde.server.console.render_ticket import tickets_table
from sonde.v1 import console_pb2

# How AGENT is read: a name is the agent's own word, so ids come first (docs/cli.md).
AGENT_HELP = "id (or its start) or host name; ids come first"


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    agents = commands.add_parser("agents", parents=[common], help="list agents, or revoke one")
    agents.add_argument("--online", action="store_true", help="only agents connected now")
    agents.add_argument("--all", action="store_true", help="include revoked and removed agents")
    agents.set_defaults(handler=run_list)
    agents_commands = agents.add_subparsers(dest="agents_command", metavar="{revoke,remove}")
    _add_revoke(agents_commands, common)
    remove = agents_commands.add_parser(
        "remove",
        parents=[common],
        help="retire a machine: revoke it, take it out of the lists; its tickets keep it (admin)",
    )
    remove.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    remove.add_argument("--reason", default="", help="why, for the audit log")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(handler=run_remove)

    agent = commands.add_parser("agent", parents=[common], help="one agent: show or revoke")
    agent_commands = agent.add_subparsers(dest="agent_command", metavar="{show,revoke}")
    agent_commands.required = True
    show = agent_commands.add_parser(
        "show", parents=[common], help="an agent's state, last diagnostic and last 10 tickets"
    )
    show.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    show.set_defaults(handler=run_show)
    _add_revoke(agent_commands, common)


def _add_revoke(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    revoke = commands.add_parser(
        "revoke",
        parents=[common],
        help="cut an agent off now and refuse it from then on (admin)",
    )
    revoke.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    revoke.add_argument("--reason", default="", help="why, for the audit log")
    revoke.set_defaults(handler=run_revoke)


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListAgentsRequest(
        online_only=args.online, include_revoked=args.all, include_removed=args.all
    )
    response = client.call(client.stub.ListAgents, request)
    if not response.agents and not ctx.out.json_mode:
        ctx.out.done(
            "no agents"
            + (" online" if args.online else "")
            + ": enroll one with `sonde token create` then `sonde-agent enroll TOKEN`"
        )
        return 0
    ctx.out.result(response, agents_table(response.agents))
    return 0


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.GetAgent, console_pb2.GetAgentRequest(agent=args.agent))
    renderables: list[RenderableType] = [agent_detail(response)]
    shown = len(response.recent_tickets)
    if shown:
        title = f"Its last {shown} tickets, newest first" if shown > 1 else "Its ticket"
        renderables.append(tickets_table(response.recent_tickets, title=title))
    more = response.ticket_count - shown
    if more > 0:
        every = f"sonde ticket list --agent {response.agent.id} --all"
        renderables.append(Text(f"{more} more: {every}"))
    ctx.out.result(response, *renderables)
    return 0


def run_revoke(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.RevokeAgentRequest(agent=args.agent, reason=args.reason)
    response = client.call(client.stub.RevokeAgent, request)
    ctx.out.emit_message(response)
    revoked = machine_name(response.agent.hostname, response.agent.id)
    ctx.out.done(f"revoked {revoked}: its connection is closed and it is refused from now on")
    return 0


def run_remove(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    if not args.yes:
        found = client.call(client.stub.GetAgent, console_pb2.GetAgentRequest(agent=args.agent))
        _confirm_removal(machine_name(found.agent.hostname, found.agent.id))
        # Remove exactly the machine the technician confirmed, whatever the name names now.
        args.agent = found.agent.id
    request = console_pb2.RemoveAgentRequest(agent=args.agent, reason=args.reason)
    response = client.call(client.stub.RemoveAgent, request)
    ctx.out.emit_message(response)
    removed = machine_name(response.agent.hostname, response.agent.id)
    ctx.out.done(
        f"removed {removed}: it is refused from now on and no longer listed "
        "(`sonde agents --all` shows it); its tickets and diagnostics keep it"
    )
    return 0


def _confirm_removal(machine: str) -> None:
    if not sys.stdin.isatty():
        raise CliError(
            "FAILED_PRECONDITION",
            f"not removing {machine} without confirmation: pass --yes "
            "(stdin is not a terminal to ask on)",
        )
    prompt = f"Remove {machine}? It is revoked and leaves the agent lists. [y/N] "
    print(prompt, end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in {"y", "yes"}:
        raise CliError("CANCELLED", f"{machine} was not removed")
