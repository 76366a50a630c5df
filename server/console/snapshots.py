"""`sonde snapshot show ID` and `sonde snapshot diff A [B]`: a stored diagnostic in full, and
what changed between two diagnostics of one machine (B defaults to the one before A)."""

from __future__ import annotations

import argparse

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import RenderableType
from rich.text import Text

from sonde.server.console.arguments import snapshot_number
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import (
    findings_table,
    format_bytes,
    format_time,
    key_facts,
    machine_name,
    severity_text,
    snapshot_line,
    text,
)
from sonde.server.console.render_collection import collected_by_line
from sonde.server.console.render_processes import top_processes
from sonde.server.console.snapshot_diff import (
    FactChange,
    FindingChange,
    fact_changes,
    finding_changes,
)
from sonde.v1 import console_pb2


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "snapshot", parents=[common], help="stored diagnostics: show one, compare two"
    )
    actions = parser.add_subparsers(dest="snapshot_action", metavar="{show,diff}")
    actions.required = True
    show = actions.add_parser("show", parents=[common], help="a stored diagnostic in full")
    show.add_argument("id", type=snapshot_number, metavar="ID")
    show.set_defaults(handler=run_show)
    diff = actions.add_parser(
        "diff", parents=[common], help="facts and findings that changed between two diagnostics"
    )
    diff.add_argument("id", type=snapshot_number, metavar="A", help="the newer diagnostic")
    diff.add_argument(
        "other",
        type=snapshot_number,
        nargs="?",
        metavar="B",
        help="the older (default: the one before A)",
    )
    diff.add_argument(
        "--all",
        action="store_true",
        help="list the facts that move at every collection too (counters, load, processes)",
    )
    diff.set_defaults(handler=run_diff)


def _get(ctx: Context, snapshot_id: int) -> console_pb2.GetSnapshotResponse:
    client = ctx.client()
    return client.call(client.stub.GetSnapshot, console_pb2.GetSnapshotRequest(id=snapshot_id))


def snapshot_machine(stored: console_pb2.StoredSnapshot) -> str:
    """The diagnostic's machine: the name its agent reports now (or reported in it), its id,
    and '(removed)' once it was retired."""
    summary = stored.summary
    name = summary.agent_hostname or stored.snapshot.system.hostname
    return machine_name(name, summary.agent_id, summary.agent_removed)


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    response = _get(ctx, args.id)
    stored = response.snapshot
    heading = Text("Diagnostic ", style="bold")
    heading.append_text(snapshot_line(stored.summary, snapshot_machine(stored)))
    ctx.out.result(
        response,
        heading,
        collected_by_line(stored.snapshot),
        findings_table(stored.findings),
        *top_processes(stored.findings, stored.snapshot),
        key_facts(stored.snapshot),
    )
    return 0


def run_diff(args: argparse.Namespace, ctx: Context) -> int:
    newer = _get(ctx, args.id)
    older_id = args.other or newer.previous_id
    if not older_id:
        raise CliError(
            "NOT_FOUND", f"diagnostic {args.id} is its machine's first: give B to compare with"
        )
    older = _get(ctx, older_id)
    a, b = newer.snapshot, older.snapshot
    if a.summary.agent_id != b.summary.agent_id:
        raise CliError(
            "INVALID_ARGUMENT",
            f"diagnostics {args.id} and {older_id} are of different machines "
            f"({a.summary.agent_id}, {b.summary.agent_id}): compare two of one machine",
        )
    moved = fact_changes(b.snapshot, a.snapshot, everything=args.all)
    facts = moved.changes
    findings = finding_changes(list(b.findings), list(a.findings))
    if ctx.out.json_mode:
        ctx.out.emit(
            {
                "machine": a.summary.agent_id,
                "newer": args.id,
                "older": older_id,
                "facts": [vars(change) for change in facts],
                "facts_left_out": moved.left_out,
                "findings": [
                    {
                        "check": change.check,
                        "change": change.change,
                        "before": change.before.summary if change.before else "",
                        "after": change.after.summary if change.after else "",
                    }
                    for change in findings
                ],
            }
        )
        return 0
    heading = Text(
        f"Diagnostic {args.id} at {format_time(a.summary.collected_at)} against {older_id} at "
        f"{format_time(b.summary.collected_at)}, of {snapshot_machine(a)}",
        style="bold",
    )
    shown: list[RenderableType] = [
        heading,
        finding_changes_table(findings),
        fact_changes_table(facts),
    ]
    if moved.left_out:
        shown.append(
            Text(
                f"({moved.left_out} facts that move at every collection left out: counters, "
                "load, processes, small moves of sizes; --all lists them)",
                style="dim",
            )
        )
    ctx.out.show(*shown)
    return 0


def finding_changes_table(changes: list[FindingChange]) -> ListTable:
    table = ListTable(
        "Findings that changed",
        [Column("check"), Column("change"), Column("before"), Column("now")],
    )
    for change in changes:
        was, now = change.before, change.after
        summaries = [f"was: {was.summary}" if was else "", f"now: {now.summary}" if now else ""]
        table.add_row(
            text(change.check),
            Text(change.change),
            severity_text(was.severity) if was else Text("-"),
            severity_text(now.severity) if now else Text("-"),
            detail=text("\n".join(line for line in summaries if line)),
        )
    if not changes:
        table.add_row("-", "none", "", "")
    return table


def fact_changes_table(changes: list[FactChange]) -> ListTable:
    table = ListTable(
        "Facts that changed",
        [Column("fact", Give.WRAP), Column("before", Give.WRAP), Column("now", Give.WRAP)],
    )
    for change in changes:
        table.add_row(
            text(change.path),
            text(shown_fact(change.path, change.before)),
            text(shown_fact(change.path, change.after)),
        )
    if not changes:
        table.add_row("none", "", "")
    return table


def shown_fact(path: str, value: str) -> str:
    """A fact as people read it: sizes in binary units, times local with their zone, '-' for
    none; any other value as the agent sent it (--json keeps bytes and UTC)."""
    if not value:
        return "-"
    name = path.rsplit(".", 1)[-1]
    if name.endswith("_bytes") and value.isdigit():
        return format_bytes(int(value))
    if name.endswith(("_at", "_time")):
        moment = Timestamp()
        try:
            moment.FromJsonString(value)
        except ValueError:
            return value
        return format_time(moment)
    return value
