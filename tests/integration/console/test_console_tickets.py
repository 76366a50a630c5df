from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import select

from sonde.server.domain.agents import AgentRecord
from sonde.server.domain.commands import CommandKind
from sonde.server.domain.roles import Principal
from sonde.server.storage.tables import audit_log
from sonde.v1 import agent_pb2, diagnostics_pb2
from sonde.v1 import console_pb2 as pb
from tests.integration.console.harness import Console

UNKNOWN = pb.TicketPriority.ValueType(42)  # a number no TicketPriority has
ANN, BOB, ADMIN = Console.as_user("ann"), Console.as_user("bob"), Console.as_user("admin")

FIXED, DUPLICATE = pb.TICKET_OUTCOME_FIXED, pb.TICKET_OUTCOME_DUPLICATE


async def _agent(console: Console, hostname: str = "PC-042") -> AgentRecord:
    return await console.enroll_agent(hostname)


async def _diagnostic_on(console: Console, agent_id: str, ticket_id: int) -> int:
    """A snapshot as the agent's session stores it (the session itself is tested end to end)."""
    user = await console.services.users.get("ann")
    ann = Principal(user_id=user.id, name=user.name, role=user.role)
    queued = await console.services.commands.queue(
        ann, agent_id, CommandKind.COLLECT, ticket_id=ticket_id
    )
    await console.services.commands.claim_due(agent_id, "session-1", resend_delivered=True)
    snapshot = diagnostics_pb2.Snapshot(agent_id=agent_id)
    snapshot.system.hostname = "PC-042"
    found = [
        diagnostics_pb2.Finding(
            check="disk.space",
            severity=diagnostics_pb2.SEVERITY_CRITICAL,
            summary="Disk / is 97% full.",
        )
    ]
    result = agent_pb2.Result(command_id=queued.command.id, snapshot=snapshot)
    accepted = await console.services.diagnostics.accept_result(
        agent_id, result, found, datetime.now(UTC)
    )
    assert accepted.stored is not None
    return accepted.stored.summary.id


async def test_full_ticket_lifecycle_with_timeline(console: Console) -> None:
    stub = console.stub
    agent = await _agent(console)
    opened = await stub.OpenTicket(
        pb.OpenTicketRequest(
            title="Outlook freezes",
            description="since 9am",
            channel=pb.TICKET_CHANNEL_PHONE,
            requester="Jane Doe",
            priority=pb.TICKET_PRIORITY_P2,
            agent="pc-04",
        ),
        metadata=ANN,
    )
    ticket = opened.ticket
    assert (ticket.status, ticket.level, ticket.agent_id) == (
        pb.TICKET_STATUS_NEW,
        pb.TICKET_LEVEL_L1,
        agent.id,
    )
    assert ticket.agent_hostname == "PC-042"
    assert ticket.created_by == "ann"
    due = ticket.resolve_due_at.ToDatetime() - ticket.created_at.ToDatetime()
    assert due == timedelta(hours=8)

    await stub.AssignTicket(pb.AssignTicketRequest(id=ticket.id), metadata=ANN)
    commented = await stub.CommentTicket(
        pb.CommentTicketRequest(id=ticket.id, body="Restarted Outlook"), metadata=ANN
    )
    assert commented.event.kind == pb.TICKET_EVENT_KIND_COMMENT
    assert commented.event.actor == "ann"
    snapshot_id = await _diagnostic_on(console, agent.id, ticket.id)
    escalated = await stub.EscalateTicket(
        pb.EscalateTicketRequest(id=ticket.id, reason="mailbox corrupt", assignee="bob"),
        metadata=ANN,
    )
    assert (escalated.ticket.level, escalated.ticket.assignee) == (pb.TICKET_LEVEL_L2, "bob")
    resolved = await stub.ResolveTicket(
        pb.ResolveTicketRequest(
            id=ticket.id, resolution="Rebuilt the OST", outcome=FIXED, time_spent_s=900
        ),
        metadata=BOB,
    )
    assert resolved.ticket.status == pb.TICKET_STATUS_RESOLVED
    assert resolved.ticket.resolution == "Rebuilt the OST"
    await stub.ReopenTicket(pb.ReopenTicketRequest(id=ticket.id, reason="again"), metadata=ANN)
    await stub.ResolveTicket(
        pb.ResolveTicketRequest(id=ticket.id, resolution="ok", outcome=FIXED, time_spent_s=900),
        metadata=BOB,
    )
    with pytest.raises(grpc.aio.AioRpcError) as incomplete:
        await stub.CloseTicket(pb.CloseTicketRequest(id=ticket.id), metadata=BOB)
    assert incomplete.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "its record lacks: a category (sonde ticket set" in str(incomplete.value.details())
    await stub.AddCategory(pb.AddCategoryRequest(path="office", title="Office"), metadata=ADMIN)
    await stub.SetTicketDetails(
        pb.SetTicketDetailsRequest(id=ticket.id, category="office"), metadata=BOB
    )
    closed = await stub.CloseTicket(pb.CloseTicketRequest(id=ticket.id), metadata=BOB)
    assert closed.ticket.status == pb.TICKET_STATUS_CLOSED
    assert closed.ticket.HasField("closed_at")

    shown = await stub.GetTicket(pb.GetTicketRequest(id=ticket.id), metadata=ANN)
    kinds = [pb.TicketEventKind.Name(event.kind) for event in shown.timeline]
    assert kinds == [
        "TICKET_EVENT_KIND_OPENED",
        "TICKET_EVENT_KIND_ASSIGNED",
        "TICKET_EVENT_KIND_COMMENT",
        "TICKET_EVENT_KIND_DIAGNOSTIC",
        "TICKET_EVENT_KIND_ESCALATED",
        "TICKET_EVENT_KIND_RESOLVED",
        "TICKET_EVENT_KIND_REOPENED",
        "TICKET_EVENT_KIND_RESOLVED",
        "TICKET_EVENT_KIND_CATEGORIZED",
        "TICKET_EVENT_KIND_CLOSED",
    ]
    diagnostic = shown.timeline[3]
    assert diagnostic.snapshot_id == snapshot_id
    assert diagnostic.snapshot.ticket_id == ticket.id
    assert diagnostic.snapshot.worst_severity == diagnostics_pb2.SEVERITY_CRITICAL
    assert [f.summary for f in diagnostic.findings] == ["Disk / is 97% full."]
    assert shown.timeline[4].body == "mailbox corrupt"
    assert (shown.timeline[6].from_status, shown.timeline[6].to_status) == (
        pb.TICKET_STATUS_RESOLVED,
        pb.TICKET_STATUS_IN_PROGRESS,
    )
    stored = await stub.GetSnapshot(pb.GetSnapshotRequest(id=snapshot_id), metadata=ANN)
    assert stored.snapshot.snapshot.system.hostname == "PC-042"
    assert stored.snapshot.summary.agent_id == agent.id

    listed = await stub.ListTickets(pb.ListTicketsRequest(include_closed=True), metadata=ANN)
    assert [t.id for t in listed.tickets] == [ticket.id]
    assert not (await stub.ListTickets(pb.ListTicketsRequest(), metadata=ANN)).tickets

    verification = await console.services.audit.verify()
    assert verification.ok
    # Setup: 3 users, the agent's token and enrollment; then 8 ticket changes, the diagnostic
    # asked for and its result; the close refused, the category added and set.
    assert verification.rows == 18


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


async def test_errors_carry_the_right_status(console: Console) -> None:
    stub = console.stub
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTicket(pb.GetTicketRequest(id=999), metadata=ANN)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no ticket 999"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CommentTicket(pb.CommentTicketRequest(id=0, body="x"), metadata=ANN)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ticket id must be a positive number" in str(caught.value.details())

    assert await _code(stub.OpenTicket(pb.OpenTicketRequest(title=""), metadata=ANN)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        await _code(
            stub.OpenTicket(pb.OpenTicketRequest(title="x", priority=UNKNOWN), metadata=ANN)
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        await _code(stub.OpenTicket(pb.OpenTicketRequest(title="x", agent="nobody"), metadata=ANN))
        == grpc.StatusCode.NOT_FOUND
    )

    ticket = (await stub.OpenTicket(pb.OpenTicketRequest(title="VPN"), metadata=ANN)).ticket
    assert (
        await _code(
            stub.ReopenTicket(pb.ReopenTicketRequest(id=ticket.id, reason="x"), metadata=ANN)
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    await stub.EscalateTicket(pb.EscalateTicketRequest(id=ticket.id, reason="hard"), metadata=ANN)
    assert (
        await _code(
            stub.EscalateTicket(pb.EscalateTicketRequest(id=ticket.id, reason="x"), metadata=ANN)
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ResolveTicket(
            pb.ResolveTicketRequest(id=ticket.id, resolution="x", outcome=FIXED, time_spent_s=900),
            metadata=ANN,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "an L1 technician may comment on it but not resolve it" in str(caught.value.details())
    await stub.CommentTicket(pb.CommentTicketRequest(id=ticket.id, body="still down"), metadata=ANN)
    await stub.CloseTicket(
        pb.CloseTicketRequest(id=ticket.id, note="duplicate", outcome=DUPLICATE), metadata=BOB
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CommentTicket(pb.CommentTicketRequest(id=ticket.id, body="x"), metadata=ANN)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == f"ticket {ticket.id} is closed: reopen it first"
    assert (
        await _code(
            stub.AssignTicket(pb.AssignTicketRequest(id=ticket.id, assignee="zed"), metadata=BOB)
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )

    # Refusals of changes are audited too, with what was refused.
    rows = await console.services.db.read(
        lambda connection: connection.execute(select(audit_log.c.action, audit_log.c.result)).all()
    )
    refused = [result for action, result in rows if action == "ticket.resolve"]
    assert refused == [
        f"refused: PermissionDenied: ticket {ticket.id} is escalated to L2: "
        "an L1 technician may comment on it but not resolve it"
    ]
    assert (await console.services.audit.verify()).ok
