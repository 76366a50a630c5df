"""Catalog scripts run by the server on a machine without an agent, over the real sshd: the
repository's own scripts with their output, exit code and verification on the ticket; hostile
values byte for byte in a clean environment; an approval that runs it once; an expired run
that never runs; two servers on one database (SQLite, PostgreSQL) that run it once; a server
that dies mid-run; wrong credentials; a forged entry refused before any login."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from sonde.server.domain.agentless import AgentlessDiagnostics
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.commands import CommandState
from sonde.server.domain.replicas import Replica
from sonde.server.domain.run_reach import RunReach
from sonde.server.domain.run_verification import VerificationState
from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.wakeups import Wakeups
from sonde.server.errors import InvalidArgument, NotFound
from sonde.server.remote.credentials import Credential, FixedCredential
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, catalog_scripts, replicas
from sonde.v1 import diagnostics_pb2
from tests.integration.remote.agentless_bench import Bench, bench, server_side
from tests.integration.storage.databases import db_url, pg_url
from tests.support.sshd import Sshd, ed25519_pair

__all__ = ["db_url", "pg_url"]

HOSTILE = (
    "$(touch {canary}) `touch {canary}` ' \" ; | & * ? \\ \n\tline two\n--help -e %s ${{HOME}}"
)


@pytest.fixture
async def b(db: Database, sshd: Sshd) -> Bench:
    return await bench(db, sshd)


async def _audit(db: Database, action: str) -> list[dict[str, object]]:
    rows = await db.read(
        lambda connection: connection.execute(
            select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
        ).all()
    )
    return [{"actor": row.actor, "result": row.result, **json.loads(row.detail)} for row in rows]


def _logins(sshd: Sshd) -> int:
    return (sshd.folder / "sshd.log").read_text(errors="replace").count("Accepted publickey")


async def test_a_repository_script_runs_over_ssh_with_its_output_and_check_on_the_ticket(
    b: Bench,
) -> None:
    run = await b.agentless.request(
        b.l1,
        b.machine_id,
        b.reach,
        "clear-temp-files-linux",
        parameters={"older_than_days": "365", "include_caches": "false"},
        ticket_id=b.ticket_id,
        finding="disk.space",
    )
    assert run.command.state in (CommandState.QUEUED, CommandState.DELIVERED)
    await b.agentless.wait_started()
    done = await b.runs.get(run.command.id)
    assert done.command.state is CommandState.SUCCEEDED, done.command.reason
    assert done.exit_code == 0
    assert done.stdout  # it says what it removed, or that there was nothing to remove
    assert done.verification is not None
    assert done.verification.state in (VerificationState.CLEARED, VerificationState.NOT_CLEARED)
    assert [check.check for check in done.verification.checks] == ["disk.space"]
    assert done.verification.snapshot_id is not None
    checked = (await b.diagnostics.get_snapshot(done.verification.snapshot_id)).snapshot
    assert checked.collected_by == diagnostics_pb2.COLLECTED_BY_SSH_PYTHON
    # Only what disk.space reads (and system, for the fix's name), as on an agent.
    assert {collector.name for collector in checked.collectors} == {"disks", "system"}
    _, events = await Tickets(b.db, writes=b.audited).get(b.ticket_id)
    kinds = [event.kind for event in events if event.command_id == run.command.id]
    assert kinds == [
        TicketEventKind.SCRIPT_RUN,
        TicketEventKind.RUN_ENDED,
        TicketEventKind.VERIFIED,
    ]
    ended = next(event for event in events if event.kind is TicketEventKind.RUN_ENDED)
    assert "succeeded" in ended.body
    assert [row["actor"] for row in await _audit(b.db, "script.dispatch")] == ["server"]
    results = await _audit(b.db, "command.result")
    assert [(row["actor"], row["state"]) for row in results] == [
        ("server", "succeeded"),  # the run
        ("server", "succeeded"),  # its check, collected over the same connection
    ]
    verified = [row["state"] for row in await _audit(b.db, "script.verify")]
    assert verified == ["pending", done.verification.state.value]
    requested = (await _audit(b.db, "script.run"))[0]
    assert requested["reached_by"] == b.reach.label


async def test_hostile_values_arrive_byte_for_byte_in_a_clean_environment(
    b: Bench, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    hostile = HOSTILE.format(canary=canary)
    run = await b.agentless.request(
        b.l2, b.machine_id, b.reach, "echo-low", parameters={"note": hostile}
    )
    await b.agentless.wait_started()
    done = await b.runs.get(run.command.id)
    assert done.command.state is CommandState.FAILED  # the script exits 3
    assert done.exit_code == 3
    assert done.stdout.decode() == hostile
    assert not canary.exists()
    names, pwd = [], ""
    for line in done.stderr.decode().splitlines():
        if line.startswith("pwd="):
            pwd = line[4:]
        else:
            names.append(line)
    # The agent's environment, from scratch: nothing of the login's (SSH_*, USER, MAIL...).
    assert set(names) - {"PWD", "SHLVL", "_", "OLDPWD"} == {
        "HOME",
        "LANG",
        "LC_ALL",
        "PATH",
        "SONDE_DRY_RUN",
        "SONDE_PARAM_NOTE",
        "SONDE_PARAM_SLEEP_S",
        "SONDE_RUN_MARK",
    }
    assert "/sonde-run." in pwd
    assert not Path(pwd).exists()  # the run's private folder is gone


async def test_a_repository_script_waits_for_approval_then_runs_once(b: Bench) -> None:
    message = "Save your work: IT (helpdesk) restarts at 5; don't worry, it's quick!"
    logins = _logins(b.sshd)
    run = await b.agentless.request(
        b.l2,
        b.machine_id,
        b.reach,
        "reboot-with-notice-linux",
        parameters={"message": message, "delay_minutes": "5"},
        dry_run=True,
    )
    assert run.command.state is CommandState.PENDING_APPROVAL
    assert await b.agentless.execute(run.command.id) is None  # nothing runs unapproved
    assert _logins(b.sshd) == logins
    approved = await b.agentless.approve(b.other_l2, run.command.id)
    assert approved.approved_by == "omar"
    await b.agentless.wait_started()
    done = await b.runs.get(run.command.id)
    assert done.command.state is CommandState.SUCCEEDED, done.command.reason
    assert done.stdout.decode() == (
        f"dry run: would restart this computer in 5 minutes, telling users: {message}\n"
    )
    assert done.verification is not None
    assert done.verification.state is VerificationState.NONE  # a dry run changes nothing
    assert await b.agentless.execute(run.command.id) is None  # ended: never again
    assert len(await _audit(b.db, "script.dispatch")) == 1


async def test_an_expired_run_never_runs(b: Bench) -> None:
    logins = _logins(b.sshd)
    run = await b.runs.request(
        b.l2,
        b.machine_id,
        "echo-low",
        reach=b.reach,
        parameters={"note": "late"},
        expires_in=timedelta(seconds=1),
    )
    await asyncio.sleep(1.2)  # the run's own expiry passing, not a wait for readiness
    assert await b.agentless.execute(run.command.id) is None
    done = await b.runs.get(run.command.id)
    assert done.command.state is CommandState.EXPIRED
    assert "never runs" in done.command.reason
    assert await _audit(b.db, "script.dispatch") == []
    assert _logins(b.sshd) == logins


async def test_a_forged_entry_is_refused_before_any_login(b: Bench) -> None:
    await b.db.write(
        lambda connection: connection.execute(
            update(catalog_scripts)
            .where(catalog_scripts.c.script_id == "echo-low")
            .values(script=b"#!/bin/bash\ntouch /tmp/sonde-forged\n")
        )
    )
    logins = _logins(b.sshd)
    run = await b.agentless.request(b.l2, b.machine_id, b.reach, "echo-low")
    await b.agentless.wait_started()
    done = await b.runs.get(run.command.id)
    assert done.command.state is CommandState.REFUSED
    assert "the server refused to send it" in done.command.reason
    assert "echo-low 1.0.0" in done.command.reason
    assert _logins(b.sshd) == logins
    assert not Path("/tmp/sonde-forged").exists()


async def test_wrong_credentials_end_the_run_refused_saying_why(
    db: Database, sshd: Sshd, b: Bench
) -> None:
    stranger, _ = ed25519_pair()
    wrong = FixedCredential(Credential(user=sshd.user, private_key=stranger, name="old-key"))
    agentless, runs, *_ = server_side(db, sshd, b.catalog_key.public_key(), wrong)
    run = await agentless.request(b.l2, b.machine_id, b.reach, "echo-low")
    await agentless.wait_started()
    done = await runs.get(run.command.id)
    assert done.command.state is CommandState.REFUSED
    assert "could not log in: wrong user or key" in done.command.reason
    assert "old-key" in done.command.reason
    rows = await _audit(db, "command.result")
    assert rows[-1]["state"] == "refused"


async def test_a_machine_that_is_not_the_target_is_refused(b: Bench, sshd: Sshd) -> None:
    unknown = RunReach(RemoteTarget(Transport.SSH, sshd.user, "127.0.0.2", sshd.port))
    with pytest.raises(NotFound, match=r"no machine is known at ssh://.*127\.0\.0\.2.*sonde diag"):
        await b.agentless.request(b.l2, b.machine_id, unknown, "echo-low")
    # The same sshd reached by another name is another machine row, with the same host name:
    # naming one and reaching the other is refused, whatever the machines call themselves.
    other = RemoteTarget(Transport.SSH, sshd.user, "localhost", sshd.port)
    await b.hosts.trust(b.l2, f"localhost:{sshd.port}", sshd.host_key.fingerprint)
    await AgentlessDiagnostics(b.db, b.audited, b.hosts, FixedCredential(sshd.credential())).run(
        b.l2, other, shell_only=True
    )
    with pytest.raises(InvalidArgument, match=r"is reached at ssh://127\.0\.0\.1:\d+, not"):
        await b.agentless.request(b.l2, b.machine_id, RunReach(other), "echo-low")
    assert await _audit(b.db, "script.dispatch") == []


async def test_a_run_whose_server_died_ends_interrupted_and_never_runs_again(
    b: Bench, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    run = await b.runs.request(
        b.l2,
        b.machine_id,
        "echo-low",
        reach=b.reach,
        parameters={"log": str(log), "sleep_s": "20"},
    )
    dying = asyncio.create_task(b.agentless.execute(run.command.id))
    deadline = asyncio.get_running_loop().time() + 20
    while not log.exists():  # the script started on the host
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    dying.cancel()  # the server stops here, as far as the database can tell
    with pytest.raises(asyncio.CancelledError):
        await dying
    running = await b.runs.get(run.command.id)
    assert running.command.state is CommandState.RUNNING
    other = Replica(b.db)
    await other.register()
    key = b.catalog_key.public_key()
    survivor, runs, *_ = server_side(b.db, b.sshd, key, replica_id=other.id)
    assert await survivor.upkeep() == (0, 0)  # the dead one's lease has not lapsed yet
    await b.db.write(  # its lease lapses (as 15 s without renewing would)
        lambda connection: connection.execute(
            update(replicas)
            .where(replicas.c.id == b.replica.id)
            .values(lease_expires_at=running.command.created_at - timedelta(seconds=1))
        )
    )
    assert await survivor.upkeep() == (1, 0)
    assert await survivor.upkeep() == (0, 0)  # once
    done = await runs.get(run.command.id)
    assert done.command.state is CommandState.INTERRUPTED
    assert "whether the script ran" in done.command.reason
    assert "not run again" in done.command.reason
    assert await survivor.execute(run.command.id) is None
    assert log.read_text().count("ran ") == 1


async def test_two_servers_on_one_database_run_it_once(
    db_url: str, sshd: Sshd, tmp_path: Path
) -> None:
    first_db, second_db = await Database.open(db_url), await Database.open(db_url)
    try:
        b = await bench(first_db, sshd)
        second, *_ = server_side(second_db, sshd, b.catalog_key.public_key())
        log = tmp_path / "ran.log"
        ids = []
        for _ in range(3):
            run = await b.runs.request(
                b.l2, b.machine_id, "echo-low", reach=b.reach, parameters={"log": str(log)}
            )
            ids.append(run.command.id)
        outcomes = await asyncio.gather(
            *[server.execute(i) for i in ids for server in (b.agentless, second)]
        )
        assert sum(outcome is not None for outcome in outcomes) == 3
        assert log.read_text().count("ran ") == 3
        for command_id in ids:
            done = await b.runs.get(command_id)
            assert done.command.state is CommandState.FAILED  # exit 3: it ran, once
            assert done.command.deliveries == 1
        assert len(await _audit(first_db, "script.dispatch")) == 3
    finally:
        await first_db.close()
        await second_db.close()


async def test_a_crash_between_the_claim_and_its_audit_row_leaves_neither(b: Bench) -> None:
    run = await b.runs.request(b.l2, b.machine_id, "echo-low", reach=b.reach)
    logins = _logins(b.sshd)

    def crash(action: str) -> None:
        raise RuntimeError(f"the process dies before the audit row of {action}")

    b.audited.fault_before_audit = crash
    try:
        with pytest.raises(RuntimeError, match=r"script\.dispatch"):
            await b.agentless.execute(run.command.id)
    finally:
        b.audited.fault_before_audit = None
    still = await b.runs.get(run.command.id)
    assert still.command.state is CommandState.QUEUED  # not claimed: it can still run
    assert still.command.deliveries == 0
    assert await _audit(b.db, "script.dispatch") == []
    assert _logins(b.sshd) == logins
    done = await b.agentless.execute(run.command.id)
    assert done is not None
    assert done.command.state is CommandState.FAILED  # it ran: the script exits 3


async def test_a_cancel_ends_the_record_and_the_late_result_is_dropped(
    b: Bench, tmp_path: Path
) -> None:
    """What a cancel does not do over SSH: stop a script that already started on the host."""
    log = tmp_path / "ran.log"
    run = await b.agentless.request(
        b.l2, b.machine_id, b.reach, "echo-low", parameters={"log": str(log), "sleep_s": "2"}
    )
    deadline = asyncio.get_running_loop().time() + 20
    while not log.exists():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await Commands(b.db, b.audited, Wakeups()).cancel(b.l2, run.command.id, "wrong machine")
    await b.agentless.wait_started()
    done = await b.runs.get(run.command.id)
    assert done.command.state is CommandState.CANCELLED
    assert done.exit_code is None  # the result that came after was dropped, not stored
    results = await _audit(b.db, "command.result")
    assert str(results[-1]["result"]).startswith("refused")


async def test_the_output_is_live_while_the_script_runs(b: Bench) -> None:
    run = await b.agentless.request(
        b.l2, b.machine_id, b.reach, "chatty-low", parameters={"sleep_s": "3"}
    )
    deadline = asyncio.get_running_loop().time() + 20
    while True:  # what `sonde runs show --follow` reads, before the script has ended
        now = await b.runs.get(run.command.id)
        if now.live_output:
            break
        assert asyncio.get_running_loop().time() < deadline, "no live output came"
        await asyncio.sleep(0.1)
    assert now.command.state is CommandState.RUNNING
    assert now.live_output == b"step one\n"
    await b.agentless.wait_started()
    done = await b.runs.get(run.command.id)
    assert done.command.state is CommandState.SUCCEEDED
    assert done.stdout == b"step one\nstep two\n"
    assert done.live_output == done.stdout
