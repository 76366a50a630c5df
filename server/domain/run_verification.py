"""The closed loop: after a run, collect the checks its manifest names again and record whether
the finding cleared, on the run, the ticket's timeline and the audit log.

When a run's result is stored (`begin`, in that unit of work), the server decides:

- nothing to verify (`none`): a dry run, a run cancelled or refused, a manifest without verify
  checks;
- `after_restart`: the script needs a restart (reboot_required); the check is asked once the
  agent says, in its Hello, that the machine started after the run ended (`after_restart`);
- else `pending`: a diagnostic of kind collect, limited to the collectors those checks read
  (sonde.agent.checks.sources), is queued for the agent like any other command.

When that diagnostic's snapshot is stored (`record`, in the diagnostics' unit of work), each
checked finding is compared with the machine's newest snapshot before the run: every one OK
is `cleared`, one still a warning or critical is `not_cleared`, one the checks could not
conclude (its collector did not run) is `unverified`. A run asked with --resolve-if-cleared
resolves its ticket there and then. A check that never comes (the diagnostic expired or
failed, or the machine did not restart within RESTART_WAIT) is `unverified`, saying why
(`give_up`, the replica's upkeep). Each decision writes a `script.verify` audit row.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sonde.agent.checks.sources import CHECK_SOURCES, collectors_for
from sonde.catalog.manifest import Manifest, parse_manifest
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.commands import (
    CommandKind,
    CommandRecord,
    CommandState,
    insert_command,
    load_command,
    new_command,
)
from sonde.server.domain.notifications import queue_to_requester
from sonde.server.domain.roles import Permission
from sonde.server.domain.satisfaction import ask_in
from sonde.server.domain.ticket_model import TicketEventKind, TicketLevel, TicketOutcome
from sonde.server.domain.ticket_queries import load_ticket, user_role
from sonde.server.domain.ticket_resolution import resolve_in
from sonde.server.domain.timeline import append_event
from sonde.server.domain.wakeups import Wake, WakeKind, emit
from sonde.server.domain.workstation_rating import ask_on_workstation_in
from sonde.server.errors import NotFound
from sonde.server.storage.tables import catalog_scripts, commands, findings, script_runs
from sonde.server.storage.types import AnyRow
from sonde.v1 import diagnostics_pb2

CHECK_EXPIRY = timedelta(hours=24)  # the verification diagnostic waits this long for the agent
RESTART_WAIT = timedelta(days=7)  # a fix that needs a restart is checked within this, or not


class VerificationState(enum.StrEnum):
    UNSET = ""  # the run has not ended
    NONE = "none"
    PENDING = "pending"
    AFTER_RESTART = "after_restart"
    CLEARED = "cleared"
    NOT_CLEARED = "not_cleared"
    UNVERIFIED = "unverified"


@dataclass(frozen=True)
class CheckOutcome:
    check: str
    before: int | None  # a Severity; None: no snapshot before had this check
    after: int | None  # None: the verification's snapshot has no finding for it
    summary: str  # the finding's summary afterwards


@dataclass(frozen=True)
class Verification:
    state: VerificationState
    reason: str
    checks: tuple[CheckOutcome, ...]
    command_id: str | None  # the diagnostic that collected them
    snapshot_id: int | None
    verified_at: datetime | None
    resolved_ticket: bool


def verification_of(row: Mapping[str, Any]) -> Verification:
    """A script_runs row's verification, as stored (the row's values by column name)."""
    detail = json.loads(row["verification_detail"]) if row["verification_detail"] else {}
    return Verification(
        state=VerificationState(row["verification"]),
        reason=str(detail.get("reason", "")),
        checks=tuple(
            CheckOutcome(
                check=str(item["check"]),
                before=item.get("before"),
                after=item.get("after"),
                summary=str(item.get("summary", "")),
            )
            for item in detail.get("checks", [])
        ),
        command_id=row["verify_command_id"],
        snapshot_id=detail.get("snapshot_id"),
        verified_at=row["verified_at"],
        resolved_ticket=bool(detail.get("resolved_ticket", False)),
    )


def checks_to_verify(manifest: Manifest, finding: str) -> list[str]:
    """The checks that decide: the finding the run was asked to fix first, then the manifest's
    verify entries that are checks (a collector's name there only widens what is collected)."""
    wanted = [finding] if finding else []
    wanted += [name for name in manifest.verify if name in CHECK_SOURCES]
    return list(dict.fromkeys(wanted))


def _store(
    connection: Connection,
    command_id: str,
    state: VerificationState,
    detail: dict[str, object],
    *,
    verify_command_id: str | None = None,
    verified_at: datetime | None = None,
) -> None:
    values: dict[str, object] = {
        "verification": state.value,
        "verification_detail": json.dumps(detail, sort_keys=True),
        "verified_at": verified_at,
    }
    if verify_command_id is not None:
        values["verify_command_id"] = verify_command_id
    connection.execute(
        update(script_runs).where(script_runs.c.command_id == command_id).values(values)
    )


def _audit(
    audited: AuditedWrites,
    connection: Connection,
    run: CommandRecord,
    state: VerificationState,
    detail: dict[str, object],
) -> None:
    entry = AuditEntry(run.agent_id, run.ticket_id, {"command_id": run.id, "state": state.value})
    for key in ("reason", "verify_command_id", "snapshot_id", "checks_text", "resolved_ticket"):
        value = detail.get(key)
        if isinstance(value, bool):
            entry.detail[key] = int(value)
        elif isinstance(value, str | int):
            entry.detail[key] = value
    audited.append_in(connection, "server", "script.verify", entry)


def _manifest_of(connection: Connection, row: AnyRow) -> Manifest:
    stored = connection.execute(
        select(catalog_scripts.c.manifest)
        .where(catalog_scripts.c.script_id == row.script_id)
        .where(catalog_scripts.c.version == row.script_version)
    ).scalar_one()
    return parse_manifest(bytes(stored))


def begin(
    audited: AuditedWrites,
    connection: Connection,
    run: CommandRecord,
    row: AnyRow,
    *,
    now: datetime,
    wakes: list[Wake],
) -> VerificationState:
    """Decide how `run` (just ended, in `run.state`; `row` its script_runs row, locked) is
    verified, and queue its check when it can be made now."""
    manifest = _manifest_of(connection, row)
    checks = checks_to_verify(manifest, row.finding)
    reason = ""
    if row.dry_run:
        reason = "a dry run changes nothing"
    elif run.state not in (CommandState.SUCCEEDED, CommandState.FAILED, CommandState.TIMED_OUT):
        reason = f"the script did not run to an end ({run.state.value})"
    elif not checks:
        reason = f"{row.script_id} {row.script_version} names no check to verify"
    if reason:
        detail: dict[str, object] = {"reason": reason}
        _store(connection, run.id, VerificationState.NONE, detail)
        _audit(audited, connection, run, VerificationState.NONE, detail)
        return VerificationState.NONE
    if manifest.reboot_required:
        detail = {"reason": "waits for the machine to restart", "checks": _planned(checks)}
        _store(connection, run.id, VerificationState.AFTER_RESTART, detail)
        _audit(audited, connection, run, VerificationState.AFTER_RESTART, detail)
        return VerificationState.AFTER_RESTART
    check_id = queue_check(connection, run, checks, now, wakes)
    detail = {"checks": _planned(checks), "verify_command_id": check_id}
    _store(connection, run.id, VerificationState.PENDING, detail, verify_command_id=check_id)
    _audit(audited, connection, run, VerificationState.PENDING, detail)
    return VerificationState.PENDING


def _planned(checks: Sequence[str]) -> list[dict[str, object]]:
    return [{"check": check} for check in checks]


def queue_check(
    connection: Connection,
    run: CommandRecord,
    checks: Sequence[str],
    now: datetime,
    wakes: list[Wake],
) -> str:
    """Queue the diagnostic that collects `checks` again on the run's agent; its id."""
    check = new_command(
        agent_id=run.agent_id,
        agent_hostname=run.agent_hostname,
        kind=CommandKind.COLLECT,
        ticket_id=run.ticket_id,
        requested_by=run.requested_by,
        now=now,
        expires_at=now + CHECK_EXPIRY,
        collectors=tuple(collectors_for(checks)),
    )
    insert_command(connection, check)
    emit(connection, wakes, Wake(WakeKind.COMMANDS_DUE, run.agent_id, check.id))
    return check.id


def after_restart(
    audited: AuditedWrites,
    connection: Connection,
    agent_id: str,
    boot_time: datetime | None,
    *,
    now: datetime,
    wakes: list[Wake],
) -> int:
    """The agent `agent_id` connected, its machine started at `boot_time` (None: it did not
    say): the runs waiting for a restart that ended before it get their check queued."""
    waiting = connection.execute(
        select(script_runs)
        .join(commands, commands.c.id == script_runs.c.command_id)
        .where(commands.c.agent_id == agent_id)
        .where(script_runs.c.verification == VerificationState.AFTER_RESTART.value)
        .with_for_update()
    ).all()
    queued = 0
    for row in waiting:
        run = load_command(connection, row.command_id)
        if boot_time is not None and run.finished_at is not None and boot_time <= run.finished_at:
            continue  # the same boot as the run: not restarted yet
        checks = checks_to_verify(_manifest_of(connection, row), row.finding)
        check_id = queue_check(connection, run, checks, now, wakes)
        detail: dict[str, object] = {"checks": _planned(checks), "verify_command_id": check_id}
        _store(connection, run.id, VerificationState.PENDING, detail, verify_command_id=check_id)
        _audit(audited, connection, run, VerificationState.PENDING, detail)
        queued += 1
    return queued


def _outcomes(
    checks: Sequence[str],
    before: Sequence[diagnostics_pb2.Finding],
    after: Sequence[diagnostics_pb2.Finding],
) -> list[CheckOutcome]:
    was = {finding.check: finding for finding in before}
    now = {finding.check: finding for finding in after}
    return [
        CheckOutcome(
            check=check,
            before=int(was[check].severity) if check in was else None,
            after=int(now[check].severity) if check in now else None,
            summary=now[check].summary if check in now else "",
        )
        for check in checks
    ]


def _verdict(outcomes: Sequence[CheckOutcome]) -> tuple[VerificationState, str]:
    still = [
        o.check for o in outcomes if o.after is not None and o.after > diagnostics_pb2.SEVERITY_OK
    ]
    if still:
        return VerificationState.NOT_CLEARED, f"still failing: {', '.join(still)}"
    missing = [o.check for o in outcomes if o.after is None]
    if missing:
        return (
            VerificationState.UNVERIFIED,
            f"no finding for {', '.join(missing)}: the machine could not collect what it reads",
        )
    return VerificationState.CLEARED, ""


_SEVERITY_WORDS: dict[int, str] = {
    diagnostics_pb2.SEVERITY_OK: "ok",
    diagnostics_pb2.SEVERITY_WARNING: "warning",
    diagnostics_pb2.SEVERITY_CRITICAL: "critical",
}


def severity_word(severity: int | None) -> str:
    return "unknown" if severity is None else _SEVERITY_WORDS.get(severity, "unknown")


def _checks_text(outcomes: Sequence[CheckOutcome]) -> str:
    return "; ".join(
        f"{o.check} {severity_word(o.before)} -> {severity_word(o.after)}" for o in outcomes
    )


def _findings_before(
    connection: Connection, snapshot_id: int | None
) -> list[diagnostics_pb2.Finding]:
    if snapshot_id is None:
        return []
    payloads = connection.execute(
        select(findings.c.payload)
        .where(findings.c.snapshot_id == snapshot_id)
        .order_by(findings.c.position)
    ).scalars()
    return [diagnostics_pb2.Finding.FromString(payload) for payload in payloads]


def record_check(
    audited: AuditedWrites, *, notify: bool = False, rating_url: str = ""
) -> Callable[[Connection, CommandRecord, int, Sequence[diagnostics_pb2.Finding], datetime], bool]:
    """`record` as the diagnostics' verify_check hook: whether the diagnostic verified a run;
    `notify`: a ticket the run resolves mails its requester, as a technician's resolve does
    (with the rating link when the server has a web listener at `rating_url`)."""

    def verify_check(
        connection: Connection,
        check: CommandRecord,
        snapshot_id: int,
        found: Sequence[diagnostics_pb2.Finding],
        at: datetime,
    ) -> bool:
        verified = record(
            audited,
            connection,
            check,
            snapshot_id,
            found,
            now=at,
            notify=notify,
            rating_url=rating_url,
        )
        return verified is not None

    return verify_check


def record(
    audited: AuditedWrites,
    connection: Connection,
    check: CommandRecord,
    snapshot_id: int,
    found: Sequence[diagnostics_pb2.Finding],
    *,
    now: datetime,
    notify: bool = False,
    rating_url: str = "",
) -> Verification | None:
    """`check` (a diagnostic that just succeeded: its snapshot `snapshot_id`, its findings
    `found`) as the verification of the run that queued it; None when no run did."""
    row = connection.execute(
        select(script_runs).where(script_runs.c.verify_command_id == check.id).with_for_update()
    ).first()
    if row is None or row.verification != VerificationState.PENDING.value:
        return None
    run = load_command(connection, row.command_id)
    checks = checks_to_verify(_manifest_of(connection, row), row.finding)
    before = _findings_before(connection, row.snapshot_before_id)
    outcomes = _outcomes(checks, before, found)
    state, reason = _verdict(outcomes)
    detail: dict[str, object] = {
        "reason": reason,
        "checks": [dataclasses.asdict(o) for o in outcomes],
        "checks_text": _checks_text(outcomes),
        "snapshot_id": snapshot_id,
        "verify_command_id": check.id,
    }
    resolved = False
    if run.ticket_id is not None:
        body = f"run {run.id[:8]} ({row.script_id} {row.script_version}): {state.value}"
        body += f" ({_checks_text(outcomes)})" if outcomes else ""
        if reason:
            body += f"; {reason}"
        if state is VerificationState.NOT_CLEARED:
            body += f"; to hand it over: sonde ticket escalate {run.ticket_id} --reason TEXT"
        append_event(
            connection,
            run.ticket_id,
            TicketEventKind.VERIFIED,
            run.requested_by,
            now,
            body=body,
            snapshot_id=snapshot_id,
            command_id=run.id,
        )
        if state is VerificationState.CLEARED and row.resolve_if_cleared:
            resolved = _resolve(
                connection, run, row, outcomes, now, notify=notify, rating_url=rating_url
            )
    detail["resolved_ticket"] = resolved
    _store(connection, run.id, state, detail, verified_at=now)
    _audit(audited, connection, run, state, detail)
    stored = connection.execute(select(script_runs).where(script_runs.c.command_id == run.id))
    return verification_of(stored.one()._asdict())


def _resolve(
    connection: Connection,
    run: CommandRecord,
    row: AnyRow,
    outcomes: Sequence[CheckOutcome],
    now: datetime,
    *,
    notify: bool,
    rating_url: str,
) -> bool:
    """Resolve the run's ticket with it, as its requester would, when a checked finding was
    raised before the run, the ticket is still open and the requester may still resolve it;
    False (the timeline says why) otherwise."""
    assert run.ticket_id is not None
    ticket = load_ticket(connection, run.ticket_id, lock=True)
    why_not = ""
    if outcomes and all(o.before == diagnostics_pb2.SEVERITY_OK for o in outcomes):
        checks = ", ".join(o.check for o in outcomes)
        why_not = f"{checks} was already ok before the run, so the run cleared nothing"
    elif not ticket.status.is_open:
        why_not = f"the ticket is {ticket.status.value} already"
    elif ticket.level is TicketLevel.L2 and not _may(
        connection, run.requested_by, Permission.TICKETS_RESOLVE_ESCALATED
    ):
        why_not = f"the ticket was escalated to L2, which {run.requested_by} may not resolve"
    if why_not:
        append_event(
            connection,
            run.ticket_id,
            TicketEventKind.COMMENT,
            "server",
            now,
            body=f"--resolve-if-cleared: not resolved, {why_not}",
        )
        return False
    checks = ", ".join(o.check for o in outcomes)
    resolution = (
        f"Fixed by run {run.id[:8]} of {row.script_id} {row.script_version}: {checks} cleared "
        "when checked again."
    )
    resolved = resolve_in(
        connection,
        run.requested_by,
        ticket,
        resolution,
        now,
        outcome=TicketOutcome.FIXED,  # the time spent is the technician's to log
    )
    if notify:
        link = ask_in(connection, resolved, now, rating_url)
        queue_to_requester(
            connection, "resolved", resolved, now, resolution=resolution, rating_link=link
        )
    ask_on_workstation_in(connection, resolved, now)
    return True


def _may(connection: Connection, user: str, permission: Permission) -> bool:
    """Whether `user` may, by their role now; a user since removed may not."""
    try:
        return user_role(connection, user).may(permission)
    except (NotFound, ValueError):  # removed, or a role this server does not know
        return False


def give_up(audited: AuditedWrites, connection: Connection, now: datetime) -> int:
    """Verifications that can no longer come end `unverified`, saying why: the check's
    diagnostic ended without a snapshot, or the machine did not restart within RESTART_WAIT."""
    pending = connection.execute(
        select(script_runs.c.command_id, commands.c.state, commands.c.failure_reason)
        .join(commands, commands.c.id == script_runs.c.verify_command_id)
        .where(script_runs.c.verification == VerificationState.PENDING.value)
        .where(commands.c.state.in_([s.value for s in CommandState if s.final]))
    ).all()
    restart = connection.execute(
        select(script_runs.c.command_id)
        .join(commands, commands.c.id == script_runs.c.command_id)
        .where(script_runs.c.verification == VerificationState.AFTER_RESTART.value)
        .where(commands.c.finished_at <= now - RESTART_WAIT)
    ).all()
    reasons = {
        found.command_id: f"the check ended {found.state}: {found.failure_reason or 'no reason'}"
        for found in pending
        if found.state != CommandState.SUCCEEDED.value
    }
    for found in restart:
        reasons[found.command_id] = (
            f"the machine did not restart within {RESTART_WAIT.days} days of the run"
        )
    for command_id, reason in reasons.items():
        locked = connection.execute(
            select(script_runs.c.verification)
            .where(script_runs.c.command_id == command_id)
            .with_for_update()
        ).scalar()
        if locked not in (VerificationState.PENDING.value, VerificationState.AFTER_RESTART.value):
            continue  # another replica's upkeep got there first
        try:
            run = load_command(connection, command_id)
        except NotFound:
            continue
        detail: dict[str, object] = {"reason": reason}
        _store(connection, run.id, VerificationState.UNVERIFIED, detail, verified_at=now)
        _audit(audited, connection, run, VerificationState.UNVERIFIED, detail)
        if run.ticket_id is not None:
            append_event(
                connection,
                run.ticket_id,
                TicketEventKind.VERIFIED,
                run.requested_by,
                now,
                body=f"run {run.id[:8]}: unverified; {reason}",
                command_id=run.id,
            )
    return len(reasons)
