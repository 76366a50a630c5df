"""What a run asked for a ticket checks and writes about closing it: the finding it is meant to
fix, --resolve-if-cleared, and the lines it adds to the ticket's timeline."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from sonde.agent.checks.sources import CHECK_SOURCES
from sonde.catalog.manifest import Manifest
from sonde.server.domain.commands import CommandState
from sonde.server.domain.roles import Permission, Principal
from sonde.server.domain.run_verification import checks_to_verify
from sonde.server.domain.text import sanitized
from sonde.server.domain.ticket_model import TicketLevel
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.errors import InvalidArgument, PermissionDenied
from sonde.server.storage.tables import snapshots
from sonde.v1 import agent_pb2


def check_closing(
    connection: Connection,
    principal: Principal,
    manifest: Manifest,
    ticket_id: int | None,
    *,
    finding: str,
    resolve_if_cleared: bool,
    dry_run: bool,
) -> None:
    """Refused, saying why, when the finding is not one this script fixes, or when the run
    could not resolve its ticket (no ticket, nothing to verify, or a ticket the caller may
    not resolve)."""
    if finding and finding not in CHECK_SOURCES:
        raise InvalidArgument(
            f"{finding!r} is not a finding's check (one of {', '.join(sorted(CHECK_SOURCES))})"
        )
    if finding and finding not in manifest.fixes:
        fixes = ", ".join(manifest.fixes) or "no finding"
        raise InvalidArgument(f"{manifest.id} does not fix {finding} (it fixes {fixes})")
    if not resolve_if_cleared:
        return
    if dry_run:
        raise InvalidArgument("a dry run changes nothing, so it cannot resolve a ticket")
    if ticket_id is None:
        raise InvalidArgument("--resolve-if-cleared resolves a ticket: give --ticket N")
    if not checks_to_verify(manifest, finding):
        raise InvalidArgument(
            f"{manifest.id} {manifest.version} names no check to verify, so nothing can show "
            "that it cleared: resolve the ticket yourself once you have checked"
        )
    ticket = load_ticket(connection, ticket_id)
    if not ticket.status.is_open:
        raise InvalidArgument(f"ticket {ticket_id} is {ticket.status.value} already")
    if ticket.level is TicketLevel.L2 and not principal.may(Permission.TICKETS_RESOLVE_ESCALATED):
        raise PermissionDenied(
            f"ticket {ticket_id} is escalated to L2: you may run the fix, but not resolve the "
            "ticket with it (leave out --resolve-if-cleared)"
        )


_NEWEST_SNAPSHOT = (
    select(snapshots.c.id)
    .where(snapshots.c.agent_id == bindparam("agent_id"))
    .order_by(snapshots.c.received_at.desc(), snapshots.c.id.desc())
    .limit(1)
)


def newest_snapshot_id(connection: Connection, agent_id: str) -> int | None:
    """The agent's newest snapshot: what a verification compares against."""
    found = connection.execute(_NEWEST_SNAPSHOT, {"agent_id": agent_id}).scalar()
    return None if found is None else int(found)


def run_request_text(
    manifest: Manifest, shown: Mapping[str, str], dry_run: bool, needs_approval: bool
) -> str:
    """The timeline's line for a run asked: script, risk, parameters (secrets masked)."""
    text = f"{manifest.id} {manifest.version} ({manifest.risk.value} risk)"
    if shown:
        text += ": " + ", ".join(f"{name}={value}" for name, value in sorted(shown.items()))
    if dry_run:
        text += "; dry run"
    if needs_approval:
        text += "; waits for another person's approval"
    return text


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB"


def result_text(command_id: str, state: CommandState, outcome: agent_pb2.ScriptRun) -> str:
    """The timeline's line for a run's result: how it ended, its exit code, how much output."""
    text = f"run {command_id[:8]} {state.value}: exit code {outcome.exit_code}"
    text += f" after {outcome.duration_ms / 1000:.1f} s"
    printed = max(outcome.stdout_bytes, len(outcome.stdout))
    errors = max(outcome.stderr_bytes, len(outcome.stderr))
    text += f", {_size(printed)} of output"
    if errors:
        text += f" and {_size(errors)} of errors"
    if outcome.stdout_truncated or outcome.stderr_truncated:
        text += " (kept up to 1 MiB each)"
    if outcome.HasField("session"):
        text += "; " + session_text(outcome.session)
    return text


def session_text(session: agent_pb2.RunSession) -> str:
    """The user's session a run ran in, its user name as the agent sent it made inert."""
    user = sanitized(session.user, max_chars=120) or "an unnamed user"
    connection = sanitized(session.connection, max_chars=20) or "user"
    text = f"ran in {user}'s {connection} session {session.session_id}"
    return text + (" (screen locked)" if session.screen_locked else "")
