"""Rendering from hand-built messages: severity order and colour, SLA, timeline, hostile text."""

from __future__ import annotations

import io
import time

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import RenderableType
from rich.text import Text

from sonde.server.console.inert import inert
from sonde.server.console.output import Output
from sonde.server.console.render import (
    agent_detail,
    agents_table,
    findings_table,
    key_facts,
    sorted_findings,
    users_table,
)
from sonde.server.console.render_ticket import ticket_view, tickets_table
from sonde.v1 import console_pb2, diagnostics_pb2

HOSTILE = "<b>PC</b>\x1b[31mX\nY"
HOSTILE_SHOWN = "<b>PC</b>\\x1b[31mX\\nY"
MARKUP = "[bold red]boom[/] [link=http://evil]x[/link]"
NOW = 1_700_000_000.0


def at(seconds: float) -> Timestamp:
    return Timestamp(seconds=int(seconds))


def rendered(*renderables: RenderableType, colour: bool = False) -> str:
    buffer = io.StringIO()
    out = Output(json_mode=False, stdout=buffer, force_terminal=colour, width=240)
    out.show(*renderables)
    return buffer.getvalue()


def finding(check: str, severity: int, summary: str) -> diagnostics_pb2.Finding:
    return diagnostics_pb2.Finding(
        check=check,
        severity=severity,  # type: ignore[arg-type]
        summary=summary,
        evidence=[diagnostics_pb2.Evidence(key="used_percent", value="97")],
    )


FINDINGS = [
    finding("memory.pressure", diagnostics_pb2.SEVERITY_OK, "Memory is fine."),
    finding("disk.space", diagnostics_pb2.SEVERITY_CRITICAL, "Disk / is 97% full."),
    finding("cpu.saturation", diagnostics_pb2.SEVERITY_WARNING, "CPU busy for 10 minutes."),
]


def test_inert_escapes_every_character_a_terminal_acts_on() -> None:
    assert inert("PC-042") == "PC-042"
    assert inert(HOSTILE) == HOSTILE_SHOWN
    assert inert("a\tb\rc\x00d\x7f") == "a\\tb\\rc\\x00d\\x7f"
    assert inert("\x9b31m") == "\\x9b31m"  # the one-byte C1 CSI
    assert inert("abc\u202eevil") == "abc\\u202eevil"  # bidi override
    assert inert("l\u2028m") == "l\\u2028m"
    assert inert("Müller 東京") == "Müller 東京"


def test_findings_are_ordered_critical_first() -> None:
    order = [f.check for f in sorted_findings(FINDINGS)]
    assert order == ["disk.space", "cpu.saturation", "memory.pressure"]
    text = rendered(findings_table(FINDINGS))
    assert text.index("disk.space") < text.index("cpu.saturation") < text.index("memory")
    assert "used_percent=97" in text


def test_severities_are_coloured() -> None:
    text = rendered(findings_table(FINDINGS), colour=True)
    red, yellow, green = "\x1b[1;31mcritical", "\x1b[33mwarning", "\x1b[32mok"
    assert red in text
    assert yellow in text
    assert green in text


def test_hostile_host_name_is_printed_inert_everywhere() -> None:
    agent = console_pb2.Agent(
        id="a" * 26, hostname=HOSTILE, os_name=MARKUP, online=True, last_seen_at=at(NOW)
    )
    ticket = console_pb2.Ticket(
        id=7, title=MARKUP, agent_id=agent.id, agent_hostname=HOSTILE, requester=HOSTILE
    )
    detail = console_pb2.GetAgentResponse(agent=agent, open_tickets=[ticket])
    comment = console_pb2.TicketEvent(
        kind=console_pb2.TICKET_EVENT_KIND_COMMENT, actor=HOSTILE, body=f"{MARKUP}\n{HOSTILE}"
    )
    view = console_pb2.GetTicketResponse(ticket=ticket, timeline=[comment])
    for colour in (False, True):
        text = rendered(
            agents_table([agent], NOW),
            agent_detail(detail, NOW),
            tickets_table([ticket], NOW),
            ticket_view(view, NOW),
            colour=colour,
        )
        assert HOSTILE_SHOWN in text
        assert "\x1b[31mX" not in text
        assert "X\nY" not in text
        # Markup in data is shown as typed, not interpreted (no hyperlink, no bold).
        assert "[bold red]boom[/]" in text
        assert "\x1b]8;" not in text


def test_hostile_finding_and_facts_are_inert() -> None:
    hostile = finding("disk.space", diagnostics_pb2.SEVERITY_CRITICAL, HOSTILE)
    snapshot = diagnostics_pb2.Snapshot(
        system=diagnostics_pb2.SystemFacts(hostname=HOSTILE, os_name=MARKUP),
        disks=diagnostics_pb2.DiskFacts(
            partitions=[diagnostics_pb2.Partition(mountpoint=HOSTILE, total_bytes=10)]
        ),
    )
    text = rendered(findings_table([hostile]), key_facts(snapshot), colour=True)
    assert text.count(HOSTILE_SHOWN) == 3
    assert "\x1b[31mX" not in text
    assert "[bold red]boom[/]" in text


def test_key_facts_show_os_uptime_cpu_memory_disks_network() -> None:
    snapshot = diagnostics_pb2.Snapshot(
        system=diagnostics_pb2.SystemFacts(
            hostname="PC-042",
            os_name="Ubuntu 24.04.1 LTS",
            os_version="6.8.0-45-generic",
            architecture="x86_64",
            uptime_seconds=3 * 86400 + 4 * 3600,
        ),
        cpu=diagnostics_pb2.CpuFacts(
            model="Intel i5", physical_cores=4, logical_cores=8, usage_percent=12.4
        ),
        memory=diagnostics_pb2.MemoryFacts(
            total_bytes=16 * 1024**3, used_bytes=8 * 1024**3, used_percent=50.0
        ),
        disks=diagnostics_pb2.DiskFacts(
            partitions=[
                diagnostics_pb2.Partition(
                    mountpoint="/",
                    total_bytes=100 * 1024**3,
                    used_bytes=97 * 1024**3,
                    used_percent=97.0,
                )
            ]
        ),
        network=diagnostics_pb2.NetworkFacts(
            default_gateway="192.168.1.1",
            dns_servers=["192.168.1.1"],
            interfaces=[
                diagnostics_pb2.NetworkInterface(
                    name="eth0",
                    is_up=True,
                    addresses=[diagnostics_pb2.NetworkAddress(family="ipv4", address="10.0.0.5")],
                )
            ],
        ),
        collectors=[
            diagnostics_pb2.CollectorReport(
                name="battery",
                state=diagnostics_pb2.COLLECTOR_STATE_UNAVAILABLE,
                reason="no battery",
            )
        ],
    )
    text = rendered(key_facts(snapshot))
    assert "Ubuntu 24.04.1 LTS (6.8.0-45-generic, x86_64)" in text
    assert "3d 4h" in text
    assert "Intel i5: 4 cores / 8 threads, 12% busy" in text
    assert "8.0 GiB of 16 GiB used (50%)" in text
    assert "/ 97 GiB of 100 GiB (97%)" in text
    assert "gateway 192.168.1.1; dns 192.168.1.1; eth0 10.0.0.5" in text
    assert "battery: unavailable (no battery)" in text


def ticket_with_timeline(status: int) -> console_pb2.GetTicketResponse:
    summary = console_pb2.SnapshotSummary(
        id=42,
        worst_severity=diagnostics_pb2.SEVERITY_CRITICAL,
        finding_count=3,
        ticket_id=17,
        collected_at=at(NOW - 600),
    )
    ticket = console_pb2.Ticket(
        id=17,
        title="PC is slow",
        status=status,  # type: ignore[arg-type]
        level=console_pb2.TICKET_LEVEL_L1,
        priority=console_pb2.TICKET_PRIORITY_P2,
        channel=console_pb2.TICKET_CHANNEL_PHONE,
        requester="Marie Dupont",
        created_by="alice",
        created_at=at(NOW - 7200),
        response_due_at=at(NOW - 3600),
        resolve_due_at=at(NOW + 3 * 3600),
    )
    timeline = [
        console_pb2.TicketEvent(
            kind=console_pb2.TICKET_EVENT_KIND_OPENED, actor="alice", at=at(NOW - 7200)
        ),
        console_pb2.TicketEvent(
            kind=console_pb2.TICKET_EVENT_KIND_DIAGNOSTIC,
            actor="alice",
            at=at(NOW - 600),
            snapshot_id=42,
            snapshot=summary,
            findings=FINDINGS,
        ),
        console_pb2.TicketEvent(
            kind=console_pb2.TICKET_EVENT_KIND_ESCALATED,
            actor="alice",
            body="needs a disk cleanup",
            from_status=console_pb2.TICKET_STATUS_NEW,
            to_status=console_pb2.TICKET_STATUS_IN_PROGRESS,
        ),
        console_pb2.TicketEvent(
            kind=console_pb2.TICKET_EVENT_KIND_ASSIGNED, actor="alice", assignee="bob"
        ),
    ]
    return console_pb2.GetTicketResponse(ticket=ticket, timeline=timeline)


def test_ticket_show_has_header_sla_and_timeline() -> None:
    text = rendered(ticket_view(ticket_with_timeline(console_pb2.TICKET_STATUS_NEW), NOW))
    assert "Ticket #17: PC is slow" in text
    assert "new (l1, p2)" in text
    assert "Marie Dupont" in text
    assert "(overdue by 1h 0m)" in text
    assert "(in 3h 0m)" in text
    # The diagnostic with its worst severity and its findings, critical first.
    assert "#42" in text
    assert "critical, 3 finding(s), ticket #17" in text
    assert text.index("disk.space: Disk / is 97% full.") < text.index("cpu.saturation")
    # Checks that passed are listed by name only, after the problems.
    assert "ok memory.pressure" in text
    assert "Memory is fine." not in text
    assert "needs a disk cleanup" in text
    assert "new -> in progress" in text
    assert "to bob" in text


def test_overdue_is_red_and_a_met_sla_is_not_overdue() -> None:
    open_text = rendered(
        ticket_view(ticket_with_timeline(console_pb2.TICKET_STATUS_NEW), NOW), colour=True
    )
    assert "\x1b[1;31m" in open_text
    assert "overdue by 1h 0m" in open_text
    # Once someone works the ticket, the response SLA is met: no longer overdue.
    worked = rendered(ticket_view(ticket_with_timeline(console_pb2.TICKET_STATUS_IN_PROGRESS), NOW))
    assert "overdue" not in worked


def test_resolve_due_overdue_in_the_list() -> None:
    late = console_pb2.Ticket(id=3, title="printer", resolve_due_at=at(NOW - 2 * 86400 - 3600))
    done = console_pb2.Ticket(
        id=4,
        title="vpn",
        status=console_pb2.TICKET_STATUS_RESOLVED,
        resolve_due_at=at(NOW - 86400),
    )
    text = rendered(tickets_table([late, done], NOW))
    assert text.count("overdue") == 1
    assert "overdue by 2d 1h" in text


def test_agents_table_states() -> None:
    agents = [
        console_pb2.Agent(id="a" * 26, hostname="PC-1", online=True, cpu_percent=12.0),
        console_pb2.Agent(id="b" * 26, hostname="PC-2", last_seen_at=at(NOW - 300)),
        console_pb2.Agent(id="c" * 26, hostname="PC-3", revoked=True),
    ]
    text = rendered(agents_table(agents, NOW))
    assert "online" in text
    assert "offline (5m ago)" in text
    assert "revoked" in text
    assert "12%" in text


def test_users_table() -> None:
    users = [console_pb2.User(name="alice", role=console_pb2.ROLE_L2, created_at=at(time.time()))]
    text = rendered(users_table(users))
    assert "alice" in text
    assert "l2" in text


def test_tokens_and_commands_are_never_wrapped() -> None:
    buffer = io.StringIO()
    out = Output(json_mode=False, stdout=buffer, force_terminal=False, width=40)
    command = Text("sonde-agent enroll sonde-enroll-1." + "x" * 120)
    out.show_lines(command)
    out.done("ticket #1 opened: " + "y" * 80)
    assert buffer.getvalue().splitlines() == [command.plain, "ticket #1 opened: " + "y" * 80]
