from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import select

from sonde.server.domain.agents import HelloInfo
from sonde.server.domain.sessions import SessionOpened, SessionRows
from sonde.server.storage.tables import audit_log
from sonde.v1 import console_pb2 as pb
from tests.integration.console.harness import Console
from tests.unit.domain.builders import new_agent_id, signed_as

ANN, ADMIN = Console.as_user("ann"), Console.as_user("admin")


async def _audit_rows(
    console: Console, action: str | None = None
) -> list[tuple[str, str | None, int | None, str, str]]:
    """The audit log in order; only `action`'s rows when given (setup writes audit too)."""
    query = select(
        audit_log.c.action,
        audit_log.c.agent_id,
        audit_log.c.ticket_id,
        audit_log.c.detail,
        audit_log.c.result,
    ).order_by(audit_log.c.id)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    rows = await console.services.db.read(lambda connection: connection.execute(query).all())
    return [tuple(row) for row in rows]


async def test_agents_list_show_and_revoke(console: Console) -> None:
    now = datetime.now(UTC)
    pc = await console.enroll_agent("pc-042")
    await console.enroll_agent("pc-043")
    sessions = SessionRows(console.services.db, "replica-1")
    hello = HelloInfo("pc-042", "linux", "Ubuntu", "6.8", "0.1.0")
    sessions.add(SessionOpened(pc.id, "session-1", hello, "127.0.0.1:1", now))
    await sessions.flush()

    listed = await console.stub.ListAgents(pb.ListAgentsRequest(), metadata=ANN)
    assert [a.hostname for a in listed.agents] == ["pc-042", "pc-043"]
    online = await console.stub.ListAgents(pb.ListAgentsRequest(online_only=True), metadata=ANN)
    assert [(a.id, a.online, a.os_name) for a in online.agents] == [(pc.id, True, "Ubuntu")]

    ticket = (
        await console.stub.OpenTicket(pb.OpenTicketRequest(title="slow", agent=pc.id), metadata=ANN)
    ).ticket
    shown = await console.stub.GetAgent(pb.GetAgentRequest(agent="PC-042"), metadata=ANN)
    assert shown.agent.id == pc.id
    assert [t.id for t in shown.open_tickets] == [ticket.id]
    assert not shown.HasField("last_snapshot")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await console.stub.GetAgent(pb.GetAgentRequest(agent="pc-04"), metadata=ANN)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'pc-04' is ambiguous: pc-042" in str(caught.value.details())

    revoked = await console.stub.RevokeAgent(
        pb.RevokeAgentRequest(agent="pc-042", reason="stolen"), metadata=ADMIN
    )
    assert revoked.agent.revoked
    assert not revoked.agent.online
    assert console.revoked == [pc.id]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await console.stub.RevokeAgent(pb.RevokeAgentRequest(agent=pc.id), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    rows = await _audit_rows(console, "agent.revoke")
    assert [(action, agent_id, result[:7]) for action, agent_id, _, _, result in rows] == [
        ("agent.revoke", pc.id, "ok"),
        ("agent.revoke", pc.id, "refused"),
    ]


async def test_run_diagnostics_refusals_are_clear_and_audited(console: Console) -> None:
    pc = await console.enroll_agent("pc-9")
    cases = [
        (pb.RunDiagnosticsRequest(agent="nobody"), grpc.StatusCode.NOT_FOUND, "no agent matches"),
        (
            pb.RunDiagnosticsRequest(agent="pc-9", ticket_id=999),
            grpc.StatusCode.NOT_FOUND,
            "no ticket 999",
        ),
        (
            pb.RunDiagnosticsRequest(agent="pc-9", ticket_id=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "positive",
        ),
        (
            pb.RunDiagnosticsRequest(agent="pc-9", timeout_s=3600),
            grpc.StatusCode.INVALID_ARGUMENT,
            "at most 600",
        ),
        (
            pb.RunDiagnosticsRequest(agent="pc-9", no_queue=True),
            grpc.StatusCode.UNAVAILABLE,
            "has not connected since it enrolled",
        ),
    ]
    for request, code, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await console.stub.RunDiagnostics(request, metadata=ANN)
        assert caught.value.code() == code
        assert message in str(caught.value.details())
    rows = await _audit_rows(console, "diagnostics.run")
    assert [(a, agent, ticket) for a, agent, ticket, _, _ in rows] == [
        ("diagnostics.run", None, None),
        ("diagnostics.run", pc.id, 999),
        ("diagnostics.run", pc.id, None),
    ]
    assert rows[-1][4].startswith("refused: Unavailable")
    # Without --no-queue an offline agent's diagnostic waits for it: queued, not refused.
    queued = await console.stub.RunDiagnostics(pb.RunDiagnosticsRequest(agent="pc-9"), metadata=ANN)
    assert (queued.command.state, queued.agent_online) == (pb.COMMAND_STATE_QUEUED, False)
    assert not queued.HasField("snapshot")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await console.stub.GetSnapshot(pb.GetSnapshotRequest(id=12), metadata=ANN)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_users_and_whoami(console: Console) -> None:
    created = await console.stub.CreateUser(
        pb.CreateUserRequest(name="carol", role=pb.ROLE_L2), metadata=ADMIN
    )
    assert (created.user.name, created.user.role) == ("carol", pb.ROLE_L2)
    principal = await console.services.users.authenticate(created.api_token)
    assert principal.name == "carol"
    me = await console.stub.WhoAmI(pb.WhoAmIRequest(), metadata=Console.as_user("carol"))
    assert me.user.name == "carol"
    assert me.server_version
    listed = await console.stub.ListUsers(pb.ListUsersRequest(), metadata=ADMIN)
    assert [u.name for u in listed.users] == ["admin", "ann", "bob", "carol"]
    for request, code in (
        (pb.CreateUserRequest(name="carol", role=pb.ROLE_L1), grpc.StatusCode.FAILED_PRECONDITION),
        (pb.CreateUserRequest(name="dave"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.CreateUserRequest(name="Dave!", role=pb.ROLE_L1), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await console.stub.CreateUser(request, metadata=ADMIN)
        assert caught.value.code() == code
    rows = await _audit_rows(console)
    assert created.api_token.split("_", 2)[2] not in "".join(str(row) for row in rows)


async def test_enrollment_tokens(console: Console) -> None:
    before = datetime.now(UTC)
    issued = await console.stub.CreateEnrollmentToken(
        pb.CreateEnrollmentTokenRequest(), metadata=ADMIN
    )
    assert issued.uses == 1
    assert len(issued.token_id) == 16
    lifetime = issued.expires_at.ToDatetime(tzinfo=UTC) - before
    assert timedelta(minutes=59) < lifetime <= timedelta(hours=1, seconds=5)
    token_id, secret = issued.enrollment.split(":")
    enrolled, _ = await console.services.agents.enroll(
        token_id,
        bytes.fromhex(secret),
        hostname="pc-1",
        platform="linux",
        request=signed_as(new_agent_id()),
        at=datetime.now(UTC),
    )
    assert enrolled.hostname == "pc-1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await console.stub.CreateEnrollmentToken(
            pb.CreateEnrollmentTokenRequest(uses=5000), metadata=ADMIN
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    rows = await _audit_rows(console, "enrollment_token.create")
    assert [row[4][:7] for row in rows] == ["ok", "refused"]
    assert f'"token_id":"{token_id}"' in rows[0][3]
    assert secret not in "".join(str(row) for row in rows)
