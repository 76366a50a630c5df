"""Script runs on SQLite and PostgreSQL: each tier's refusal, approvals, states, dispatch's
signed order, results, live output, and secrets masked wherever people look."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from sonde.catalog.envelope import VerifiedOrder, verify_order
from sonde.catalog.manifest import Platform
from sonde.catalog.policy import AgentPolicy
from sonde.server.domain.agents import AgentRecord, HelloInfo
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.catalog import Catalog
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.commands import CommandKind, CommandState
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.run_records import MAX_LIVE_OUTPUT
from sonde.server.domain.script_runs import APPROVAL_WINDOW, ScriptRuns
from sonde.server.domain.sessions import AgentConnection, LocalSessions, SessionOpened, SessionRows
from sonde.server.domain.ticket_model import TicketOutcome
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.wakeups import Wakeups
from sonde.server.errors import Conflict, InvalidArgument, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, script_runs
from sonde.v1 import agent_pb2, remediation_pb2
from tests.support.catalog_bundles import signed_bundle, source
from tests.unit.domain.builders import SETUP_ADMIN, Clock, enrolled_agent, technician

SECRET = "hunter2-very-secret"
PARAMETERS = """
[[parameters]]
name = "service_name"
type = "string"
pattern = "[A-Za-z0-9_.-]{1,64}"
required = true
description = "The service."

[[parameters]]
name = "token"
type = "string"
pattern = "[A-Za-z0-9-]{1,64}"
secret = true
description = "A secret."
"""


@dataclass
class Bench:
    db: Database
    clock: Clock
    runs: ScriptRuns
    commands: Commands
    tickets: Tickets
    agent: AgentRecord
    catalog_key: ed25519.Ed25519PrivateKey
    dispatch_key: ed25519.Ed25519PrivateKey
    wakeups: Wakeups
    l1: Principal
    l2: Principal
    other_l2: Principal
    admin: Principal


@pytest.fixture(name="b")
async def bench(db: Database) -> Bench:
    clock = Clock()
    wakeups = Wakeups()
    audited = AuditedWrites(db, clock)
    catalog_key = ed25519.Ed25519PrivateKey.generate()
    dispatch_key = ed25519.Ed25519PrivateKey.generate()
    catalog = Catalog(db, catalog_key.public_key(), clock, writes=audited)
    await catalog.publish(
        SETUP_ADMIN,
        signed_bundle(
            catalog_key,
            source("clear-temp", risk="low"),
            source("clear-temp", "1.1.0", risk="low"),
            source("restart-thing", risk="medium", parameters=PARAMETERS),
            source("repair-updates", risk="high"),
            source("windows-only", risk="low", platform="windows", interpreter="powershell"),
        ),
    )
    return Bench(
        db=db,
        clock=clock,
        runs=ScriptRuns(db, audited, wakeups, clock, dispatch_key=dispatch_key),
        commands=Commands(db, audited, wakeups, clock),
        tickets=Tickets(db, clock, writes=audited),
        agent=await enrolled_agent(db),
        catalog_key=catalog_key,
        dispatch_key=dispatch_key,
        wakeups=wakeups,
        l1=await technician(db, "ann", Role.L1),
        l2=await technician(db, "bob", Role.L2),
        other_l2=await technician(db, "cy", Role.L2),
        admin=await technician(db, "dee", Role.ADMIN),
    )


async def _ticket(b: Bench, assignee: str = "ann", agent: str | None = None) -> int:
    ticket = await b.tickets.open(
        b.l1, title="Disk full", agent=agent or b.agent.id, assignee=assignee
    )
    return ticket.id


async def _audit(db: Database, action: str) -> list[tuple[str, str, str]]:
    rows = await db.read(
        lambda c: c.execute(
            select(audit_log.c.actor, audit_log.c.result, audit_log.c.detail)
            .where(audit_log.c.action == action)
            .order_by(audit_log.c.id)
        ).all()
    )
    return [(row.actor, row.result, str(row.detail)) for row in rows]


# -- tiers ---------------------------------------------------------------------------------


async def test_low_risk_without_a_ticket_is_refused_for_l1_saying_what_to_do(b: Bench) -> None:
    with pytest.raises(PermissionDenied, match="give --ticket N"):
        await b.runs.request(b.l1, b.agent.id, "clear-temp")
    refused = await _audit(b.db, "script.run")
    assert len(refused) == 1
    assert refused[0][1].startswith("refused")


async def test_low_risk_needs_a_ticket_the_caller_works_about_that_machine(b: Bench) -> None:
    theirs = await _ticket(b, assignee="bob")
    with pytest.raises(PermissionDenied, match=f"ticket {theirs} is assigned to bob"):
        await b.runs.request(b.l1, b.agent.id, "clear-temp", ticket_id=theirs)
    other = await enrolled_agent(b.db, "pc-other")
    elsewhere = await _ticket(b, agent=other.id)
    with pytest.raises(InvalidArgument, match="is about pc-other"):
        await b.runs.request(b.l1, b.agent.id, "clear-temp", ticket_id=elsewhere)
    mine = await _ticket(b)
    run = await b.runs.request(b.l1, b.agent.id, "clear-temp", ticket_id=mine)
    assert run.command.state is CommandState.QUEUED
    assert run.command.kind is CommandKind.RUN_SCRIPT
    assert run.script_version == "1.1.0"  # the newest for the agent's platform
    assert run.command.ticket_id == mine
    await b.tickets.close(
        b.l1, mine, "duplicate of another ticket", outcome=TicketOutcome.DUPLICATE
    )
    with pytest.raises(Conflict, match="closed"):
        await b.runs.request(b.l1, b.agent.id, "clear-temp", ticket_id=mine)


async def test_l1_is_refused_a_medium_risk_script(b: Bench) -> None:
    mine = await _ticket(b)
    with pytest.raises(PermissionDenied, match=r"needs scripts\.run\.medium \(roles l2, admin\)"):
        await b.runs.request(
            b.l1, b.agent.id, "restart-thing", ticket_id=mine, parameters={"service_name": "x"}
        )
    run = await b.runs.request(b.l2, b.agent.id, "restart-thing", parameters={"service_name": "x"})
    assert run.command.state is CommandState.QUEUED
    assert run.approved_by == ""


async def test_parameters_are_checked_at_request_time_with_the_manifests_sentence(
    b: Bench,
) -> None:
    with pytest.raises(InvalidArgument, match="restart-thing needs the parameter service_name"):
        await b.runs.request(b.l2, b.agent.id, "restart-thing")
    with pytest.raises(InvalidArgument, match="has no parameter colour"):
        await b.runs.request(
            b.l2, b.agent.id, "restart-thing", parameters={"service_name": "x", "colour": "red"}
        )
    with pytest.raises(InvalidArgument, match="service_name"):
        await b.runs.request(
            b.l2, b.agent.id, "restart-thing", parameters={"service_name": "x; rm -rf /"}
        )
    assert await b.runs.list() == []


async def test_the_version_and_platform_are_chosen_or_refused(b: Bench) -> None:
    run = await b.runs.request(b.l2, b.agent.id, "clear-temp", version="1.0.0")
    assert run.script_version == "1.0.0"
    with pytest.raises(InvalidArgument, match="no published version of windows-only is for linux"):
        await b.runs.request(b.l2, b.agent.id, "windows-only")
    with pytest.raises(InvalidArgument, match="expires after 1 s to 30 days"):
        await b.runs.request(b.l2, b.agent.id, "clear-temp", expires_in=timedelta(days=31))


# -- approvals -----------------------------------------------------------------------------


async def test_a_high_risk_run_waits_for_another_persons_approval(b: Bench) -> None:
    with pytest.raises(PermissionDenied, match=r"scripts\.run\.high or scripts\.run\.medium"):
        await b.runs.request(b.l1, b.agent.id, "repair-updates", ticket_id=await _ticket(b))
    run = await b.runs.request(b.l2, b.agent.id, "repair-updates")
    assert run.command.state is CommandState.PENDING_APPROVAL
    # Never sent while it waits.
    assert await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True) == []
    with pytest.raises(PermissionDenied, match="you asked for run"):
        await b.runs.approve(b.l2, run.command.id)
    with pytest.raises(PermissionDenied, match=r"needs scripts\.approve \(roles l2, admin\)"):
        await b.runs.approve(b.l1, run.command.id)
    approved = await b.runs.approve(b.other_l2, run.command.id)
    assert approved.command.state is CommandState.QUEUED
    assert approved.approved_by == "cy"
    # An approved run must reach the agent within the approval window.
    assert approved.command.expires_at == b.clock.now + APPROVAL_WINDOW
    with pytest.raises(Conflict, match="not pending approval"):
        await b.runs.approve(b.admin, run.command.id)
    sent = await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True)
    assert [c.id for c in sent] == [run.command.id]
    assert [a for a, r, _ in await _audit(b.db, "script.approve") if r == "ok"] == ["cy"]


async def test_an_expired_approval_is_refused_and_the_run_never_dispatches(b: Bench) -> None:
    run = await b.runs.request(b.admin, b.agent.id, "repair-updates")
    b.clock.advance(hours=4, seconds=1)
    with pytest.raises(Conflict, match="longer than 4 h: it expired and never runs"):
        await b.runs.approve(b.l2, run.command.id)
    assert await b.runs.end_unapproved() == 1
    ended = await b.runs.get(run.command.id)
    assert ended.command.state is CommandState.EXPIRED
    assert "approved it within 4 h" in ended.command.reason
    assert await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True) == []


async def test_a_rejected_run_never_dispatches(b: Bench) -> None:
    run = await b.runs.request(b.l2, b.agent.id, "repair-updates")
    with pytest.raises(InvalidArgument, match="--reason"):
        await b.runs.reject(b.other_l2, run.command.id, "")
    rejected = await b.runs.reject(b.other_l2, run.command.id, "not during office hours")
    assert rejected.command.state is CommandState.REJECTED
    assert rejected.rejected_by == "cy"
    assert "not during office hours" in rejected.command.reason
    assert await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True) == []
    with pytest.raises(Conflict):
        await b.runs.approve(b.admin, run.command.id)


async def test_a_waiting_run_can_be_cancelled_and_nothing_is_sent(b: Bench) -> None:
    run = await b.runs.request(b.l2, b.agent.id, "repair-updates")
    cancelled = await b.commands.cancel(b.l2, run.command.id, "")
    assert cancelled.state is CommandState.CANCELLED
    assert await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True) == []


# -- secrets -------------------------------------------------------------------------------


async def test_secret_values_are_masked_in_listings_and_audit_and_erased_once_ended(
    b: Bench,
) -> None:
    run = await b.runs.request(
        b.l2, b.agent.id, "restart-thing", parameters={"service_name": "cups", "token": SECRET}
    )
    assert run.parameters == {"service_name": "cups", "token": "***"}
    listed = await b.runs.list(agent_id=b.agent.id)
    assert [r.parameters for r in listed] == [{"service_name": "cups", "token": "***"}]
    audit = await _audit(b.db, "script.run")
    assert "token=***" in audit[-1][2]
    assert SECRET not in audit[-1][2]
    # Kept, as given, only to sign the order...
    sent = await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True)
    orders = await b.runs.orders(sent)
    assert dict(_verified(b, orders[run.command.id]).order.parameters)["token"] == SECRET
    # ...and erased when the run ends.
    await b.runs.accept_result(b.agent.id, _script_result(run.command.id, 0), b.clock.now)
    stored = await b.db.read(
        lambda c: c.execute(select(script_runs.c.parameters, script_runs.c.parameters_shown)).all()
    )
    assert all(SECRET not in row.parameters + row.parameters_shown for row in stored)
    assert json.loads(stored[0].parameters) == {}


# -- dispatch and results ------------------------------------------------------------------


def _verified(b: Bench, signed: remediation_pb2.SignedRunScript) -> VerifiedOrder:
    return verify_order(
        signed,
        dispatch_key=b.dispatch_key.public_key(),
        catalog_key=b.catalog_key.public_key(),
        agent_id=b.agent.id,
        platform=Platform.LINUX,
        policy=AgentPolicy(),
        already_ran=lambda _: False,
        now=b.clock.now,
    )


def _script_result(command_id: str, exit_code: int, **fields: object) -> agent_pb2.Result:
    outcome = agent_pb2.ScriptRun(exit_code=exit_code, stdout=b"done\n", stdout_bytes=5)
    for name, value in fields.items():
        setattr(outcome, name, value)
    return agent_pb2.Result(command_id=command_id, script_run=outcome)


async def test_the_order_the_agent_gets_verifies_and_names_the_approver(b: Bench) -> None:
    ticket = await _ticket(b, assignee="dee")
    run = await b.runs.request(
        b.admin, b.agent.id, "repair-updates", ticket_id=ticket, dry_run=True
    )
    await b.runs.approve(b.l2, run.command.id)
    sent = await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True)
    orders = await b.runs.orders(sent)
    verified = _verified(b, orders[run.command.id])
    order = verified.order
    assert order.command_id == run.command.id
    assert order.agent_id == b.agent.id
    assert (order.entry.id, order.entry.version) == ("repair-updates", "1.0.0")
    assert (order.requested_by, order.approved_by, order.ticket_id) == ("dee", "bob", ticket)
    assert order.dry_run is True
    assert verified.values == {"dry_run": True}
    # The dispatch is audited in the claim's transaction.
    dispatched = await _audit(b.db, "script.dispatch")
    assert [(actor, result) for actor, result, _ in dispatched] == [("server", "ok")]
    assert run.command.id in dispatched[0][2]


@pytest.mark.parametrize(
    ("fields", "exit_code", "state"),
    [
        ({}, 0, CommandState.SUCCEEDED),
        ({}, 2, CommandState.FAILED),
        ({"timed_out": True}, -1, CommandState.TIMED_OUT),
        ({"cancelled": True}, -1, CommandState.CANCELLED),
    ],
)
async def test_a_script_result_ends_the_run_with_its_output(
    b: Bench, fields: dict[str, object], exit_code: int, state: CommandState
) -> None:
    run = await b.runs.request(b.l2, b.agent.id, "clear-temp")
    await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True)
    chunk = agent_pb2.ScriptOutput(command_id=run.command.id, data=b"x" * (MAX_LIVE_OUTPUT - 3))
    assert await b.runs.append_output(b.agent.id, chunk)
    assert await b.runs.append_output(b.agent.id, chunk)
    live = await b.runs.get(run.command.id)
    assert live.command.state is CommandState.RUNNING
    assert len(live.live_output) == MAX_LIVE_OUTPUT
    assert live.live_dropped == MAX_LIVE_OUTPUT - 6
    outcome = _script_result(
        run.command.id, exit_code, stdout_truncated=True, stdout_bytes=9_000_000, duration_ms=42
    )
    for name, value in fields.items():
        setattr(outcome.script_run, name, value)
    ended, changed = await b.runs.accept_result(b.agent.id, outcome, b.clock.now)
    assert changed
    assert ended.command.state is state
    assert (ended.exit_code, ended.stdout, ended.stdout_truncated) == (exit_code, b"done\n", True)
    assert (ended.stdout_bytes, ended.duration_ms) == (9_000_000, 42)
    again, changed = await b.runs.accept_result(b.agent.id, outcome, b.clock.now)
    assert not changed
    assert again.command.state is state
    assert not await b.runs.append_output(b.agent.id, chunk)


async def test_a_byte_count_past_64_bits_is_stored_at_the_largest_a_column_holds(
    b: Bench,
) -> None:
    run = await b.runs.request(b.l2, b.agent.id, "clear-temp")
    await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True)
    outcome = _script_result(run.command.id, 0, stdout_bytes=2**64 - 1, stderr_bytes=2**63)
    ended, changed = await b.runs.accept_result(b.agent.id, outcome, b.clock.now)
    assert changed
    assert (ended.stdout_bytes, ended.stderr_bytes) == (2**63 - 1, 2**63 - 1)


async def test_a_result_resent_after_a_lost_ack_is_audited_as_refused_not_stored_twice(
    b: Bench,
) -> None:
    """The server stored the result and crashed before its ack: the agent's outbox sends it
    again. The audit keeps one stored result and says the repeat was dropped."""
    run = await b.runs.request(b.l2, b.agent.id, "clear-temp")
    await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True)
    ended, changed = await b.runs.accept_result(
        b.agent.id, _script_result(run.command.id, 0), b.clock.now
    )
    assert changed
    b.clock.advance(seconds=5)
    again, changed = await b.runs.accept_result(
        b.agent.id, _script_result(run.command.id, 3), b.clock.now
    )
    assert not changed
    assert (again.command.state, again.exit_code) == (CommandState.SUCCEEDED, 0)
    assert again.command.finished_at == ended.command.finished_at
    results = await _audit(b.db, "command.result")
    assert [result for _, result, _ in results] == [
        "ok",
        f"refused: AlreadyEnded: command {run.command.id} had already ended succeeded; "
        "this result was acknowledged and dropped",
    ]
    assert all(run.command.id in detail for _, _, detail in results)
    assert '"state":"succeeded"' in results[0][2]


async def test_another_agents_result_is_refused(b: Bench) -> None:
    run = await b.runs.request(b.l2, b.agent.id, "clear-temp")
    other = await enrolled_agent(b.db, "pc-other")
    with pytest.raises(PermissionDenied, match="issued to another agent"):
        await b.runs.accept_result(other.id, _script_result(run.command.id, 0), b.clock.now)
    assert not await b.runs.append_output(
        other.id, agent_pb2.ScriptOutput(command_id=run.command.id, data=b"x")
    )
    assert (await b.runs.get(run.command.id)).command.state is CommandState.QUEUED


async def test_a_server_without_its_dispatch_key_refuses_runs_when_asked(b: Bench) -> None:
    keyless = ScriptRuns(b.db, AuditedWrites(b.db, b.clock), b.wakeups, b.clock)
    with pytest.raises(Conflict, match="no dispatch key"):
        await keyless.request(b.l2, b.agent.id, "clear-temp")
    pending = await b.runs.request(b.admin, b.agent.id, "repair-updates")
    with pytest.raises(Conflict, match="no dispatch key"):
        await keyless.approve(b.l2, pending.command.id)
    assert [run.command.id for run in await b.runs.list()] == [pending.command.id]
    assert (await b.runs.get(pending.command.id)).command.state is CommandState.PENDING_APPROVAL


async def test_a_snapshot_cannot_end_a_script_run(b: Bench) -> None:
    """A hostile or broken agent answering a run order with a diagnostic: refused, the run
    stays where it was, nothing is stored."""
    run = await b.runs.request(b.l2, b.agent.id, "clear-temp")
    await b.commands.claim_due(b.agent.id, "s1", resend_delivered=True)
    diagnostics = Diagnostics(b.db, AuditedWrites(b.db, b.clock), b.wakeups, b.clock)
    forged = agent_pb2.Result(command_id=run.command.id)
    forged.snapshot.system.hostname = "pc-1"
    with pytest.raises(InvalidArgument, match="is a script run, not a diagnostic"):
        await diagnostics.accept_result(b.agent.id, forged, [], b.clock.now)
    after = await b.runs.get(run.command.id)
    assert after.command.state is not CommandState.SUCCEEDED
    assert not after.command.state.final
    assert not after.command.snapshot_id


async def test_runs_are_listed_by_agent_ticket_and_state(b: Bench) -> None:
    ticket = await _ticket(b)
    first = await b.runs.request(b.l1, b.agent.id, "clear-temp", ticket_id=ticket)
    b.clock.advance(seconds=1)
    second = await b.runs.request(b.l2, b.agent.id, "repair-updates")
    assert [r.command.id for r in await b.runs.list()] == [second.command.id, first.command.id]
    assert [r.command.id for r in await b.runs.list(ticket_id=ticket)] == [first.command.id]
    waiting = await b.runs.list(states=[CommandState.PENDING_APPROVAL])
    assert [r.command.id for r in waiting] == [second.command.id]


# -- direct delivery: the replica that holds the agent's stream ------------------------------


async def _held_here(b: Bench) -> AgentConnection:
    connection = LocalSessions(heartbeat_interval_s=15).attach(b.agent.id, "pc-042", b.clock.now)
    rows = SessionRows(b.db, "replica-a")
    rows.add(
        SessionOpened(
            b.agent.id,
            connection.session_id,
            HelloInfo("pc-042", "linux", "Ubuntu 24.04", "6.8.0", "0.1.0"),
            "127.0.0.1:5555",
            b.clock.now,
        )
    )
    await rows.flush()
    b.wakeups.attach_stream(connection)
    return connection


def _sent(connection: AgentConnection) -> list[agent_pb2.ServerMessage]:
    sent = []
    while not connection.outbound.empty():
        message = connection.outbound.get_nowait()
        assert message is not None
        sent.append(message)
    return sent


async def test_a_run_for_a_stream_held_here_goes_out_signed_in_the_same_unit(b: Bench) -> None:
    connection = await _held_here(b)
    run = await b.runs.request(b.l2, b.agent.id, "clear-temp")
    sent = _sent(connection)
    assert [m.WhichOneof("kind") for m in sent] == ["run_script"]
    assert _verified(b, sent[0].run_script).order.command_id == run.command.id
    stored = await b.runs.get(run.command.id)
    assert (stored.command.state, stored.command.deliveries) == (CommandState.DELIVERED, 1)
    # Approved, a high-risk run goes out the same way.
    risky = await b.runs.request(b.l2, b.agent.id, "repair-updates")
    assert _sent(connection) == []
    await b.runs.approve(b.admin, risky.command.id)
    sent = _sent(connection)
    assert [_verified(b, m.run_script).order.approved_by for m in sent] == ["dee"]
    dispatched = [detail for _, _, detail in await _audit(b.db, "script.dispatch")]
    assert len(dispatched) == 2
    assert run.command.id in dispatched[0]
    assert risky.command.id in dispatched[1]


async def test_a_run_claimed_with_a_diagnostic_goes_out_signed_before_it(b: Bench) -> None:
    run = await b.runs.request(b.l2, b.agent.id, "clear-temp")  # queued: no stream yet
    connection = await _held_here(b)
    b.commands.sign_orders = b.runs.sign_in  # as server/services.py wires it
    diagnostic = await b.commands.queue(b.l2, b.agent.id, CommandKind.COLLECT, ticket_id=None)
    sent = _sent(connection)
    assert [m.WhichOneof("kind") for m in sent] == ["run_script", "collect"]
    assert _verified(b, sent[0].run_script).order.command_id == run.command.id
    assert sent[1].collect.command_id == diagnostic.command.id


async def test_the_sweep_erases_the_secret_of_a_run_that_ended_without_a_result(b: Bench) -> None:
    run = await b.runs.request(
        b.l2, b.agent.id, "restart-thing", parameters={"service_name": "cups", "token": SECRET}
    )
    kept = await b.db.read(lambda c: c.execute(select(script_runs.c.parameters)).scalar_one())
    assert SECRET in kept  # needed to sign the order while it may still be sent
    await b.commands.cancel(b.l2, run.command.id, "wrong machine")
    await b.runs.end_unapproved()
    kept = await b.db.read(lambda c: c.execute(select(script_runs.c.parameters)).scalar_one())
    assert json.loads(kept) == {}


async def test_a_refused_secret_value_is_named_in_neither_the_error_nor_the_audit(
    b: Bench,
) -> None:
    leaked = "no spaces allowed here"
    with pytest.raises(InvalidArgument) as refused:
        await b.runs.request(
            b.l2, b.agent.id, "restart-thing", parameters={"service_name": "x", "token": leaked}
        )
    assert "parameter token: the value given does not match its pattern" in str(refused.value)
    assert leaked not in str(refused.value)
    audit = await _audit(b.db, "script.run")
    assert audit[-1][1].startswith("refused")
    assert leaked not in audit[-1][1] + audit[-1][2]
