"""How a script run reaches a machine without an agent, as stored with the run.

A run asked with `--ssh USER@HOST[:PORT]` (or `--winrm`) keeps its transport, login, host,
port and the credential's name (never a secret) in `agentless_runs`, written in the request's
transaction. The run is the server's to execute: `claim` moves it from queued to delivered
and names the replica that runs it, in one transaction, before anyone logs in, so that of two
servers sharing the database one runs it and the other sees it taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sonde.server.domain.agentless import agentless_id
from sonde.server.domain.agents import AgentRecord
from sonde.server.domain.commands import (
    CommandRecord,
    CommandState,
    check_transition,
    lock_command_record,
)
from sonde.server.errors import Conflict, InvalidArgument
from sonde.server.remote.host_keys import host_address
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.tables import agentless_runs, agents, commands


@dataclass(frozen=True)
class RunReach:
    """Where and as whom the server runs it: the target and the credential's name."""

    target: RemoteTarget
    credential_name: str = ""

    @property
    def label(self) -> str:
        return self.target.label


def check_machine(connection: Connection, agent: AgentRecord, reach: RunReach) -> None:
    """Refuse a run whose machine is not the one the target reaches: a host name that names
    another machine, an enrolled agent, or a machine reached over another transport."""
    row = connection.execute(
        select(agents.c.reached_by, agents.c.reach_address).where(agents.c.id == agent.id)
    ).one()
    target = reach.target
    address = host_address(target.host, target.port)
    if not row.reached_by:
        raise InvalidArgument(
            f"{agent.hostname} ({agent.id}) has an agent: run the script through it, "
            f"without --{target.transport.value}"
        )
    if agent.id != agentless_id(target):
        raise InvalidArgument(
            f"{agent.hostname} ({agent.id}) is reached at {row.reached_by}://"
            f"{row.reach_address}, not {target.transport.value}://{address}: name the "
            "machine and the address it is reached at"
        )


def insert_reach(connection: Connection, command_id: str, reach: RunReach) -> None:
    target = reach.target
    connection.execute(
        agentless_runs.insert().values(
            command_id=command_id,
            transport=target.transport.value,
            login=target.user,
            host=target.host,
            port=target.port,
            credential_name=reach.credential_name,
            claimed_by=None,
            claimed_at=None,
        )
    )


def reach_of(connection: Connection, command_id: str) -> RunReach | None:
    """The run's reach; None for a run on an agent."""
    row = connection.execute(
        select(agentless_runs).where(agentless_runs.c.command_id == command_id)
    ).first()
    if row is None:
        return None
    target = RemoteTarget(Transport(row.transport), row.login, row.host, row.port)
    return RunReach(target, row.credential_name)


def claim_command(connection: Connection, command_id: str, now: datetime) -> CommandRecord | None:
    """Take a queued command for the server to carry out itself (queued -> delivered); None
    when it is not queued, or past its expiry (the caller ends it)."""
    command = lock_command_record(connection, command_id)
    if command.state is not CommandState.QUEUED or command.expires_at <= now:
        return None
    check_transition(command.id, command.state, CommandState.DELIVERED)
    connection.execute(
        update(commands)
        .where(commands.c.id == command.id)
        .values(
            state=CommandState.DELIVERED.value,
            delivered_at=now,
            deliveries=command.deliveries + 1,
        )
    )
    return lock_command_record(connection, command_id)


def claim(
    connection: Connection, command_id: str, replica_id: str, now: datetime
) -> CommandRecord | None:
    """Take a queued run for this replica to run (delivered, claimed_by); None when it is
    not queued (another replica took it, it waits for approval, or it ended)."""
    taken = claim_command(connection, command_id, now)
    if taken is not None:
        connection.execute(
            update(agentless_runs)
            .where(agentless_runs.c.command_id == command_id)
            .values(claimed_by=replica_id, claimed_at=now)
        )
    return taken


def mark_running(connection: Connection, command_id: str, now: datetime) -> None:
    """Logged in, the script about to start: delivered -> running."""
    command = lock_command_record(connection, command_id)
    if command.state is not CommandState.DELIVERED:
        raise Conflict(f"run {command_id} is {command.state.value}; it does not start now")
    check_transition(command.id, command.state, CommandState.RUNNING)
    connection.execute(
        update(commands)
        .where(commands.c.id == command.id)
        .values(state=CommandState.RUNNING.value, started_at=now)
    )
