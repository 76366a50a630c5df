"""Wherever the CLI shows a machine, the id stands beside the name it reports (a name can lie)."""

from __future__ import annotations

import io

from rich.console import RenderableType

from sonde.server.console.output import Output
from sonde.server.console.render import (
    agent_detail,
    agents_table,
    key_facts,
    machine_name,
    short_id_chars,
    snapshot_line,
)
from sonde.server.console.render_command import command_detail, commands_table, queued_line
from sonde.server.console.render_ticket import ticket_view, tickets_table
from sonde.v1 import console_pb2, diagnostics_pb2

VICTIM_ID = "kry2" + "a" * 22
ROGUE_ID = "zz" + "b" * 24
# The rogue reports the victim's id prefix as its host name.
ROGUE_NAME = VICTIM_ID[:4]
SHOWN = f"{ROGUE_NAME} ({ROGUE_ID})"
NOW = 1_700_000_000.0


def rendered(*renderables: RenderableType, width: int = 300) -> str:
    buffer = io.StringIO()
    Output(json_mode=False, stdout=buffer, force_terminal=False, width=width).show(*renderables)
    return buffer.getvalue()


def test_machine_name_is_the_reported_name_and_the_id() -> None:
    assert machine_name(ROGUE_NAME, ROGUE_ID) == SHOWN
    assert machine_name("evil\x1b[31m", ROGUE_ID) == f"evil\\x1b[31m ({ROGUE_ID})"
    # An agent that never reported a name is named by its id; no agent at all is "-".
    assert machine_name(ROGUE_ID, ROGUE_ID) == ROGUE_ID
    assert machine_name("", ROGUE_ID) == ROGUE_ID
    assert machine_name("", "") == "-"
    # A name equal to another agent's id is still followed by the agent's own id.
    assert machine_name(VICTIM_ID, ROGUE_ID) == f"{VICTIM_ID} ({ROGUE_ID})"


def test_tables_show_enough_of_each_id_that_no_two_machines_look_alike() -> None:
    assert short_id_chars([VICTIM_ID, ROGUE_ID]) == 8
    # A key ground until its id starts like the victim's: the table shows where they differ.
    twin = VICTIM_ID[:11] + "z" + VICTIM_ID[12:]
    assert short_id_chars([VICTIM_ID, ROGUE_ID, twin, VICTIM_ID]) == 12
    assert short_id_chars([]) == 8


def command(agent_id: str = ROGUE_ID) -> console_pb2.Command:
    return console_pb2.Command(
        id="c" * 32,
        agent_id=agent_id,
        agent_hostname=ROGUE_NAME,
        kind=console_pb2.COMMAND_KIND_COLLECT,
        state=console_pb2.COMMAND_STATE_QUEUED,
        snapshot_id=12,
    )


def test_commands_show_the_id_beside_the_name() -> None:
    assert SHOWN in rendered(command_detail(command()))
    assert SHOWN in queued_line(command(), online=False).plain
    # A table: the name, and under it the start of the id, never cut even when narrow.
    twin = ROGUE_ID[:10] + "q" + ROGUE_ID[11:]
    for width in (300, 80):
        listed = rendered(commands_table([command(), command(twin)]), width=width)
        assert ROGUE_ID[:11] in listed
        assert twin[:11] in listed
        assert ROGUE_NAME in listed


def test_a_diagnostic_shows_the_machine_that_answered() -> None:
    summary = console_pb2.SnapshotSummary(id=12, agent_id=ROGUE_ID, finding_count=1)
    heading = snapshot_line(summary, machine_name(ROGUE_NAME, ROGUE_ID))
    assert heading.plain.startswith(f"#12 of {SHOWN} at ")
    snapshot = diagnostics_pb2.Snapshot(
        agent_id=ROGUE_ID, system=diagnostics_pb2.SystemFacts(hostname="all fine here")
    )
    assert f"all fine here ({ROGUE_ID})" in rendered(key_facts(snapshot))


def test_agents_show_the_id_beside_the_name() -> None:
    agent = console_pb2.Agent(id=ROGUE_ID, hostname=ROGUE_NAME, online=True)
    detail = rendered(agent_detail(console_pb2.GetAgentResponse(agent=agent), NOW))
    assert ROGUE_NAME in detail
    assert ROGUE_ID in detail
    # The list: the name, then the start of the id, as much as tells the rows apart.
    victim = console_pb2.Agent(id=VICTIM_ID, hostname="PC-042", online=True)
    twin = console_pb2.Agent(id=VICTIM_ID[:11] + "z" + VICTIM_ID[12:], hostname="PC-043")
    listed = rendered(agents_table([agent, victim, twin], NOW), width=80).splitlines()
    rogue_row = next(line for line in listed if line.startswith(ROGUE_NAME))
    assert rogue_row.split()[1] == ROGUE_ID[:12]
    assert next(line for line in listed if line.startswith("PC-042")).split()[1] == VICTIM_ID[:12]


def test_tickets_and_their_timeline_show_the_id_beside_the_name() -> None:
    ticket = console_pb2.Ticket(
        id=17, title="PC is slow", agent_id=ROGUE_ID, agent_hostname=ROGUE_NAME
    )
    for width in (300, 80):
        listed = rendered(tickets_table([ticket], NOW), width=width)
        assert ROGUE_NAME in listed
        assert ROGUE_ID[:8] in listed
    own = console_pb2.SnapshotSummary(id=12, agent_id=ROGUE_ID)
    # A diagnostic of another machine on the same ticket: its id, not the ticket's name.
    other = console_pb2.SnapshotSummary(id=13, agent_id=VICTIM_ID)
    timeline = [
        console_pb2.TicketEvent(
            kind=console_pb2.TICKET_EVENT_KIND_DIAGNOSTIC, snapshot_id=12, snapshot=own
        ),
        console_pb2.TicketEvent(
            kind=console_pb2.TICKET_EVENT_KIND_DIAGNOSTIC, snapshot_id=13, snapshot=other
        ),
    ]
    text = rendered(ticket_view(console_pb2.GetTicketResponse(ticket=ticket, timeline=timeline)))
    header, _, events = text.partition("Timeline")
    assert SHOWN in header
    assert f"#12 of {SHOWN} at " in events
    assert f"#13 of {VICTIM_ID} at " in events
    assert f"{ROGUE_NAME} ({VICTIM_ID})" not in text
