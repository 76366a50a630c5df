"""`sonde group set|add|list`: monitoring's agent groups, their interval, light collectors,
clear rule and threshold overrides (docs/monitoring.md)."""

from __future__ import annotations

import argparse
import re

from rich.text import Text

from sonde.server.console.context import Context
from sonde.server.console.inert import inert
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_duration, text
from sonde.v1 import console_pb2

_INTERVAL = re.compile(r"^(\d{1,6})([smhd]?)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 60}


def interval(value: str) -> int:
    """Seconds of `15m`, `1h`, `30s`, `1d`, or a number of minutes (the server bounds it)."""
    match = _INTERVAL.fullmatch(value.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{value[:20]!r} is not an interval: say 15m, 1h or 30s")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def threshold(value: str) -> tuple[str, float]:
    name, _, number = value.partition("=")
    try:
        return name.strip(), float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--threshold {value[:80]!r}: say NAME=NUMBER, e.g. disk_used_critical_percent=90"
        ) from None


def clear_checks(value: str) -> int:
    if not value.strip().isdigit() or int(value) == 0:
        raise argparse.ArgumentTypeError(f"--clear-checks {value[:20]!r}: say a number from 1")
    return int(value)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    group = commands.add_parser(
        "group", parents=[common], help="monitoring groups: interval, collectors, clear rule"
    )
    actions = group.add_subparsers(dest="group_command", metavar="COMMAND")
    actions.required = True

    set_group = actions.add_parser(
        "set",
        parents=[common],
        help="create or change a group (admin), changing only what is given; `default`: agents "
        "in none",
    )
    set_group.add_argument("name", metavar="NAME")
    when = set_group.add_mutually_exclusive_group()
    when.add_argument(
        "--interval", type=interval, default=None, help="15m (a new group's), 1h, ..."
    )
    when.add_argument("--off", action="store_true", help="no monitoring for this group")
    set_group.add_argument(
        "--collectors", default=None, metavar="A,B", help="the light set, e.g. disks,memory"
    )
    set_group.add_argument(
        "--clear-checks", type=clear_checks, default=0, metavar="N",
        help="ok checks in a row that close a monitoring ticket (3 for a new group)",
    )  # fmt: skip
    set_group.add_argument(
        "--threshold", type=threshold, action="append", default=[], metavar="NAME=NUMBER",
        help="override a check threshold (repeat); replaces the group's overrides",
    )  # fmt: skip
    set_group.add_argument(
        "--no-thresholds", action="store_true", help="drop the group's threshold overrides"
    )
    set_group.set_defaults(handler=run_set)

    add = actions.add_parser("add", parents=[common], help="put agents in a group (admin)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("agents", nargs="+", metavar="AGENT")
    add.set_defaults(handler=run_add)

    listed = actions.add_parser("list", parents=[common], help="the groups and their members")
    listed.set_defaults(handler=run_list)


def _summary(group: console_pb2.AgentGroup) -> str:
    every = f"every {format_duration(group.interval_s)}" if group.interval_s else "off"
    line = f"group {inert(group.name)}: {every}, collects {', '.join(group.collectors)}, "
    line += f"closes after {group.clear_checks} clear checks"
    if group.thresholds:
        line += ", thresholds " + ", ".join(
            f"{k}={v:g}" for k, v in sorted(group.thresholds.items())
        )
    return line


def run_set(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    # Only what the command line names is sent; the server keeps the rest as stored.
    request = console_pb2.SetAgentGroupRequest(
        name=args.name,
        off=args.off,
        clear_checks=args.clear_checks,
        thresholds=dict(args.threshold),
        set_thresholds=bool(args.threshold) or args.no_thresholds,
    )
    if args.interval is not None:
        request.interval_s = args.interval
    if args.collectors is not None:
        request.collectors.extend(name for name in args.collectors.split(",") if name.strip())
        request.set_collectors = True
    response = client.call(client.stub.SetAgentGroup, request)
    ctx.out.result(response, Text(_summary(response.group)))
    return 0


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.AssignAgentGroupRequest(name=args.name, agents=args.agents)
    response = client.call(client.stub.AssignAgentGroup, request)
    line = f"{len(response.agent_ids)} agent(s) in {_summary(response.group)}"
    ctx.out.result(response, Text(line))
    return 0


def groups_table(groups: list[console_pb2.AgentGroup]) -> ListTable:
    table = ListTable(
        f"{len(groups)} groups",
        [
            Column("name"),
            Column("interval"),
            Column("collectors", Give.WRAP),
            Column("clear"),
            Column("members"),
            Column("thresholds", Give.WRAP, optional=True),
        ],
    )
    for group in groups:
        table.add_row(
            text(group.name),
            text(format_duration(group.interval_s) if group.interval_s else "off"),
            text(",".join(group.collectors)),
            text(str(group.clear_checks)),
            text(str(len(group.members))),
            text(", ".join(f"{k}={v:g}" for k, v in sorted(group.thresholds.items())) or "-"),
        )
    return table


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.ListAgentGroups, console_pb2.ListAgentGroupsRequest())
    ctx.out.result(response, groups_table(list(response.groups)))
    return 0
