"""The closed loop through the console API, on SQLite and PostgreSQL: a run's verify checks
collected again, cleared or not, on the ticket's timeline and in the audit log;
--resolve-if-cleared; checks that never come; fixes that wait for a restart; `sonde fix`
with parameters from the finding's evidence; and the stats of which fixes work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import select

from sonde.server.domain.commands import CommandKind, CommandRecord
from sonde.server.domain.run_verification import CHECK_EXPIRY, RESTART_WAIT
from sonde.server.errors import PermissionDenied
from sonde.server.storage.tables import audit_log, commands, outbox
from sonde.v1 import agent_pb2, diagnostics_pb2
from sonde.v1 import console_pb2 as pb
from tests.integration.console.harness import Console
from tests.support.catalog_bundles import signed_bundle, source

ADMIN, BOB, ANN = Console.as_user("admin"), Console.as_user("bob"), Console.as_user("ann")
CRITICAL, OK = diagnostics_pb2.SEVERITY_CRITICAL, diagnostics_pb2.SEVERITY_OK
RESTART_UNIT = """
[[parameters]]
name = "unit"
type = "string"
pattern = "[a-z.-]{1,40}"
required = true
description = "the unit to restart"
"""


def disk(severity: diagnostics_pb2.Severity.ValueType) -> diagnostics_pb2.Finding:
    return diagnostics_pb2.Finding(
        check="disk.space",
        severity=severity,
        summary="Disk / is 97 % full." if severity == CRITICAL else "Disk / is 40 % full.",
        fix_script_id="clear-temp",
    )


async def _publish(console: Console) -> None:
    await console.stub.PublishCatalog(
        pb.PublishCatalogRequest(
            bundle=signed_bundle(
                console.catalog_key,
                source("clear-temp", verify='["disk.space"]'),
                source("tidy-nothing"),  # no verify checks
                source("patch-and-restart", verify='["disk.space"]', reboot_required="true"),
                source(
                    "restart-unit",
                    risk="medium",
                    parameters=RESTART_UNIT,
                    fixes='["services.failed"]',
                    verify='["services.failed"]',
                ),
            )
        ),
        metadata=ADMIN,
    )


async def _ticket_for(console: Console, agent_id: str, assignee: str = "ann") -> int:
    opened = await console.stub.OpenTicket(
        pb.OpenTicketRequest(title="PC is slow", agent=agent_id), metadata=ANN
    )
    await console.stub.AssignTicket(
        pb.AssignTicketRequest(id=opened.ticket.id, assignee=assignee), metadata=ANN
    )
    return opened.ticket.id


async def _diagnosed(
    console: Console, severity: diagnostics_pb2.Severity.ValueType = CRITICAL
) -> str:
    """An agent whose newest diagnostic found disk.space at `severity`; its id."""
    agent = await console.enroll_agent("PC-9")
    await console.stub.RunDiagnostics(pb.RunDiagnosticsRequest(agent=agent.id), metadata=ANN)
    await console.answer_diagnostics(agent.id, [disk(severity)])
    return agent.id


async def _ran(console: Console, agent_id: str, run_id: str, exit_code: int = 0) -> None:
    """The agent received the run and reports that the script exited `exit_code`."""
    await console.services.commands.claim_due(agent_id, "session-1", resend_delivered=True)
    result = agent_pb2.Result(
        command_id=run_id,
        script_run=agent_pb2.ScriptRun(exit_code=exit_code, stdout=b"freed 2.1 GiB\n"),
    )
    await console.services.script_runs.accept_result(agent_id, result, datetime.now(UTC))


async def _check_command(console: Console, run_id: str) -> CommandRecord:
    run = (await console.stub.GetRun(pb.GetRunRequest(id=run_id), metadata=ANN)).run
    assert run.verification.command_id
    return await console.services.commands.get(run.verification.command_id)


async def _audit_actions(console: Console) -> list[str]:
    rows = await console.services.db.read(
        lambda connection: connection.execute(
            select(audit_log.c.action, audit_log.c.result).order_by(audit_log.c.id)
        ).all()
    )
    return [f"{row.action}:{row.result}" for row in rows]


async def test_a_fix_that_clears_resolves_its_ticket_and_the_timeline_tells_it_all(
    console: Console,
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    ticket_id = await _ticket_for(console, agent_id)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(
            agent=agent_id,
            script_id="clear-temp",
            ticket_id=ticket_id,
            finding="disk.space",
            resolve_if_cleared=True,
        ),
        metadata=ANN,
    )
    run_id = asked.run.command.id
    assert asked.run.finding == "disk.space"
    assert asked.run.resolve_if_cleared
    await _ran(console, agent_id, run_id)

    check = await _check_command(console, run_id)
    assert check.kind is CommandKind.COLLECT
    assert check.collectors == ("disks", "system")  # only what disk.space reads
    assert check.ticket_id == ticket_id
    assert check.requested_by == "ann"
    pending = (await console.stub.GetRun(pb.GetRunRequest(id=run_id), metadata=ANN)).run
    assert pending.verification.state == pb.VERIFICATION_STATE_PENDING

    [snapshot_id] = await console.answer_diagnostics(agent_id, [disk(OK)])
    run = (await console.stub.GetRun(pb.GetRunRequest(id=run_id), metadata=ANN)).run
    assert run.verification.state == pb.VERIFICATION_STATE_CLEARED
    assert run.verification.snapshot_id == snapshot_id
    assert run.verification.resolved_ticket
    [checked] = run.verification.checks
    assert (checked.check, checked.before, checked.after) == ("disk.space", CRITICAL, OK)
    assert checked.seen_before
    assert checked.seen_after

    got = await console.stub.GetTicket(pb.GetTicketRequest(id=ticket_id), metadata=ANN)
    assert got.ticket.status == pb.TICKET_STATUS_RESOLVED
    assert f"run {run_id[:8]}" in got.ticket.resolution
    kinds = [pb.TicketEventKind.Name(event.kind) for event in got.timeline]
    assert kinds[-4:] == [
        "TICKET_EVENT_KIND_SCRIPT_RUN",
        "TICKET_EVENT_KIND_RUN_ENDED",
        "TICKET_EVENT_KIND_VERIFIED",
        "TICKET_EVENT_KIND_RESOLVED",
    ]
    ran, ended, verified = got.timeline[-4:-1]
    assert ran.command_id == ended.command_id == verified.command_id == run_id
    assert ran.actor == "ann"
    assert "clear-temp 1.0.0 (low risk)" in ran.body
    assert ended.run.stdout == b"freed 2.1 GiB\n"
    assert ended.run.exit_code == 0
    assert "exit code 0" in ended.body
    assert verified.snapshot_id == snapshot_id
    assert "disk.space critical -> ok" in verified.body
    # The verification's snapshot is the run's, not another diagnostic on the timeline.
    assert "TICKET_EVENT_KIND_DIAGNOSTIC" not in kinds

    actions = await _audit_actions(console)
    assert actions.count("script.verify:ok") == 2  # pending, then cleared
    assert actions.index("command.result:ok") < actions.index("script.verify:ok")


async def test_a_fix_that_did_not_clear_says_so_and_leaves_the_ticket_open(
    console: Console,
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    ticket_id = await _ticket_for(console, agent_id)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(
            agent=agent_id, script_id="clear-temp", ticket_id=ticket_id, resolve_if_cleared=True
        ),
        metadata=ANN,
    )
    await _ran(console, agent_id, asked.run.command.id, exit_code=1)
    await console.answer_diagnostics(agent_id, [disk(CRITICAL)])
    run = (await console.stub.GetRun(pb.GetRunRequest(id=asked.run.command.id), metadata=ANN)).run
    assert run.command.state == pb.COMMAND_STATE_FAILED
    assert run.verification.state == pb.VERIFICATION_STATE_NOT_CLEARED
    assert run.verification.reason == "still failing: disk.space"
    assert not run.verification.resolved_ticket
    got = await console.stub.GetTicket(pb.GetTicketRequest(id=ticket_id), metadata=ANN)
    assert got.ticket.status == pb.TICKET_STATUS_IN_PROGRESS
    assert "not_cleared" in got.timeline[-1].body
    assert f"sonde ticket escalate {ticket_id}" in got.timeline[-1].body


async def test_a_finding_that_was_ok_before_the_run_does_not_resolve_the_ticket(
    console: Console,
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console, OK)
    ticket_id = await _ticket_for(console, agent_id)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(
            agent=agent_id, script_id="clear-temp", ticket_id=ticket_id, resolve_if_cleared=True
        ),
        metadata=ANN,
    )
    await _ran(console, agent_id, asked.run.command.id)
    await console.answer_diagnostics(agent_id, [disk(OK)])
    run = (await console.stub.GetRun(pb.GetRunRequest(id=asked.run.command.id), metadata=ANN)).run
    assert run.verification.state == pb.VERIFICATION_STATE_CLEARED
    assert not run.verification.resolved_ticket
    got = await console.stub.GetTicket(pb.GetTicketRequest(id=ticket_id), metadata=ANN)
    assert got.ticket.status == pb.TICKET_STATUS_IN_PROGRESS
    assert "already ok before the run, so the run cleared nothing" in got.timeline[-1].body


async def test_a_check_whose_collector_gave_nothing_is_unverified_not_cleared(
    console: Console,
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(agent=agent_id, script_id="clear-temp"), metadata=BOB
    )
    await _ran(console, agent_id, asked.run.command.id)
    await console.answer_diagnostics(agent_id, [])  # the disks collector failed there
    run = (await console.stub.GetRun(pb.GetRunRequest(id=asked.run.command.id), metadata=BOB)).run
    assert run.verification.state == pb.VERIFICATION_STATE_UNVERIFIED
    assert "no finding for disk.space" in run.verification.reason
    assert not run.verification.checks[0].seen_after


async def test_nothing_is_verified_for_a_dry_run_or_a_script_without_checks(
    console: Console,
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    dry = await console.stub.RunScript(
        pb.RunScriptRequest(agent=agent_id, script_id="clear-temp", dry_run=True), metadata=BOB
    )
    plain = await console.stub.RunScript(
        pb.RunScriptRequest(agent=agent_id, script_id="tidy-nothing"), metadata=BOB
    )
    await _ran(console, agent_id, dry.run.command.id)
    await _ran(console, agent_id, plain.run.command.id)
    for run_id, reason in (
        (dry.run.command.id, "a dry run changes nothing"),
        (plain.run.command.id, "tidy-nothing 1.0.0 names no check to verify"),
    ):
        run = (await console.stub.GetRun(pb.GetRunRequest(id=run_id), metadata=BOB)).run
        assert run.verification.state == pb.VERIFICATION_STATE_NONE
        assert run.verification.reason == reason
    assert await console.answer_diagnostics(agent_id, []) == []  # no check was queued


async def test_a_check_that_never_comes_ends_unverified_saying_why(console: Console) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    ticket_id = await _ticket_for(console, agent_id)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(agent=agent_id, script_id="clear-temp", ticket_id=ticket_id),
        metadata=ANN,
    )
    run_id = asked.run.command.id
    await _ran(console, agent_id, run_id)
    check = await _check_command(console, run_id)
    # The agent stays away past the check's expiry; the upkeep ends it, then the wait.
    later = datetime.now(UTC) + CHECK_EXPIRY + timedelta(minutes=1)
    await console.services.db.write(
        lambda connection: connection.execute(
            commands.update()
            .where(commands.c.id == check.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    )
    assert later > datetime.now(UTC)
    await console.services.commands.end_overdue()
    assert await console.services.script_runs.end_unapproved() == 0
    run = (await console.stub.GetRun(pb.GetRunRequest(id=run_id), metadata=ANN)).run
    assert run.verification.state == pb.VERIFICATION_STATE_UNVERIFIED
    assert run.verification.reason.startswith("the check ended expired")
    got = await console.stub.GetTicket(pb.GetTicketRequest(id=ticket_id), metadata=ANN)
    assert "unverified" in got.timeline[-1].body
    # Done once: a second sweep (another replica's) writes nothing more.
    before = await _audit_actions(console)
    await console.services.script_runs.end_unapproved()
    assert await _audit_actions(console) == before


async def test_a_fix_needing_a_restart_is_checked_once_the_machine_has_restarted(
    console: Console,
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(agent=agent_id, script_id="patch-and-restart"), metadata=BOB
    )
    run_id = asked.run.command.id
    await _ran(console, agent_id, run_id)
    run = (await console.stub.GetRun(pb.GetRunRequest(id=run_id), metadata=BOB)).run
    assert run.verification.state == pb.VERIFICATION_STATE_AFTER_RESTART
    ended = run.command.finished_at.ToDatetime(tzinfo=UTC)
    runs = console.services.script_runs
    # A reconnect on the same boot (a network blip) checks nothing yet.
    assert await runs.verify_after_restart(agent_id, ended - timedelta(hours=1)) == 0
    assert await runs.verify_after_restart(agent_id, ended + timedelta(seconds=30)) == 1
    assert await runs.verify_after_restart(agent_id, ended + timedelta(seconds=30)) == 0
    await console.answer_diagnostics(agent_id, [disk(OK)])
    run = (await console.stub.GetRun(pb.GetRunRequest(id=run_id), metadata=BOB)).run
    assert run.verification.state == pb.VERIFICATION_STATE_CLEARED


async def test_a_machine_that_never_restarts_leaves_the_fix_unverified(console: Console) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(agent=agent_id, script_id="patch-and-restart"), metadata=BOB
    )
    await _ran(console, agent_id, asked.run.command.id)
    long_ago = datetime.now(UTC) - RESTART_WAIT - timedelta(hours=1)
    await console.services.db.write(
        lambda connection: connection.execute(
            commands.update()
            .where(commands.c.id == asked.run.command.id)
            .values(finished_at=long_ago)
        )
    )
    await console.services.script_runs.end_unapproved()
    run = (await console.stub.GetRun(pb.GetRunRequest(id=asked.run.command.id), metadata=BOB)).run
    assert run.verification.state == pb.VERIFICATION_STATE_UNVERIFIED
    assert "did not restart within 7 days" in run.verification.reason


@pytest.mark.parametrize(
    ("request_fields", "user", "refusal"),
    [
        ({"resolve_if_cleared": True}, BOB, "--resolve-if-cleared resolves a ticket"),
        ({"finding": "disk.spice"}, BOB, "'disk.spice' is not a finding's check"),
        ({"finding": "services.failed"}, BOB, "clear-temp does not fix services.failed"),
        ({"resolve_if_cleared": True, "dry_run": True, "ticket": True}, ANN, "a dry run"),
    ],
)
async def test_closing_a_ticket_with_a_run_is_refused_when_it_could_not(
    console: Console, request_fields: dict[str, object], user: object, refusal: str
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    fields = dict(request_fields)
    if fields.pop("ticket", False):
        fields["ticket_id"] = await _ticket_for(console, agent_id)
    request = pb.RunScriptRequest(agent=agent_id, script_id="clear-temp", **fields)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await console.stub.RunScript(request, metadata=user)  # type: ignore[arg-type]
    assert refused.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert refusal in (refused.value.details() or "")


async def test_a_ticket_escalated_meanwhile_is_not_resolved_by_the_l1s_run(
    console: Console,
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    ticket_id = await _ticket_for(console, agent_id)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(
            agent=agent_id, script_id="clear-temp", ticket_id=ticket_id, resolve_if_cleared=True
        ),
        metadata=ANN,
    )
    await console.stub.EscalateTicket(
        pb.EscalateTicketRequest(id=ticket_id, reason="disk keeps filling", assignee="bob"),
        metadata=ANN,
    )
    await _ran(console, agent_id, asked.run.command.id)
    await console.answer_diagnostics(agent_id, [disk(OK)])
    run = (await console.stub.GetRun(pb.GetRunRequest(id=asked.run.command.id), metadata=ANN)).run
    assert run.verification.state == pb.VERIFICATION_STATE_CLEARED
    assert not run.verification.resolved_ticket
    got = await console.stub.GetTicket(pb.GetTicketRequest(id=ticket_id), metadata=ANN)
    assert got.ticket.status == pb.TICKET_STATUS_IN_PROGRESS
    assert "escalated to L2, which ann may not resolve" in got.timeline[-1].body


async def test_fix_takes_its_parameters_from_the_finding_and_runs_under_the_same_rules(
    console: Console,
) -> None:
    await _publish(console)
    agent = await console.enroll_agent("PC-3")
    failed = diagnostics_pb2.Finding(
        check="services.failed", severity=CRITICAL, fix_script_id="restart-unit"
    )
    snapshot = diagnostics_pb2.Snapshot(agent_id=agent.id)
    snapshot.services.failed.add(name="cups.service", state="failed")
    await console.stub.RunDiagnostics(pb.RunDiagnosticsRequest(agent=agent.id), metadata=BOB)
    [snapshot_id] = await console.answer_diagnostics(agent.id, [failed], snapshot)

    plan = await console.stub.FixFinding(
        pb.FixFindingRequest(agent="PC-3", finding="services.failed", plan_only=True),
        metadata=BOB,
    )
    assert (plan.script_id, plan.risk, plan.snapshot_id) == ("restart-unit", "medium", snapshot_id)
    assert dict(plan.parameters) == {"unit": "cups.service"}
    assert "failed service" in plan.parameter_sources["unit"]
    assert not plan.HasField("run")
    assert (await console.stub.ListRuns(pb.ListRunsRequest(), metadata=BOB)).runs == []

    # An L1 may not run a medium-risk fix, whichever way it is asked.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await console.stub.FixFinding(
            pb.FixFindingRequest(agent="PC-3", finding="services.failed"), metadata=ANN
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    done = await console.stub.FixFinding(
        pb.FixFindingRequest(agent="PC-3", finding="services.failed"), metadata=BOB
    )
    assert done.run.finding == "services.failed"
    assert dict(done.run.parameters) == {"unit": "cups.service"}
    given = await console.stub.FixFinding(
        pb.FixFindingRequest(
            agent="PC-3", finding="services.failed", parameters={"unit": "sshd.service"}
        ),
        metadata=BOB,
    )
    assert dict(given.run.parameters) == {"unit": "sshd.service"}
    assert given.parameter_sources["unit"] == "given"


@pytest.mark.parametrize(
    ("finding", "snapshot_units", "refusal"),
    [
        ("disk.space", (), "nothing to fix"),  # the newest diagnostic found it OK
        ("services.failed", ("a.service", "b.service"), "names 2 services"),
        ("services.failed", (), "needs unit"),
        ("network.dns", (), "no diagnostic of PC-5 has a network.dns finding"),
    ],
)
async def test_fix_refuses_what_it_cannot_work_out(
    console: Console, finding: str, snapshot_units: tuple[str, ...], refusal: str
) -> None:
    await _publish(console)
    agent = await console.enroll_agent("PC-5")
    snapshot = diagnostics_pb2.Snapshot(agent_id=agent.id)
    for unit in snapshot_units:
        snapshot.services.failed.add(name=unit, state="failed")
    found = [
        disk(OK),
        diagnostics_pb2.Finding(
            check="services.failed", severity=CRITICAL, fix_script_id="restart-unit"
        ),
    ]
    await console.stub.RunDiagnostics(pb.RunDiagnosticsRequest(agent=agent.id), metadata=BOB)
    await console.answer_diagnostics(agent.id, found, snapshot)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await console.stub.FixFinding(
            pb.FixFindingRequest(agent="PC-5", finding=finding), metadata=BOB
        )
    assert refusal in (refused.value.details() or "")


async def test_stats_count_runs_success_and_clearing_per_script_and_finding(
    console: Console,
) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    for exit_code, after in ((0, OK), (0, OK), (0, CRITICAL), (1, CRITICAL)):
        asked = await console.stub.RunScript(
            pb.RunScriptRequest(agent=agent_id, script_id="clear-temp"), metadata=BOB
        )
        await _ran(console, agent_id, asked.run.command.id, exit_code)
        await console.answer_diagnostics(agent_id, [disk(after)])
    await console.stub.RunScript(  # a dry run is left out
        pb.RunScriptRequest(agent=agent_id, script_id="clear-temp", dry_run=True), metadata=BOB
    )
    stats = await console.stub.GetScriptStats(pb.GetScriptStatsRequest(), metadata=ANN)
    rows = [
        (s.script_id, s.finding, s.runs, s.succeeded, s.verified, s.cleared) for s in stats.stats
    ]
    assert rows == [
        ("clear-temp", "", 4, 3, 4, 2),
        ("clear-temp", "disk.space", 4, 3, 4, 2),
    ]
    by_finding = await console.stub.GetScriptStats(
        pb.GetScriptStatsRequest(finding="network.dns"), metadata=ANN
    )
    assert list(by_finding.stats) == []


async def test_another_machine_cannot_answer_a_runs_verification(console: Console) -> None:
    await _publish(console)
    agent_id = await _diagnosed(console)
    other = await console.enroll_agent("PC-EVIL")
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(agent=agent_id, script_id="clear-temp"), metadata=BOB
    )
    await _ran(console, agent_id, asked.run.command.id)
    check = await _check_command(console, asked.run.command.id)
    forged = agent_pb2.Result(command_id=check.id, snapshot=diagnostics_pb2.Snapshot())
    with pytest.raises(PermissionDenied, match="issued to another agent"):
        await console.services.diagnostics.accept_result(
            other.id, forged, [disk(OK)], datetime.now(UTC)
        )
    run = (await console.stub.GetRun(pb.GetRunRequest(id=asked.run.command.id), metadata=BOB)).run
    assert run.verification.state == pb.VERIFICATION_STATE_PENDING
    [snapshot_id] = await console.answer_diagnostics(agent_id, [disk(CRITICAL)])
    run = (await console.stub.GetRun(pb.GetRunRequest(id=asked.run.command.id), metadata=BOB)).run
    assert run.verification.state == pb.VERIFICATION_STATE_NOT_CLEARED
    assert run.verification.snapshot_id == snapshot_id


async def test_closing_needs_the_last_fixs_verification_ended_and_cleared_when_fixed(
    console: Console,
) -> None:
    """Closure quality: a record is complete only once its last fix's verification has
    come, and "fixed" only when it cleared; the refusal lists everything missing at once."""
    await _publish(console)
    agent_id = await _diagnosed(console)
    ticket_id = await _ticket_for(console, agent_id)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(agent=agent_id, script_id="clear-temp", ticket_id=ticket_id),
        metadata=ANN,
    )
    run_id = asked.run.command.id
    await _ran(console, agent_id, run_id)
    await console.stub.ResolveTicket(
        pb.ResolveTicketRequest(
            id=ticket_id,
            resolution="cleared the temp files",
            outcome=pb.TICKET_OUTCOME_FIXED,
            time_spent_s=600,
        ),
        metadata=ANN,
    )
    with pytest.raises(grpc.aio.AioRpcError) as pending:
        await console.stub.CloseTicket(pb.CloseTicketRequest(id=ticket_id), metadata=ANN)
    assert pending.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    said = pending.value.details() or ""
    assert f"the verification of run {run_id[:8]}, still pending" in said
    assert f"a category (sonde ticket set {ticket_id} --category PATH)" in said
    assert f"the requester (sonde ticket set {ticket_id} --requester NAME)" in said
    assert "the machine" not in said  # it has one
    assert "time spent" not in said  # logged on resolve

    await console.stub.AddCategory(
        pb.AddCategoryRequest(path="workstation", title="Workstation"), metadata=ADMIN
    )
    await console.stub.SetTicketDetails(
        pb.SetTicketDetailsRequest(id=ticket_id, category="workstation", requester="Marie"),
        metadata=ANN,
    )
    await console.answer_diagnostics(agent_id, [disk(CRITICAL)])  # the fix did not hold
    with pytest.raises(grpc.aio.AioRpcError) as not_cleared:
        await console.stub.CloseTicket(pb.CloseTicketRequest(id=ticket_id), metadata=ANN)
    assert f"a fix that held: run {run_id[:8]}'s finding did not clear" in (
        not_cleared.value.details() or ""
    )
    # Resolved again with the outcome it had: the record is true, and it closes.
    await console.stub.ReopenTicket(
        pb.ReopenTicketRequest(id=ticket_id, reason="the disk filled again"), metadata=ANN
    )
    await console.stub.ResolveTicket(
        pb.ResolveTicketRequest(
            id=ticket_id,
            resolution="moved the user's archive to the share; the cause stays",
            outcome=pb.TICKET_OUTCOME_WORKAROUND,
            time_spent_s=900,
        ),
        metadata=ANN,
    )
    closed = await console.stub.CloseTicket(pb.CloseTicketRequest(id=ticket_id), metadata=ANN)
    assert closed.ticket.status == pb.TICKET_STATUS_CLOSED
    assert closed.ticket.outcome == pb.TICKET_OUTCOME_WORKAROUND
    assert closed.ticket.time_spent_s == 1500


DISK_PROCEDURE = """\
+++
id = "disk-full"
title = "The system disk is full"
category = "workstation"
findings = ["disk.space"]
checks = ["disk.space"]
scripts = ["clear-temp"]
version = 1
updated_at = 2026-12-01T09:00:00+00:00
+++

# The system disk is full

## Symptoms

- PC is slow

## Steps

1. Run clear-temp from the catalog, on the ticket, with --resolve-if-cleared.
2. If it stays full, look for large user folders and ask before moving them.
"""


async def test_a_procedure_is_suggested_by_finding_and_measured_by_the_closed_loop(
    console: Console,
) -> None:
    """The knowledge base through the console: saved from Markdown by an L1 (versioned, a
    stale file refused), suggested for a ticket by its machine's finding, and its measured
    success counted from a run of its script that cleared the finding and resolved the
    ticket as fixed."""
    await _publish(console)
    saved = await console.stub.SaveProcedure(
        pb.SaveProcedureRequest(markdown=DISK_PROCEDURE, source_name="disk-full.md"), metadata=ANN
    )
    assert (saved.procedure.version, saved.changed) == (1, True)
    again = await console.stub.SaveProcedure(
        pb.SaveProcedureRequest(markdown=DISK_PROCEDURE, source_name="disk-full.md"), metadata=ANN
    )
    assert (again.procedure.version, again.changed) == (1, False)
    edited = DISK_PROCEDURE.replace("ask before moving them", "ask the user before moving them")
    second = await console.stub.SaveProcedure(
        pb.SaveProcedureRequest(markdown=edited, source_name="disk-full.md"), metadata=ANN
    )
    assert second.procedure.version == 2
    stale = DISK_PROCEDURE.replace("ask before moving them", "move them")  # still version 1
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await console.stub.SaveProcedure(
            pb.SaveProcedureRequest(markdown=stale, source_name="disk-full.md"), metadata=BOB
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is at version 2 and this file is of version 1" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await console.stub.SaveProcedure(
            pb.SaveProcedureRequest(markdown="# no front matter\n", source_name="x.md"),
            metadata=ANN,
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x.md, line 1" in (bad.value.details() or "")

    agent_id = await _diagnosed(console)  # disk.space critical
    ticket_id = await _ticket_for(console, agent_id)
    before = await console.stub.SuggestProcedures(
        pb.SuggestProceduresRequest(ticket_id=ticket_id), metadata=ANN
    )
    (offered,) = before.suggestions
    assert offered.procedure.id == "disk-full"
    assert offered.why.startswith("answers disk.space")
    assert offered.success == "not used on a ticket yet"

    asked = await console.stub.RunScript(
        pb.RunScriptRequest(
            agent=agent_id, script_id="clear-temp", ticket_id=ticket_id, resolve_if_cleared=True
        ),
        metadata=ANN,
    )
    await _ran(console, agent_id, asked.run.command.id)
    await console.answer_diagnostics(agent_id, [disk(OK)])
    after = await console.stub.SuggestProcedures(
        pb.SuggestProceduresRequest(ticket_id=ticket_id), metadata=ANN
    )
    (measured,) = after.suggestions  # by its symptom now: the finding cleared
    assert (measured.used, measured.resolved_verified) == (1, 1)
    assert measured.success == "1 of 1 resolved, verified (small sample)"
    found = await console.stub.ListProcedures(
        pb.ListProceduresRequest(query="disk full"), metadata=ANN
    )
    assert [hit.procedure.id for hit in found.procedures] == ["disk-full"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await console.stub.GetProcedure(pb.GetProcedureRequest(id="nothing"), metadata=ANN)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_ticket_a_fix_resolves_mails_its_requester_as_a_technician_s_resolve_does(
    mailing_console: Console,
) -> None:
    console = mailing_console
    await _publish(console)
    agent_id = await _diagnosed(console)
    opened = await console.stub.OpenTicket(
        pb.OpenTicketRequest(
            title="disk full", agent=agent_id, requester="Marie Dupont <marie@example.org>"
        ),
        metadata=ANN,
    )
    ticket_id = opened.ticket.id
    await console.stub.AssignTicket(pb.AssignTicketRequest(id=ticket_id), metadata=ANN)
    asked = await console.stub.RunScript(
        pb.RunScriptRequest(
            agent=agent_id, script_id="clear-temp", ticket_id=ticket_id, resolve_if_cleared=True
        ),
        metadata=ANN,
    )
    await _ran(console, agent_id, asked.run.command.id)
    await console.answer_diagnostics(agent_id, [disk(OK)])
    mails = await console.services.db.read(
        lambda c: c.execute(select(outbox).order_by(outbox.c.id)).all()
    )
    assert [(m.kind, m.recipient, m.ticket_id) for m in mails] == [
        ("opened", "marie@example.org", ticket_id),
        ("resolved", "marie@example.org", ticket_id),
    ]
    assert f"Fixed by run {asked.run.command.id[:8]} of clear-temp" in mails[1].body
