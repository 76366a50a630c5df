"""`sonde fix AGENT FINDING`: run the catalog fix a finding names, with its parameters taken
from the finding's snapshot, under the same rules as `sonde run`.

sonde fix AGENT FINDING [--param NAME=VALUE ...] [--ticket N] [--expires 24h] [--dry-run]
          [--resolve-if-cleared] [--wait] [--plan] [--yes]

A disruptive fix (the user notices: a process ended, a restart) needs --yes: without it the
plan is shown and nothing runs. --plan shows the plan for any fix.
"""

from __future__ import annotations

import argparse

from rich.table import Table
from rich.text import Text

from sonde.server.console.agents import AGENT_HELP
from sonde.server.console.arguments import ticket_number
from sonde.server.console.context import Context
from sonde.server.console.diag import diag_expiry
from sonde.server.console.errors import CliError
from sonde.server.console.render import text
from sonde.server.console.runs import (
    add_closing_options,
    add_reach_options,
    follow,
    parameter,
    run_line,
)
from sonde.v1 import console_pb2

EXIT_NEEDS_CONFIRMATION = 2


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    fix = commands.add_parser(
        "fix",
        parents=[common],
        help="run the catalog fix of a finding of the machine's newest diagnostic",
        description="Run the catalog script a finding names (sonde diag shows them), with "
        "parameters taken from the finding (the failed service, the busiest process) unless "
        "--param gives them, under the same rules as sonde run; the run is verified against "
        "that finding. A disruptive fix needs --yes.",
    )
    fix.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    fix.add_argument("finding", metavar="FINDING", help="the finding's check, like disk.space")
    fix.add_argument(
        "--param",
        type=parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter, instead of the one the finding gives (repeatable)",
    )
    fix.add_argument("--ticket", type=ticket_number, default=0, metavar="N", help="ticket N")
    fix.add_argument(
        "--expires",
        type=diag_expiry,
        default=0,
        metavar="DURATION",
        help="not started after this long, e.g. 2h (default 24h, at most 30d)",
    )
    fix.add_argument("--dry-run", action="store_true", help="say what it would do, change nothing")
    add_closing_options(fix)
    fix.add_argument("--plan", action="store_true", help="show what would run; run nothing")
    fix.add_argument("--yes", action="store_true", help="run a disruptive fix without asking")
    add_reach_options(fix)
    fix.set_defaults(handler=run_fix)


def plan_table(plan: console_pb2.FixFindingResponse) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    finding = plan.finding
    table.add_row("finding", text(f"{finding.check}: {finding.summary}"))
    table.add_row("from", Text(f"snapshot #{plan.snapshot_id}"))
    notes = [f"{plan.risk} risk"]
    if plan.disruptive:
        notes.append("disruptive: the user notices")
    if plan.reboot_required:
        notes.append("needs a restart")
    table.add_row("fix", text(f"{plan.script_id} {plan.script_version} ({', '.join(notes)})"))
    for name in sorted(plan.parameters):
        source = plan.parameter_sources.get(name, "")
        table.add_row(
            name, text(plan.parameters[name]) + Text(f"  ({source})" if source else "", "dim")
        )
    return table


def run_fix(args: argparse.Namespace, ctx: Context) -> int:
    given: dict[str, str] = {}
    for name, value in args.param:
        if name in given:
            raise CliError("INVALID_ARGUMENT", f"--param {name} is given twice")
        given[name] = value
    client = ctx.client()
    request = console_pb2.FixFindingRequest(
        agent=args.agent,
        finding=args.finding,
        parameters=given,
        ticket_id=args.ticket,
        expires_in_s=args.expires,
        dry_run=args.dry_run,
        resolve_if_cleared=args.resolve_if_cleared,
        plan_only=True,
        ssh=args.ssh,
        winrm=args.winrm,
        credential=args.credential,
    )
    plan = client.call(client.stub.FixFinding, request)
    if args.plan:
        ctx.out.result(plan, plan_table(plan))
        return 0
    if plan.disruptive and not args.yes and not args.dry_run:
        ctx.out.result(
            plan,
            plan_table(plan),
            Text(
                f"{plan.script_id} is disruptive: nothing ran. Run it with --yes once the "
                "user knows, or --dry-run to see what it would do.",
                style="bold",
            ),
        )
        return EXIT_NEEDS_CONFIRMATION
    request.plan_only = False
    response = client.call(client.stub.FixFinding, request)
    run = response.run
    if not args.wait or run.command.state == console_pb2.COMMAND_STATE_PENDING_APPROVAL:
        ctx.out.result(response, plan_table(response), run_line(run))
        return 0
    ctx.out.show(plan_table(response), run_line(run))
    return follow(ctx, run.command.id)
