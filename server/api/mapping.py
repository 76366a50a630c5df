"""Domain records to sonde.v1 messages, and request enums back to domain words. Pure functions."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from sonde.server.domain.agents import AgentRecord
from sonde.server.domain.commands import CommandRecord, CommandState
from sonde.server.domain.diagnostics import SnapshotSummaryRecord, StoredSnapshotRecord
from sonde.server.domain.roles import Role
from sonde.server.domain.ticket_model import (
    TicketChannel,
    TicketEventRecord,
    TicketKind,
    TicketLevel,
    TicketOutcome,
    TicketPriority,
    TicketRecord,
    TicketStatus,
)
from sonde.server.domain.users import UserRecord
from sonde.server.errors import InvalidArgument
from sonde.v1 import console_pb2, diagnostics_pb2

E = TypeVar("E", bound=enum.Enum)


def _stamp(target: Timestamp, at: datetime | None) -> None:
    if at is not None:
        target.FromDatetime(at)


# -- enums: the proto name is PREFIX_ + the domain word in capitals --------------------------


def ticket_status(status: TicketStatus) -> console_pb2.TicketStatus.ValueType:
    return console_pb2.TicketStatus.Value(f"TICKET_STATUS_{status.value.upper()}")


def ticket_level(level: TicketLevel) -> console_pb2.TicketLevel.ValueType:
    return console_pb2.TicketLevel.Value(f"TICKET_LEVEL_{level.value.upper()}")


def ticket_priority(priority: TicketPriority) -> console_pb2.TicketPriority.ValueType:
    return console_pb2.TicketPriority.Value(f"TICKET_PRIORITY_{priority.value.upper()}")


def ticket_channel(channel: TicketChannel) -> console_pb2.TicketChannel.ValueType:
    return console_pb2.TicketChannel.Value(f"TICKET_CHANNEL_{channel.value.upper()}")


def role(value: Role) -> console_pb2.Role.ValueType:
    return console_pb2.Role.Value(f"ROLE_{value.name}")


def _from_proto(name: str, prefix: str, domain: type[E], what: str) -> E | None:
    """UNSPECIFIED -> None; an unknown number -> InvalidArgument."""
    if name == f"{prefix}_UNSPECIFIED":
        return None
    word = name.removeprefix(f"{prefix}_").lower()
    for member in domain:
        if str(member.value) == word or member.name.lower() == word:
            return member
    raise InvalidArgument(f"{name} is not a {what}")


def _name(enum_wrapper: object, number: int, what: str) -> str:
    try:
        return str(enum_wrapper.Name(number))  # type: ignore[attr-defined]
    except ValueError:
        raise InvalidArgument(f"{number} is not a valid {what}") from None


def status_from_proto(number: int) -> TicketStatus | None:
    name = _name(console_pb2.TicketStatus, number, "ticket status")
    return _from_proto(name, "TICKET_STATUS", TicketStatus, "ticket status")


def level_from_proto(number: int) -> TicketLevel | None:
    name = _name(console_pb2.TicketLevel, number, "ticket level")
    return _from_proto(name, "TICKET_LEVEL", TicketLevel, "ticket level")


def priority_from_proto(number: int) -> TicketPriority | None:
    name = _name(console_pb2.TicketPriority, number, "ticket priority")
    return _from_proto(name, "TICKET_PRIORITY", TicketPriority, "ticket priority")


def channel_from_proto(number: int) -> TicketChannel | None:
    name = _name(console_pb2.TicketChannel, number, "ticket channel")
    return _from_proto(name, "TICKET_CHANNEL", TicketChannel, "ticket channel")


def kind_from_proto(number: int) -> TicketKind | None:
    name = _name(console_pb2.TicketKind, number, "ticket kind")
    return _from_proto(name, "TICKET_KIND", TicketKind, "ticket kind")


def outcome_from_proto(number: int) -> TicketOutcome | None:
    name = _name(console_pb2.TicketOutcome, number, "ticket outcome")
    return _from_proto(name, "TICKET_OUTCOME", TicketOutcome, "ticket outcome")


def ticket_kind(kind: TicketKind) -> console_pb2.TicketKind.ValueType:
    return console_pb2.TicketKind.Value(f"TICKET_KIND_{kind.value.upper()}")


def ticket_outcome(outcome: TicketOutcome | None) -> console_pb2.TicketOutcome.ValueType:
    if outcome is None:
        return console_pb2.TICKET_OUTCOME_UNSPECIFIED
    return console_pb2.TicketOutcome.Value(f"TICKET_OUTCOME_{outcome.value.upper()}")


def role_from_proto(number: int) -> Role | None:
    name = _name(console_pb2.Role, number, "role")
    return _from_proto(name, "ROLE", Role, "role")


# -- records ---------------------------------------------------------------------------------


def user(record: UserRecord) -> console_pb2.User:
    message = console_pb2.User(name=record.name, role=role(record.role), email=record.email or "")
    _stamp(message.created_at, record.created_at)
    if record.disabled_at is not None:
        _stamp(message.disabled_at, record.disabled_at)
    if record.token_expires_at is not None:
        _stamp(message.token_expires_at, record.token_expires_at)
    return message


def agent(record: AgentRecord) -> console_pb2.Agent:
    message = console_pb2.Agent(
        id=record.id,
        hostname=record.hostname,
        platform=record.platform,
        os_name=record.os_name,
        os_version=record.os_version,
        agent_version=record.agent_version,
        online=record.online,
        revoked=record.revoked_at is not None,
        cpu_percent=record.cpu_percent,
        memory_percent=record.memory_percent,
        system_disk_percent=record.system_disk_percent,
        remote_address=record.remote_address,
    )
    _stamp(message.last_seen_at, record.last_seen_at)
    _stamp(message.enrolled_at, record.enrolled_at)
    _stamp(message.revoked_at, record.revoked_at)
    _stamp(message.online_since, record.online_since)
    _stamp(message.removed_at, record.removed_at)
    message.removed_by = record.removed_by
    message.reached_by = record.reached_by
    message.reach_address = record.reach_address
    return message


def snapshot_summary(record: SnapshotSummaryRecord) -> console_pb2.SnapshotSummary:
    message = console_pb2.SnapshotSummary(
        id=record.id,
        agent_id=record.agent_id,
        worst_severity=diagnostics_pb2.Severity.ValueType(record.worst_severity),
        finding_count=record.finding_count,
        ticket_id=record.ticket_id or 0,
        requested_by=record.requested_by,
        agent_hostname=record.agent_hostname,
        agent_removed=bool(record.agent_removed),
    )
    _stamp(message.collected_at, record.collected_at)
    _stamp(message.received_at, record.received_at)
    return message


def stored_snapshot(record: StoredSnapshotRecord) -> console_pb2.StoredSnapshot:
    return console_pb2.StoredSnapshot(
        summary=snapshot_summary(record.summary),
        snapshot=record.snapshot,
        findings=record.findings,
    )


def ticket(record: TicketRecord) -> console_pb2.Ticket:
    message = console_pb2.Ticket(
        id=record.id,
        title=record.title,
        description=record.description,
        channel=ticket_channel(record.channel),
        requester=record.requester,
        priority=ticket_priority(record.priority),
        level=ticket_level(record.level),
        status=ticket_status(record.status),
        assignee=record.assignee or "",
        agent_id=record.agent_id or "",
        agent_hostname=record.agent_hostname or "",
        agent_removed=record.agent_removed,
        created_by=record.created_by,
        resolution=record.resolution,
        kind=ticket_kind(record.kind),
        category=record.category or "",
        category_confirmed_by=record.category_confirmed_by or "",
        outcome=ticket_outcome(record.outcome),
        time_spent_s=record.time_spent_s,
        contract=record.contract,
        sla_policy_id=record.sla_policy_id or 0,
    )
    _stamp(message.created_at, record.created_at)
    _stamp(message.updated_at, record.updated_at)
    _stamp(message.response_due_at, record.response_due_at)
    _stamp(message.resolve_due_at, record.resolve_due_at)
    _stamp(message.resolved_at, record.resolved_at)
    _stamp(message.closed_at, record.closed_at)
    _stamp(message.response_risk_at, record.response_risk_at)
    _stamp(message.resolve_risk_at, record.resolve_risk_at)
    return message


def ticket_event(record: TicketEventRecord) -> console_pb2.TicketEvent:
    message = console_pb2.TicketEvent(
        id=record.id,
        kind=console_pb2.TicketEventKind.Value(f"TICKET_EVENT_KIND_{record.kind.value.upper()}"),
        actor=record.actor,
        body=record.body,
        snapshot_id=record.snapshot_id or 0,
        findings=record.findings,
        assignee=record.assignee or "",
        previous_assignee=record.previous_assignee or "",
    )
    _stamp(message.at, record.at)
    if record.snapshot is not None:
        message.snapshot.CopyFrom(snapshot_summary(record.snapshot))
    if record.from_status is not None:
        message.from_status = ticket_status(record.from_status)
    if record.to_status is not None:
        message.to_status = ticket_status(record.to_status)
    return message


def tickets(records: Sequence[TicketRecord]) -> list[console_pb2.Ticket]:
    return [ticket(record) for record in records]


def command(record: CommandRecord) -> console_pb2.Command:
    message = console_pb2.Command(
        id=record.id,
        agent_id=record.agent_id,
        agent_hostname=record.agent_hostname,
        kind=console_pb2.CommandKind.Value(f"COMMAND_KIND_{record.kind.value.upper()}"),
        state=command_state(record.state),
        ticket_id=record.ticket_id or 0,
        requested_by=record.requested_by,
        reason=record.reason,
        snapshot_id=record.snapshot_id or 0,
        cancelled_by=record.cancelled_by,
        deliveries=record.deliveries,
    )
    _stamp(message.created_at, record.created_at)
    _stamp(message.expires_at, record.expires_at)
    _stamp(message.delivered_at, record.delivered_at)
    _stamp(message.started_at, record.started_at)
    _stamp(message.finished_at, record.finished_at)
    return message


def command_state(state: CommandState) -> console_pb2.CommandState.ValueType:
    return console_pb2.CommandState.Value(f"COMMAND_STATE_{state.value.upper()}")


def command_state_from_proto(number: int) -> CommandState | None:
    name = _name(console_pb2.CommandState, number, "command state")
    return _from_proto(name, "COMMAND_STATE", CommandState, "command state")
