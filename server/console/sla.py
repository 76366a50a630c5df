"""`sonde sla calendar set|list`, `sonde sla policy set|list|retire` and `sonde sla report`:
the business calendars and SLA policies the admin keeps, and the compliance report
(docs/sla.md)."""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from datetime import UTC
from pathlib import Path

from rich.text import Text

from sonde.server.console.arguments import priority
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.inert import inert
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_duration, format_time, text
from sonde.server.console.render_ticket import priority_label
from sonde.server.console.report import period_arguments, period_request, show_report
from sonde.v1 import console_pb2

# The server refuses a calendar over 256 KiB (server/domain/sla_admin.py); a file over that is
# not read at all.
MAX_CALENDAR_FILE = 256 * 1024
_BUSINESS_TIME = re.compile(r"^(?:(\d{1,4})h)?(?:(\d{1,5})m)?$")
ON_RISK = {"notify": console_pb2.SLA_ON_RISK_NOTIFY, "escalate": console_pb2.SLA_ON_RISK_ESCALATE}
CSV_COLUMNS = [
    "ticket", "title", "contract", "priority", "clock", "due_at", "done_at", "late_min",
    "technician", "policy", "category",
]  # fmt: skip


def business_time(value: str) -> int:
    """Seconds of business time: `4h`, `30m`, `1h30m`. A day is refused: how long a business
    day is depends on the calendar, so the target says its hours."""
    cleaned = value.strip().lower().replace(" ", "")
    match = _BUSINESS_TIME.fullmatch(cleaned)
    if "d" in cleaned or "w" in cleaned:
        raise argparse.ArgumentTypeError(
            f"{value!r}: say business hours (a business day is as long as the calendar says), "
            "e.g. 9h for one day of 09:00-18:00"
        )
    if not cleaned or match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"{value[:20]!r} is not a target: say 4h, 30m or 1h30m")
    hours, minutes = (int(part) if part else 0 for part in match.groups())
    return hours * 3600 + minutes * 60


def at_risk_share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--at-risk {value!r}: a share such as 0.75") from None
    if not 0.05 <= share <= 0.99:
        raise argparse.ArgumentTypeError(
            f"--at-risk {value!r}: between 0.05 and 0.99 of the target"
        )
    return share


def on_risk(value: str) -> console_pb2.SlaOnRisk.ValueType:
    key = value.strip().lower()
    if key not in ON_RISK:
        raise argparse.ArgumentTypeError(f"--on-risk {value!r}: notify or escalate")
    return ON_RISK[key]


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    sla = commands.add_parser(
        "sla", parents=[common], help="business calendars, SLA policies and the compliance report"
    )
    parts = sla.add_subparsers(dest="sla_command", metavar="WHAT")
    parts.required = True

    calendar = parts.add_parser("calendar", parents=[common], help="business calendars (admin)")
    calendar_actions = calendar.add_subparsers(dest="calendar_command", metavar="COMMAND")
    calendar_actions.required = True
    set_calendar = calendar_actions.add_parser(
        "set",
        parents=[common],
        help="write a calendar from a TOML or JSON file: time_zone, hours, holidays",
    )
    set_calendar.add_argument("name", metavar="NAME")
    set_calendar.add_argument("--file", type=Path, required=True, metavar="FILE")
    set_calendar.set_defaults(handler=run_calendar_set)
    listed_calendars = calendar_actions.add_parser("list", parents=[common], help="the calendars")
    listed_calendars.set_defaults(handler=run_calendar_list)

    policy = parts.add_parser("policy", parents=[common], help="SLA policies (admin)")
    policy_actions = policy.add_subparsers(dest="policy_command", metavar="COMMAND")
    policy_actions.required = True
    set_policy = policy_actions.add_parser(
        "set",
        parents=[common],
        help="write a policy (a new version of NAME retires the old one; tickets keep theirs)",
    )
    set_policy.add_argument("name", metavar="NAME")
    set_policy.add_argument("--priority", type=priority, required=True, help="p1 to p4")
    set_policy.add_argument(
        "--contract", default="", metavar="NAME", help="the customer group; default: every one"
    )
    set_policy.add_argument("--response", type=business_time, required=True, metavar="TIME")
    set_policy.add_argument("--resolve", type=business_time, required=True, metavar="TIME")
    set_policy.add_argument(
        "--calendar",
        required=True,
        metavar="NAME",
        help='the business hours it counts in (round the clock: a calendar of "mon-sun" '
        '"00:00-24:00")',
    )
    set_policy.add_argument(
        "--at-risk", type=at_risk_share, default=0.75, metavar="SHARE",
        help="share of the target after which the clock is at risk (default 0.75)",
    )  # fmt: skip
    set_policy.add_argument(
        "--on-risk", type=on_risk, default=console_pb2.SLA_ON_RISK_NOTIFY,
        help="notify (the assignee or the level, by mail) or escalate (L1 to L2)",
    )  # fmt: skip
    set_policy.set_defaults(handler=run_policy_set)
    listed_policies = policy_actions.add_parser("list", parents=[common], help="the policies")
    listed_policies.add_argument("--all", action="store_true", help="with the retired versions")
    listed_policies.set_defaults(handler=run_policy_list)
    retire = policy_actions.add_parser(
        "retire", parents=[common], help="retire a policy (its tickets keep it)"
    )
    retire.add_argument("name", metavar="NAME")
    retire.set_defaults(handler=run_policy_retire)

    report = parts.add_parser(
        "report",
        parents=[common],
        help="compliance and breaches in a period, per contract, technician and category",
    )
    period_arguments(report)
    report.set_defaults(handler=run_report)


def calendar_definition(path: Path) -> str:
    """The file as the JSON the server reads; TOML unless it ends in .json."""
    try:
        size = path.stat().st_size
        if size > MAX_CALENDAR_FILE:
            raise CliError("INVALID_ARGUMENT", f"{path} is over {MAX_CALENDAR_FILE} bytes")
        raw = path.read_bytes()
    except OSError as error:
        raise CliError("INVALID_ARGUMENT", f"cannot read {path}: {error.strerror}") from None
    try:
        form = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as error:
        raise CliError("INVALID_ARGUMENT", f"{path} is not valid: {error}") from None
    if not isinstance(form, dict):
        raise CliError("INVALID_ARGUMENT", f"{path}: a table of time_zone, hours, holidays")
    return json.dumps(form, default=str)  # TOML dates as YYYY-MM-DD


def calendars_table(calendars: list[console_pb2.SlaCalendar]) -> ListTable:
    table = ListTable(
        f"{len(calendars)} calendars",
        [
            Column("name"),
            Column("time zone"),
            Column("hours", Give.WRAP),
            Column("holidays", optional=True),
            Column("updated", optional=True),
        ],
    )
    for calendar in calendars:
        table.add_row(
            text(calendar.name),
            text(calendar.time_zone),
            text("; ".join(f"{day} {hours}" for day, hours in calendar.hours.items()) or "-"),
            text(str(len(calendar.holidays))),
            text(f"{format_time(calendar.updated_at)} by {calendar.updated_by}"),
        )
    return table


def policies_table(policies: list[console_pb2.SlaPolicy]) -> ListTable:
    table = ListTable(
        f"{len(policies)} SLA policies",
        [
            Column("#"),
            Column("name"),
            Column("contract"),
            Column("priority"),
            Column("response"),
            Column("resolve"),
            Column("calendar"),
            Column("at risk"),
            Column("state", optional=True),
        ],
    )
    for policy in policies:
        retired = policy.HasField("retired_at")
        table.add_row(
            text(str(policy.id)),
            text(policy.name),
            text(policy.contract or "(default)"),
            text(priority_label(policy.priority)),
            text(format_duration(policy.response_within_s)),
            text(format_duration(policy.resolve_within_s)),
            text(policy.calendar),
            text(
                f"{round(100 * policy.at_risk_share)} %, then "
                f"{console_pb2.SlaOnRisk.Name(policy.on_risk).removeprefix('SLA_ON_RISK_').lower()}"
            ),
            Text(f"retired {format_time(policy.retired_at)}", style="dim")
            if retired
            else Text("live", style="green"),
        )
    return table


def _share(part: int, whole: int) -> str:
    return f"{part} ({round(100 * part / whole)} %)" if whole else "-"


def figures_table(title: str, figures: list[console_pb2.SlaFigures]) -> ListTable:
    table = ListTable(
        title,
        [
            Column("name"),
            Column("response met"),
            Column("response breached"),
            Column("resolve met"),
            Column("resolve breached"),
            Column("pending"),
        ],
    )
    for row in figures:
        response = row.response.met + row.response.breached
        resolve = row.resolve.met + row.resolve.breached
        table.add_row(
            text(row.name),
            text(_share(row.response.met, response)),
            text(_share(row.response.breached, response)),
            text(_share(row.resolve.met, resolve)),
            text(_share(row.resolve.breached, resolve)),
            text(str(row.response.pending + row.resolve.pending)),
        )
    return table


def breaches_table(breaches: list[console_pb2.SlaBreach]) -> ListTable:
    table = ListTable(
        f"{len(breaches)} breaches",
        [
            Column("#"),
            Column("clock"),
            Column("contract"),
            Column("priority"),
            Column("due"),
            Column("late by"),
            Column("technician", optional=True),
            Column("category", optional=True),
            Column("title", Give.CUT),
        ],
    )
    for breach in breaches:
        done = "" if breach.HasField("done_at") else " (still open)"
        table.add_row(
            text(str(breach.ticket_id)),
            text(breach.clock),
            text(breach.contract or "(default)"),
            text(priority_label(breach.priority)),
            text(format_time(breach.due_at)),
            text(format_duration(breach.late_s) + done),
            text(breach.technician or "-"),
            text(breach.category or "-"),
            text(breach.title),
        )
    return table


def run_calendar_set(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.SetSlaCalendarRequest(
        name=args.name, definition_json=calendar_definition(args.file)
    )
    response = client.call(client.stub.SetSlaCalendar, request)
    calendar = response.calendar
    line = (
        f"calendar {inert(calendar.name)} set: {inert(calendar.time_zone)}, "
        f"{len(calendar.hours)} working day(s), {len(calendar.holidays)} holiday(s)"
    )
    ctx.out.result(response, Text(line))
    return 0


def run_calendar_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.ListSlaCalendars, console_pb2.ListSlaCalendarsRequest())
    ctx.out.result(response, calendars_table(list(response.calendars)))
    return 0


def run_policy_set(args: argparse.Namespace, ctx: Context) -> int:
    if args.resolve < args.response:
        raise CliError("INVALID_ARGUMENT", "--resolve is shorter than --response")
    client = ctx.client()
    request = console_pb2.SetSlaPolicyRequest(
        name=args.name,
        contract=args.contract,
        priority=args.priority,
        response_within_s=args.response,
        resolve_within_s=args.resolve,
        calendar=args.calendar,
        at_risk_share=args.at_risk,
        on_risk=args.on_risk,
    )
    response = client.call(client.stub.SetSlaPolicy, request)
    policy = response.policy
    line = (
        f"SLA policy {inert(policy.name)} #{policy.id}: {priority_label(policy.priority)} "
        f"tickets of {inert(policy.contract or 'every contract')}, response within "
        f"{format_duration(policy.response_within_s)}, resolved within "
        f"{format_duration(policy.resolve_within_s)} "
        f"(calendar {inert(policy.calendar)}); "
        "new tickets take it"
    )
    ctx.out.result(response, Text(line))
    return 0


def run_policy_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListSlaPoliciesRequest(include_retired=args.all)
    response = client.call(client.stub.ListSlaPolicies, request)
    ctx.out.result(response, policies_table(list(response.policies)))
    return 0


def run_policy_retire(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.RetireSlaPolicyRequest(name=args.name)
    response = client.call(client.stub.RetireSlaPolicy, request)
    line = f"SLA policy {inert(response.policy.name)} retired; its tickets keep it"
    ctx.out.result(response, Text(line))
    return 0


def run_report(args: argparse.Namespace, ctx: Context) -> int:
    request = period_request(args, console_pb2.ReportSlaRequest())
    client = ctx.client()
    response = client.call(client.stub.ReportSla, request)
    show_report(
        ctx,
        response,
        as_csv=args.format == "csv",
        columns=CSV_COLUMNS,
        rows=(
            [
                breach.ticket_id,
                breach.title,
                breach.contract,
                priority_label(breach.priority),
                breach.clock,
                breach.due_at.ToDatetime(tzinfo=UTC).isoformat(),
                breach.done_at.ToDatetime(tzinfo=UTC).isoformat()
                if breach.HasField("done_at")
                else "",
                round(breach.late_s / 60),
                breach.technician,
                breach.policy,
                breach.category,
            ]
            for breach in response.breaches
        ),
        tables=lambda: [
            figures_table("Overall", [response.overall]),
            figures_table("By contract", list(response.by_contract)),
            figures_table("By technician", list(response.by_technician)),
            figures_table("By category", list(response.by_category)),
            breaches_table(list(response.breaches)),
        ],
    )
    return 0
