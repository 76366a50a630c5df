"""`sonde report interventions --from WHEN --to WHEN [--format table|csv]` (and --json): the
interventions table, every ticket finished in the period with what was done, the time it took
and how it ended, then the figures per technician and per category (docs/tickets.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import Message
from rich.console import RenderableType

from sonde.server.console.audit import since
from sonde.server.console.context import Context
from sonde.server.console.csv_cells import write_rows
from sonde.server.console.errors import CliError
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_duration, format_time, text
from sonde.server.console.render_ticket import outcome_label
from sonde.v1 import console_pb2

CSV_COLUMNS = [
    "ticket", "finished_at", "technician", "machine", "category", "kind", "outcome",
    "on_time", "time_spent_min", "what_was_done", "runs", "rating",
]  # fmt: skip


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    report = commands.add_parser("report", parents=[common], help="the helpdesk's reports")
    kinds = report.add_subparsers(dest="report_command", metavar="REPORT")
    kinds.required = True
    interventions = kinds.add_parser(
        "interventions",
        parents=[common],
        help="every ticket finished in a period, with figures per technician and category",
    )
    period_arguments(interventions)
    interventions.set_defaults(handler=run_interventions)


def period_arguments(report: argparse.ArgumentParser) -> None:
    """A report's `--from WHEN [--to WHEN] [--format table|csv]`."""
    report.add_argument(
        "--from", dest="since", type=since, required=True, metavar="WHEN",
        help="7d, or a date such as 2026-11-01",
    )  # fmt: skip
    report.add_argument(
        "--to", dest="until", type=since, default=None, metavar="WHEN", help="default: now"
    )
    report.add_argument("--format", choices=["table", "csv"], default="table")


PeriodRequest = TypeVar(
    "PeriodRequest", console_pb2.ReportInterventionsRequest, console_pb2.ReportSlaRequest
)


def period_request(args: argparse.Namespace, request: PeriodRequest) -> PeriodRequest:
    """`request` with the period asked (--to: now when not given); refused when it ends
    before it starts."""
    until = args.until or datetime.now(UTC)
    if until <= args.since:
        raise CliError("INVALID_ARGUMENT", "--to must come after --from")
    getattr(request, "from").FromDatetime(args.since)
    request.to.FromDatetime(until)
    return request


def interventions_table(response: console_pb2.ReportInterventionsResponse) -> ListTable:
    table = ListTable(
        f"{len(response.interventions)} interventions",
        [
            Column("#"),
            Column("finished"),
            Column("technician"),
            Column("machine", optional=True),
            Column("category", optional=True),
            Column("outcome"),
            Column("time"),
            Column("rating", optional=True),
            Column("what was done", Give.WRAP),
        ],
    )
    for row in response.interventions:
        late = "" if row.on_time else " (late)"
        table.add_row(
            text(str(row.ticket_id)),
            text(format_time(row.finished_at)),
            text(row.technician),
            text(row.machine or "-"),
            text(row.category or "-"),
            text(outcome_label(row.outcome) + late),
            text(format_duration(row.time_spent_s) if row.time_spent_s else "-"),
            text(f"{row.rating}/5" if row.rating else "-"),
            text("; ".join([row.what_was_done, *row.runs]).strip("; ")),
        )
    return table


def figures_table(title: str, figures: list[console_pb2.InterventionFigures]) -> ListTable:
    table = ListTable(
        title,
        [
            Column("name"),
            Column("tickets"),
            Column("time"),
            Column("fixed"),
            Column("on time"),
            Column("satisfaction"),
        ],
    )
    for row in figures:
        table.add_row(
            text(row.name),
            text(str(row.interventions)),
            text(format_duration(row.time_spent_s)),
            text(f"{row.fixed} ({round(100 * row.fixed / row.interventions)} %)"),
            text(f"{row.on_time} ({round(100 * row.on_time / row.interventions)} %)"),
            text(f"{row.rating_sum / row.rated:.1f}/5 ({row.rated})" if row.rated else "-"),
        )
    return table


def show_report(
    ctx: Context,
    response: Message,
    *,
    as_csv: bool,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    tables: Callable[[], Sequence[RenderableType]],
) -> None:
    """A report as `--json` (the response), `--format csv` (`rows` under `columns`, each cell
    a spreadsheet would compute written as text) or the tables for people."""
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
    elif as_csv:
        write_rows(ctx.out.stdout, columns, list(rows))
    else:
        ctx.out.show(*tables())


def run_interventions(args: argparse.Namespace, ctx: Context) -> int:
    request = period_request(args, console_pb2.ReportInterventionsRequest())
    client = ctx.client()
    response = client.call(client.stub.ReportInterventions, request)
    show_report(
        ctx,
        response,
        as_csv=args.format == "csv",
        columns=CSV_COLUMNS,
        rows=(
            [
                row.ticket_id,
                row.finished_at.ToDatetime(tzinfo=UTC).isoformat(),
                row.technician,
                row.machine,
                row.category,
                console_pb2.TicketKind.Name(row.kind).removeprefix("TICKET_KIND_").lower(),
                outcome_label(row.outcome),
                "yes" if row.on_time else "no",
                round(row.time_spent_s / 60),
                row.what_was_done,
                "; ".join(row.runs),
                row.rating or "",
            ]
            for row in response.interventions
        ),
        tables=lambda: [
            interventions_table(response),
            figures_table("By technician", list(response.by_technician)),
            figures_table("By category", list(response.by_category)),
        ],
    )
    return 0
