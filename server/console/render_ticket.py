"""Tickets on the terminal: the list, the header with SLA due times, and the timeline."""

from __future__ import annotations

import time
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from sonde.server.console.handover import handover as _handover
from sonde.server.console.layout import Column, Give, ListTable, Paragraph
from sonde.server.console.render import (
    SEVERITY_STYLE,
    enum_label,
    format_duration,
    format_time,
    has_time,
    machine_cell,
    machine_column_width,
    machine_name,
    severity_text,
    short_id_chars,
    snapshot_line,
    sorted_findings,
    text,
)
from sonde.server.console.render_verification import run_event_lines
from sonde.v1 import console_pb2, diagnostics_pb2

_FINISHED = (console_pb2.TICKET_STATUS_RESOLVED, console_pb2.TICKET_STATUS_CLOSED)
_STATUS_STYLE = {
    console_pb2.TICKET_STATUS_NEW: "cyan",
    console_pb2.TICKET_STATUS_IN_PROGRESS: "blue",
    console_pb2.TICKET_STATUS_WAITING: "magenta",
    console_pb2.TICKET_STATUS_RESOLVED: "green",
    console_pb2.TICKET_STATUS_CLOSED: "dim",
}
# How far a timeline event's detail sits under its when/who/what line.
_DETAIL_INDENT = 4
_PRIORITY_STYLE = {
    console_pb2.TICKET_PRIORITY_P1: "bold red",
    console_pb2.TICKET_PRIORITY_P2: "red",
}


def status_label(status: console_pb2.TicketStatus.ValueType) -> str:
    return enum_label(console_pb2.TicketStatus.Name(status), "TICKET_STATUS_")


def status_text(status: console_pb2.TicketStatus.ValueType) -> Text:
    return Text(status_label(status), style=_STATUS_STYLE.get(status, ""))


def priority_label(priority: console_pb2.TicketPriority.ValueType) -> str:
    return enum_label(console_pb2.TicketPriority.Name(priority), "TICKET_PRIORITY_")


def priority_text(priority: console_pb2.TicketPriority.ValueType) -> Text:
    return Text(priority_label(priority), style=_PRIORITY_STYLE.get(priority, ""))


def level_label(level: console_pb2.TicketLevel.ValueType) -> str:
    return enum_label(console_pb2.TicketLevel.Name(level), "TICKET_LEVEL_")


def channel_label(channel: console_pb2.TicketChannel.ValueType) -> str:
    return enum_label(console_pb2.TicketChannel.Name(channel), "TICKET_CHANNEL_")


def sla_text(
    due: Timestamp, met: bool, now: float | None = None, risk: Timestamp | None = None
) -> Text:
    """A due time; red with 'overdue' when it passed and the SLA is not met yet, yellow with
    'at risk' once its policy's at-risk instant has passed (docs/sla.md)."""
    if not has_time(due):
        return Text("-")
    shown = format_time(due)
    if met:
        return Text(shown)
    now = time.time() if now is None else now
    left = due.seconds - now
    if left < 0:
        return Text(f"{shown} (overdue by {format_duration(left)})", style="bold red")
    if risk is not None and has_time(risk) and risk.seconds <= now:
        return Text(f"{shown} (at risk: {format_duration(left)} left)", style="bold yellow")
    return Text(f"{shown} (in {format_duration(left)})")


def contract_label(ticket: console_pb2.Ticket) -> str:
    """`acme, SLA policy #4`: whose commitments the due times come from."""
    contract = ticket.contract or "(default)"
    if not ticket.sla_policy_id:
        return f"{contract}, wall-clock targets"
    return f"{contract}, SLA policy #{ticket.sla_policy_id} (business hours)"


def response_met(ticket: console_pb2.Ticket) -> bool:
    # A technician has responded once the ticket left "new".
    return ticket.status != console_pb2.TICKET_STATUS_NEW


def resolve_met(ticket: console_pb2.Ticket) -> bool:
    return ticket.status in _FINISHED


def agent_label(ticket: console_pb2.Ticket) -> Text:
    """The ticket's machine: the name it reports and its id, or '-'."""
    if not ticket.agent_id:
        return Text("-")
    return text(machine_name(ticket.agent_hostname, ticket.agent_id, ticket.agent_removed))


def due_text(due: Timestamp, met: bool, now: float | None = None) -> Text:
    """A due time as a list shows it: how long is left, or how long ago it passed."""
    if not has_time(due):
        return Text("-")
    if met:
        return Text("met")
    now = time.time() if now is None else now
    left = due.seconds - now
    if left < 0:
        return Text(f"overdue by {format_duration(left)}", style="bold red")
    return Text(f"in {format_duration(left)}")


def tickets_table(
    tickets: Sequence[console_pb2.Ticket], now: float | None = None, title: str = "Tickets"
) -> ListTable:
    """One line a ticket (two with a machine: its name over the start of its id); the title
    is cut to the width, the status never (`ticket show` has the rest)."""
    id_chars = short_id_chars(ticket.agent_id for ticket in tickets if ticket.agent_id)
    table = ListTable(
        title,
        [
            Column("#", justify="right"),
            Column("pri"),
            Column("status"),
            Column("level"),
            Column("title", Give.CUT),
            Column("machine", Give.CUT, min_width=machine_column_width(id_chars)),
            Column("resolve due"),
            Column("assignee", Give.CUT, optional=True),
        ],
    )
    for ticket in tickets:
        table.add_row(
            str(ticket.id),
            priority_text(ticket.priority),
            status_text(ticket.status),
            level_label(ticket.level),
            text(ticket.title),
            machine_cell(ticket.agent_hostname, ticket.agent_id, id_chars, ticket.agent_removed),
            due_text(ticket.resolve_due_at, resolve_met(ticket), now),
            text(ticket.assignee or "-"),
        )
    return table


def _resolve_due(ticket: console_pb2.Ticket, now: float | None) -> Text:
    if ticket.status == console_pb2.TICKET_STATUS_WAITING:  # its clock is paused (sla.py)
        return Text(f"{format_time(ticket.resolve_due_at)} (paused while waiting; moves on resume)")
    return sla_text(ticket.resolve_due_at, resolve_met(ticket), now, ticket.resolve_risk_at)


def nature_label(ticket: console_pb2.Ticket) -> str:
    """`incident, printing/spooler (confirmed by bob)`: what the request is, and its place."""
    kind = enum_label(
        console_pb2.TicketKind.Name(ticket.kind or console_pb2.TICKET_KIND_INCIDENT),
        "TICKET_KIND_",
    )
    if not ticket.category:
        return f"{kind}, no category yet"
    confirmed = (
        f" (confirmed by {ticket.category_confirmed_by})" if ticket.category_confirmed_by else ""
    )
    return f"{kind}, {ticket.category}{confirmed}"


def outcome_label(outcome: console_pb2.TicketOutcome.ValueType) -> str:
    return enum_label(console_pb2.TicketOutcome.Name(outcome), "TICKET_OUTCOME_")


def ticket_header(ticket: console_pb2.Ticket, now: float | None = None) -> Group:
    title = Text(f"Ticket #{ticket.id}: ", style="bold")
    title.append_text(text(ticket.title, "bold"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    status = status_text(ticket.status)
    status.append(f" ({level_label(ticket.level)}, ")
    status.append_text(priority_text(ticket.priority))
    status.append(")")
    rows: list[tuple[str, Text]] = [
        ("status", status),
        ("kind", Text(nature_label(ticket))),
        ("channel", Text(channel_label(ticket.channel))),
        ("requester", text(ticket.requester or "-")),
        ("assignee", text(ticket.assignee or "-")),
        ("agent", agent_label(ticket)),
        ("opened", text(f"{format_time(ticket.created_at)} by {ticket.created_by}")),
        ("contract", text(contract_label(ticket))),
        (
            "response due",
            sla_text(ticket.response_due_at, response_met(ticket), now, ticket.response_risk_at),
        ),
        ("resolve due", _resolve_due(ticket, now)),
    ]
    if ticket.outcome:
        rows.append(("outcome", Text(outcome_label(ticket.outcome))))
    if ticket.time_spent_s:
        rows.append(("time spent", Text(format_duration(ticket.time_spent_s))))
    if ticket.resolution:
        rows.append(("resolution", Text("\n").join(_body_lines(ticket.resolution))))
    if has_time(ticket.resolved_at):
        rows.append(("resolved", Text(format_time(ticket.resolved_at))))
    if has_time(ticket.closed_at):
        rows.append(("closed", Text(format_time(ticket.closed_at))))
    for name, value in rows:
        grid.add_row(name, value)
    parts: list[Text | Table | Paragraph] = [title, grid]
    if ticket.description:
        parts.append(Paragraph(ticket.description))
    return Group(*parts)


def event_kind_label(kind: console_pb2.TicketEventKind.ValueType) -> str:
    return enum_label(console_pb2.TicketEventKind.Name(kind), "TICKET_EVENT_KIND_")


def event_detail(event: console_pb2.TicketEvent, ticket: console_pb2.Ticket) -> Text:
    """What happened, in one cell: the body, and for a diagnostic its machine, severity and
    findings (the machine's name is known when it is the ticket's, its id always)."""
    lines: list[Text] = []
    kind = event.kind
    if kind == console_pb2.TICKET_EVENT_KIND_ASSIGNED and event.assignee:
        taken = f", from {event.previous_assignee}" if event.previous_assignee else ""
        lines.append(text(f"to {event.assignee}{taken}"))
    if kind == console_pb2.TICKET_EVENT_KIND_ESCALATED:
        lines.append(text(_handover(event.previous_assignee, event.assignee)))
    if kind == console_pb2.TICKET_EVENT_KIND_STATUS_CHANGED or (
        event.from_status and event.to_status and event.from_status != event.to_status
    ):
        change = status_text(event.from_status)
        change.append(" -> ")
        change.append_text(status_text(event.to_status))
        lines.append(change)
    if event.body:
        lines.extend(_body_lines(event.body))
    if kind == console_pb2.TICKET_EVENT_KIND_DIAGNOSTIC:
        if event.HasField("snapshot"):
            lines.append(snapshot_line(event.snapshot, _snapshot_machine(event.snapshot, ticket)))
        elif event.snapshot_id:
            lines.append(Text(f"snapshot #{event.snapshot_id}"))
        lines.extend(_findings_lines(event.findings))
    lines.extend(run_event_lines(event))
    return Text("\n").join(lines)


def _body_lines(body: str) -> list[Text]:
    """What a person wrote, its newlines kept (each line inert); the width wraps it."""
    return [text(line) for line in body.replace("\r\n", "\n").split("\n")]


def _snapshot_machine(summary: console_pb2.SnapshotSummary, ticket: console_pb2.Ticket) -> str:
    """The diagnostic's machine: the name its agent reports and its whole id (a detail view)."""
    if not summary.agent_id:
        return ""
    name = summary.agent_hostname or (
        ticket.agent_hostname if summary.agent_id == ticket.agent_id else ""
    )
    return machine_name(name, summary.agent_id, summary.agent_removed)


def _findings_lines(findings: Sequence[diagnostics_pb2.Finding]) -> list[Text]:
    """Problems in full, worst first; the checks that passed on one line, to keep it short."""
    lines: list[Text] = []
    passed: list[str] = []
    for finding in sorted_findings(findings):
        if finding.severity == diagnostics_pb2.SEVERITY_OK:
            passed.append(finding.check)
            continue
        line = Text("  ")
        line.append_text(severity_text(finding.severity))
        line.append(" ")
        line.append_text(text(f"{finding.check}: ", "dim"))
        line.append_text(text(finding.summary, SEVERITY_STYLE.get(finding.severity, "")))
        lines.append(line)
    if passed:
        line = Text("  ")
        line.append_text(severity_text(diagnostics_pb2.SEVERITY_OK))
        line.append_text(text(f" {', '.join(passed)}", "dim"))
        lines.append(line)
    return lines


class Timeline:
    """The timeline as a list: a line for when, who and what, then the detail under it,
    indented and wrapped to the width (a comment keeps its newlines; nothing is cut)."""

    def __init__(
        self, events: Sequence[console_pb2.TicketEvent], ticket: console_pb2.Ticket
    ) -> None:
        self.events = events
        self.ticket = ticket

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text("Timeline", style="italic")
        for event in self.events:
            line = Text(format_time(event.at))
            line.append("  ")
            line.append_text(text(event.actor or "-"))
            line.append("  ")
            line.append(event_kind_label(event.kind), style="bold")
            yield line
            detail = event_detail(event, self.ticket)
            if detail.plain:
                yield Padding(detail, (0, 0, 0, _DETAIL_INDENT))


def timeline_table(
    events: Sequence[console_pb2.TicketEvent], ticket: console_pb2.Ticket
) -> Timeline:
    return Timeline(events, ticket)


def ticket_view(response: console_pb2.GetTicketResponse, now: float | None = None) -> Group:
    return Group(
        ticket_header(response.ticket, now),
        Text(""),
        timeline_table(response.timeline, response.ticket),
    )
