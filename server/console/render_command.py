"""How commands read in the terminal: their state, timeline, and the table of many."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from sonde.server.console.layout import Column, Give, ListTable, unique_prefix_chars
from sonde.server.console.render import (
    enum_label,
    format_time,
    has_time,
    machine_cell,
    machine_name,
    short_id_chars,
    text,
)
from sonde.v1 import console_pb2

STATE_STYLES = {
    console_pb2.COMMAND_STATE_QUEUED: "cyan",
    console_pb2.COMMAND_STATE_DELIVERED: "cyan",
    console_pb2.COMMAND_STATE_RUNNING: "cyan",
    console_pb2.COMMAND_STATE_SUCCEEDED: "green",
    console_pb2.COMMAND_STATE_FAILED: "bold red",
    console_pb2.COMMAND_STATE_TIMED_OUT: "bold red",
    console_pb2.COMMAND_STATE_REFUSED: "bold red",
    console_pb2.COMMAND_STATE_INTERRUPTED: "yellow",
    console_pb2.COMMAND_STATE_CANCELLED: "yellow",
    console_pb2.COMMAND_STATE_EXPIRED: "yellow",
}
OPEN_STATES = frozenset(
    {
        console_pb2.COMMAND_STATE_QUEUED,
        console_pb2.COMMAND_STATE_DELIVERED,
        console_pb2.COMMAND_STATE_RUNNING,
    }
)
# `--state` words: "queued", "timed_out", ...
STATE_NAMES = {
    enum_label(name, "COMMAND_STATE_").replace(" ", "_"): number
    for name, number in console_pb2.CommandState.items()
    if number != console_pb2.COMMAND_STATE_UNSPECIFIED
}


def state_label(state: console_pb2.CommandState.ValueType) -> str:
    return enum_label(console_pb2.CommandState.Name(state), "COMMAND_STATE_")


def state_text(state: console_pb2.CommandState.ValueType) -> Text:
    return Text(state_label(state), style=STATE_STYLES.get(state, ""))


def kind_label(kind: console_pb2.CommandKind.ValueType) -> str:
    return {
        console_pb2.COMMAND_KIND_COLLECT: "diagnostic",
        console_pb2.COMMAND_KIND_RUN_SCRIPT: "script run",
    }.get(kind, "command")


def machine(command: console_pb2.Command) -> str:
    """The machine as it names itself, always beside its id (a name can lie)."""
    return machine_name(command.agent_hostname, command.agent_id)


def queued_line(command: console_pb2.Command, online: bool) -> Text:
    """What `sonde diag` says when the result is not there yet."""
    line = Text(f"{kind_label(command.kind).capitalize()} {command.id} ", style="bold")
    line.append(f"for {machine(command)} is ")
    line.append_text(state_text(command.state))
    if not online:
        line.append(": the agent is offline; it runs when the agent connects")
    line.append(f", expires {format_time(command.expires_at)}")
    if command.ticket_id:
        line.append(f", lands on ticket {command.ticket_id}")
    line.append(f". Follow it with: sonde commands show {command.id}")
    return line


def command_detail(command: console_pb2.Command) -> Table:
    table = Table(show_header=False, box=None, title=f"Command {command.id}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("what", kind_label(command.kind))
    table.add_row("machine", text(machine(command)))
    table.add_row("state", state_text(command.state))
    if command.reason:
        table.add_row("why", text(command.reason))
    table.add_row("ticket", str(command.ticket_id) if command.ticket_id else "-")
    table.add_row("asked by", text(command.requested_by))
    for label, stamp in (
        ("queued", command.created_at),
        ("delivered", command.delivered_at),
        ("started", command.started_at),
        ("finished", command.finished_at),
        ("expires", command.expires_at),
    ):
        if has_time(stamp):
            table.add_row(label, format_time(stamp))
    if command.deliveries > 1:
        table.add_row("deliveries", str(command.deliveries))
    if command.cancelled_by:
        table.add_row("cancelled by", text(command.cancelled_by))
    if command.snapshot_id:
        table.add_row("snapshot", str(command.snapshot_id))
    return table


def commands_table(commands: Sequence[console_pb2.Command]) -> ListTable:
    """The machine (its name over the start of its id), what, its state, when it was queued,
    then the start of the command's id (unique among the rows: `commands show` takes it)."""
    id_chars = short_id_chars(command.agent_id for command in commands)
    command_chars = unique_prefix_chars(command.id for command in commands)
    table = ListTable(
        "Commands",
        [
            Column("machine", Give.CUT, min_width=id_chars),
            Column("what"),
            Column("state"),
            Column("queued"),
            Column("id"),
            Column("ticket", optional=True),
            Column("asked by", Give.CUT, optional=True),
            Column("finished", optional=True),
        ],
    )
    for command in commands:
        table.add_row(
            machine_cell(command.agent_hostname, command.agent_id, id_chars),
            kind_label(command.kind),
            state_text(command.state),
            format_time(command.created_at),
            command.id[:command_chars],
            str(command.ticket_id) if command.ticket_id else "-",
            text(command.requested_by),
            format_time(command.finished_at) if has_time(command.finished_at) else "-",
        )
    return table
