"""`sonde scripts stats [--script ID] [--finding CHECK] [--days N]`: which fixes work. Per
script, its runs (dry runs left out), how many exited 0, and how many of those verified
cleared their finding; under it, the same per finding."""

from __future__ import annotations

import argparse

from rich.text import Text

from sonde.server.console.context import Context
from sonde.server.console.layout import Column, ListTable
from sonde.server.console.render import text
from sonde.v1 import console_pb2

MAX_DAYS = 3650


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"--days must be from 1 to {MAX_DAYS}")
    return days


def register(
    scripts_commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    stats = scripts_commands.add_parser(
        "stats",
        parents=[common],
        help="runs, success and cleared rates per script and finding: which fixes work",
    )
    stats.add_argument("--script", default="", metavar="ID", help="only this script")
    stats.add_argument("--finding", default="", metavar="CHECK", help="only this finding")
    stats.add_argument("--days", type=_days, default=0, metavar="N", help="the last N days only")
    stats.set_defaults(handler=run_stats)


def _rate(part: int, whole: int) -> Text:
    if not whole:
        return Text("-", style="dim")
    rate = 100 * part / whole
    style = "green" if rate >= 80 else "red" if rate < 50 else ""
    return Text(f"{rate:.0f} % ({part}/{whole})", style=style)


def stats_table(response: console_pb2.GetScriptStatsResponse) -> ListTable:
    table = ListTable(
        "Which fixes work",
        [
            Column("script"),
            Column("finding"),
            Column("runs", justify="right"),
            Column("exit 0", justify="right"),
            Column("cleared", justify="right"),
            Column("refused", justify="right", optional=True),
        ],
    )
    for stat in response.stats:
        own = not stat.finding
        table.add_row(
            text(stat.script_id if own else "", "bold"),
            text(stat.finding or "(all)", "" if stat.finding else "dim"),
            Text(str(stat.runs)),
            _rate(stat.succeeded, stat.runs),
            _rate(stat.cleared, stat.verified),
            Text(str(stat.refused) if own and stat.refused else ""),
        )
    return table


def run_stats(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.GetScriptStatsRequest(
        script_id=args.script, finding=args.finding, days=args.days
    )
    response = client.call(client.stub.GetScriptStats, request)
    if not response.stats and not ctx.out.json_mode:
        ctx.out.show(Text("No runs yet: sonde runs lists what was asked."))
        return 0
    ctx.out.result(response, stats_table(response))
    return 0
