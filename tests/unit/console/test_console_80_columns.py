"""Every list and view at 80 columns with the inputs a helpdesk has: 64-character host names,
long titles, multi-line comments. No line is wider; states are whole; comments keep their
newlines; ids are the shortest start that tells the rows apart."""

from __future__ import annotations

import io
import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import RenderableType

from sonde.server.console.audit import audit_table
from sonde.server.console.output import Output
from sonde.server.console.render import (
    agent_detail,
    agents_table,
    findings_table,
    format_bytes,
    format_time,
    users_table,
)
from sonde.server.console.render_command import commands_table, state_label
from sonde.server.console.render_ticket import status_label, ticket_view, tickets_table
from sonde.server.console.snapshot_diff import fact_changes, finding_changes
from sonde.server.console.snapshots import (
    fact_changes_table,
    finding_changes_table,
    snapshot_machine,
)
from sonde.v1 import console_pb2, diagnostics_pb2

NOW = 1_768_478_400.0
HOST = "workstation-accounting-floor3-" + "x" * 34  # 64 characters, the longest a name is
TITLE = "The printer on the third floor prints blank pages whenever accounting prints reports"
IDS = ["kry2" + "a" * 22, "kry2aaaa" + "b" * 18, "zz" + "c" * 24]  # two share 8 characters
COMMENT = (
    "Called Marie back: the spooler restarts every few minutes and the queue empties.\n"
    "\n"
    "Next:\n"
    "- replace the toner\n"
    "- reinstall the driver from the vendor's site"
)


def at(seconds: float) -> Timestamp:
    return Timestamp(seconds=int(seconds))


def lines(*renderables: RenderableType, width: int = 80) -> list[str]:
    buffer = io.StringIO()
    Output(json_mode=False, stdout=buffer, force_terminal=False, width=width).show(*renderables)
    return buffer.getvalue().splitlines()


def fits(shown: list[str], width: int = 80) -> None:
    too_wide = [line for line in shown if len(line.rstrip()) > width]
    assert not too_wide, "\n".join(shown)


def agents() -> list[console_pb2.Agent]:
    return [
        console_pb2.Agent(
            id=agent_id,
            hostname=HOST,
            online=number == 0,
            revoked=number == 2,
            last_seen_at=at(NOW - 3 * 86400),
            os_name="Microsoft Windows 11 Enterprise",
            os_version="10.0.22631",
            agent_version="0.1.0",
        )
        for number, agent_id in enumerate(IDS)
    ]


@pytest.mark.parametrize("width", [80, 100, 60])
def test_agents_list_fits_with_host_before_a_unique_id_and_whole_states(width: int) -> None:
    shown = lines(agents_table(agents(), NOW), width=width)
    fits(shown, width)
    rows = shown[2:]
    assert len(rows) == 3  # one line each
    for row, agent_id in zip(rows, IDS, strict=True):
        host, short_id = row.split()[:2]
        assert HOST.startswith(host.rstrip("…"))
        assert short_id == agent_id[:9]  # two ids share 8 characters: 9 tell them apart
    assert "online" in rows[0]
    assert "offline (3d 0h ago)" in rows[1]
    assert "revoked" in rows[2]


def test_agent_show_has_the_whole_id_and_name() -> None:
    shown = lines(agent_detail(console_pb2.GetAgentResponse(agent=agents()[0]), NOW))
    fits(shown)
    assert any(HOST in line for line in shown)
    assert any(IDS[0] in line for line in shown)


def tickets() -> list[console_pb2.Ticket]:
    statuses = [
        console_pb2.TICKET_STATUS_NEW,
        console_pb2.TICKET_STATUS_IN_PROGRESS,
        console_pb2.TICKET_STATUS_WAITING,
        console_pb2.TICKET_STATUS_RESOLVED,
    ]
    return [
        console_pb2.Ticket(
            id=100 + number,
            title=TITLE,
            status=status,
            priority=console_pb2.TICKET_PRIORITY_P2,
            level=console_pb2.TICKET_LEVEL_L1,
            assignee="alice.longname",
            agent_id=IDS[number % 3],
            agent_hostname=HOST,
            resolve_due_at=at(NOW - 30 * 3600),
            description=COMMENT,
        )
        for number, status in enumerate(statuses)
    ]


def test_ticket_list_fits_cuts_titles_and_keeps_states_and_machine_ids() -> None:
    listed = tickets()
    shown = lines(tickets_table(listed, NOW))
    fits(shown)
    text = "\n".join(shown)
    for ticket in listed:
        row = next(line for line in shown if line.lstrip().startswith(str(ticket.id)))
        assert status_label(ticket.status) in row
        assert "…" in row  # the title, cut
        assert TITLE[:10] in row
    for agent_id in IDS:
        assert agent_id[:9] in text
    assert text.count("overdue by 1d 6h") == 3  # the resolved one met its SLA


def test_ticket_show_keeps_the_comments_newlines_and_wraps_it() -> None:
    ticket = tickets()[1]
    comment = console_pb2.TicketEvent(
        kind=console_pb2.TICKET_EVENT_KIND_COMMENT, actor="alice", at=at(NOW), body=COMMENT
    )
    long_line = console_pb2.TicketEvent(
        kind=console_pb2.TICKET_EVENT_KIND_COMMENT, actor="bob", at=at(NOW), body="word " * 40
    )
    shown = lines(
        ticket_view(
            console_pb2.GetTicketResponse(ticket=ticket, timeline=[comment, long_line]), NOW
        )
    )
    fits(shown)
    stripped = [line.strip() for line in shown]
    # The description (in the header) and the comment (on the timeline): each line of it.
    for written in (
        "Next:",
        "- replace the toner",
        "- reinstall the driver from the vendor's site",
    ):
        assert stripped.count(written) == 2, "\n".join(shown)
    assert "\\n" not in "\n".join(shown)
    # A 200-character line is wrapped, not cut: every word is there.
    assert " ".join(stripped).count("word") == 40
    assert any(HOST in line for line in shown)  # the header names the machine whole


def test_commands_list_fits_with_machine_first_and_a_unique_command_id() -> None:
    states = [
        console_pb2.COMMAND_STATE_INTERRUPTED,
        console_pb2.COMMAND_STATE_SUCCEEDED,
        console_pb2.COMMAND_STATE_TIMED_OUT,
    ]
    commands = [
        console_pb2.Command(
            id=uuid.uuid4().hex,
            agent_id=IDS[number],
            agent_hostname=HOST,
            kind=console_pb2.COMMAND_KIND_COLLECT,
            state=state,
            requested_by="alice.longname",
            created_at=at(NOW),
            finished_at=at(NOW),
            ticket_id=17,
        )
        for number, state in enumerate(states)
    ]
    shown = lines(commands_table(commands))
    fits(shown)
    for command in commands:
        row = next(line for line in shown if command.id[:8] in line)
        assert row.startswith(HOST[:10])
        assert state_label(command.state) in row
        assert f" {command.id[:8]}" in row  # the start of its id, after the machine


def test_users_and_findings_fit() -> None:
    users = [
        console_pb2.User(
            name="alice.longname@accounting.example.org",
            role=console_pb2.ROLE_L2,
            created_at=at(NOW),
            disabled_at=at(NOW),
            token_expires_at=at(NOW),
        )
    ]
    finding = diagnostics_pb2.Finding(
        check="disk.space",
        severity=diagnostics_pb2.SEVERITY_CRITICAL,
        summary="Drive C: is 97 % full: 3.1 GiB free of 237 GiB. Clear temporary files.",
        evidence=[diagnostics_pb2.Evidence(key="free_bytes", value="3328599654")],
        fix_script_id="clear-temp-files",
    )
    shown = lines(users_table(users), findings_table([finding]))
    fits(shown)
    text = "\n".join(shown)
    assert "disabled" in text
    assert "critical" in text
    assert "Clear temporary files." in " ".join(line.strip() for line in shown)


# -- sonde audit, snapshot diff, narrow terminals, removed machines -------------------------

REFUSAL = (
    "refused: PermissionDenied: only an admin may remove a machine; ask an admin, or have "
    "your role changed with sonde users role"
)


def audit_entries() -> list[console_pb2.AuditEntry]:
    return [
        console_pb2.AuditEntry(
            id=1234,
            at=at(NOW),
            actor="alice.longname@accounting.example.org",
            action="enrollment_token.revoke",
            agent_id=IDS[0],
            agent_hostname=HOST,
            ticket_id=17,
            result=REFUSAL,
            detail='{"hostname":"pc-042"}',
        ),
        console_pb2.AuditEntry(
            id=1233,
            at=at(NOW),
            actor="bob",
            action="ticket.comment",
            agent_id=IDS[1],
            ticket_id=17,
            result="ok",
            detail="{}",
        ),
    ]


@pytest.mark.parametrize("width", [80, 40])
def test_audit_fits_with_ok_or_refused_and_the_refusal_wrapped_under_it(width: int) -> None:
    shown = lines(audit_table(audit_entries()), width=width)
    fits(shown, width)
    text = "\n".join(shown)
    words = " ".join(line.strip() for line in shown)
    assert "refused" in text.split()  # the result reduced to a word, whole
    assert "refused: PermissionDenied" not in text  # the reason is said once, under it
    # The refusal's words, all of them (wrapped, not cut), and what the entry recorded.
    assert "only an admin may remove a machine; ask an admin, or have your role" in words
    assert "changed with sonde users role" in words
    assert '{"hostname":"pc-042"}' in words.replace(" ", "")
    assert "enrollment_token.revoke" in text
    assert IDS[0][:9] in text  # two ids share 8 characters: 9 tell them apart
    assert IDS[1][:9] in text
    assert format_time(at(NOW)) in text  # when, with its zone
    if width == 80:
        row = next(line for line in shown if "enrollment_token.revoke" in line)
        assert row.startswith(format_time(at(NOW)))
        assert row.split()[-1] == "refused"
        assert HOST[:5] in row  # the host name first, the start of its id under it
        detail = shown[shown.index(row) + 2]
        assert detail.startswith("    PermissionDenied")
        assert next(line for line in shown if "ticket.comment" in line).split()[-1] == "ok"


def _diff_snapshot(free: int, boot: int, used: float) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot(agent_id=IDS[0])
    snapshot.system.boot_time.FromSeconds(boot)
    snapshot.memory.used_percent = used
    snapshot.disks.partitions.add(mountpoint="/home", free_bytes=free)
    return snapshot


@pytest.mark.parametrize("width", [80, 40])
def test_snapshot_diff_says_sizes_in_binary_units_and_times_with_their_zone(width: int) -> None:
    older = _diff_snapshot(free=int(80.5 * 1024**3), boot=int(NOW) - 86400, used=40.0)
    newer = _diff_snapshot(free=3 * 1024**3, boot=int(NOW), used=92.5)
    findings = finding_changes(
        [diagnostics_pb2.Finding(check="disk.space", severity=diagnostics_pb2.SEVERITY_OK)],
        [diagnostics_pb2.Finding(check="disk.space", severity=diagnostics_pb2.SEVERITY_CRITICAL)],
    )
    shown = lines(
        finding_changes_table(findings),
        fact_changes_table(fact_changes(older, newer).changes),
        width=width,
    )
    fits(shown, width)
    text = "\n".join(shown)
    words = " ".join(line.strip() for line in shown)
    for size in (int(80.5 * 1024**3), 3 * 1024**3):
        assert format_bytes(size) in words
        assert format_bytes(size).endswith(" GiB")
    assert str(3 * 1024**3) not in text  # no raw bytes
    for moment in (at(NOW), at(NOW - 86400)):  # local, with its zone (wrapped at 40)
        shown_at = format_time(moment)
        assert shown_at in text if width == 80 else shown_at.split()[0] in text
    assert "Z" not in words.replace("Zone", "")  # no RFC 3339 times ('...T12:00:00Z')
    for state in ("worse", "ok", "critical"):
        assert state in text.split()


def test_at_40_columns_a_list_becomes_records_with_states_and_ids_whole() -> None:
    listed = agents()
    shown = lines(agents_table(listed, NOW), width=40)
    fits(shown, 40)
    values = [line.split(None, 1) for line in shown if line.strip()]
    states = [value[1].strip() for value in values if value[0] == "state"]
    assert states == ["online", "offline (3d 0h ago)", "revoked"]
    ids = [value[1].strip() for value in values if value[0] == "id"]
    assert ids == [agent_id[:9] for agent_id in IDS]
    # The host name wraps over lines in its record: all of it is there.
    assert HOST in "".join(line[len("version  ") :].strip() for line in shown)
    # The ticket list too: each status whole on its own line.
    ticket_lines = lines(tickets_table(tickets(), NOW), width=40)
    fits(ticket_lines, 40)
    for ticket in tickets():
        assert f"status       {status_label(ticket.status)}" in map(str.rstrip, ticket_lines)


def test_a_removed_machine_is_labelled_removed() -> None:
    retired = agents()[2]
    retired.removed_at.CopyFrom(at(NOW))
    retired.removed_by = "admin"
    for width in (80, 40):
        shown = lines(agents_table([agents()[0], retired], NOW), width=width)
        fits(shown, width)
        assert "removed" in "\n".join(shown).split()
        assert "revoked" not in "\n".join(shown)
    # Tickets: the list's machine column and ticket show's header.
    ticket = tickets()[1]
    ticket.agent_removed = True
    for width in (80, 40):
        listed = lines(tickets_table([ticket, tickets()[0]], NOW), width=width)
        fits(listed, width)
        assert "\n".join(listed).count("(removed)") == 1
    summary = console_pb2.SnapshotSummary(
        id=5,
        agent_id=ticket.agent_id,
        agent_hostname=HOST,
        agent_removed=True,
        collected_at=at(NOW),
        worst_severity=diagnostics_pb2.SEVERITY_WARNING,
        finding_count=1,
    )
    diagnostic = console_pb2.TicketEvent(
        kind=console_pb2.TICKET_EVENT_KIND_DIAGNOSTIC, actor="alice", at=at(NOW), snapshot=summary
    )
    shown = lines(
        ticket_view(console_pb2.GetTicketResponse(ticket=ticket, timeline=[diagnostic]), NOW)
    )
    fits(shown)
    words = " ".join(line.strip() for line in shown)
    assert f"{HOST} ({ticket.agent_id}) (removed)" in words  # the header
    assert f"#5 of {HOST} ({ticket.agent_id}) (removed)" in words  # the timeline's diagnostic
    # snapshot show names its machine, removed.
    stored = console_pb2.StoredSnapshot(summary=summary)
    assert snapshot_machine(stored) == f"{HOST} ({ticket.agent_id}) (removed)"
    summary.agent_removed = False
    assert "(removed)" not in snapshot_machine(console_pb2.StoredSnapshot(summary=summary))
