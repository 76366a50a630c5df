"""The helpdesk's words for a ticket: statuses, levels, priorities, channels, timeline events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # diagnostics.py imports this module for TicketEventKind
    from sonde.server.domain.diagnostics import SnapshotSummaryRecord
    from sonde.v1 import diagnostics_pb2


class TicketStatus(enum.StrEnum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting"  # on the requester or a third party
    RESOLVED = "resolved"  # fix delivered; closes for good, or reopens if it did not hold
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self in (TicketStatus.NEW, TicketStatus.IN_PROGRESS, TicketStatus.WAITING)


class TicketLevel(enum.StrEnum):
    L1 = "l1"
    L2 = "l2"


class TicketPriority(enum.StrEnum):
    P1 = "p1"  # critical: business stopped
    P2 = "p2"  # high: one person stopped
    P3 = "p3"  # normal
    P4 = "p4"  # low


class TicketChannel(enum.StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    WEB_FORM = "web_form"
    AGENT = "agent"  # the agent reported it itself
    MONITORING = "monitoring"
    WORKSTATION = "workstation"  # its user asked from it: `sonde-agent help`


class TicketKind(enum.StrEnum):
    """What the requester asks for: something broken, or something new (ITIL's two)."""

    INCIDENT = "incident"  # something stopped working: "I can't print"
    SERVICE_REQUEST = "service_request"  # something asked for: "install Visio", "a new badge"


class TicketOutcome(enum.StrEnum):
    """How a ticket was resolved (its resolution category), for closure and reports."""

    FIXED = "fixed"  # the cause removed
    WORKAROUND = "workaround"  # the user can work; the cause stays
    NO_FAULT_FOUND = "no_fault_found"
    USER_GUIDANCE = "user_guidance"  # explained or trained: nothing was broken
    DONE = "done"  # a service request delivered
    HARDWARE_REPLACED = "hardware_replaced"
    THIRD_PARTY = "third_party"  # handed to a vendor or another team, who fixed it
    DUPLICATE = "duplicate"
    CANCELLED = "cancelled"  # the requester withdrew it


class TicketEventKind(enum.StrEnum):
    OPENED = "opened"
    COMMENT = "comment"
    ASSIGNED = "assigned"
    ESCALATED = "escalated"
    DIAGNOSTIC = "diagnostic"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    STATUS_CHANGED = "status_changed"
    WAITING = "waiting"  # on the requester: the body says what for
    RESUMED = "resumed"  # back to the status it had before it waited
    SCRIPT_RUN = "script_run"  # a run asked for the ticket: command_id names it
    RUN_ENDED = "run_ended"  # its result stored: exit code and output on the run
    VERIFIED = "verified"  # its verify checks collected again, or given up on: the body says
    CATEGORIZED = "categorized"  # kind and category set, confirmed or corrected: the body says
    TAKEN = "taken"  # a technician took it from the queue
    HANDED_BACK = "handed_back"  # L2 gave it back to L1, with a note
    TIME_LOGGED = "time_logged"  # time spent on it added: the body says how much and on what
    SLA_AT_RISK = "sla_at_risk"  # a clock passed its at-risk share: the body says what was done
    SLA_BREACHED = "sla_breached"  # a clock passed its due time
    RATED = "rated"  # the requester rated the answer (satisfaction.py): body says n/5, comment


@dataclass(frozen=True)
class TicketRecord:
    id: int
    title: str
    description: str
    channel: TicketChannel
    requester: str
    priority: TicketPriority
    level: TicketLevel
    status: TicketStatus
    assignee: str | None
    agent_id: str | None
    agent_hostname: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    response_due_at: datetime
    resolve_due_at: datetime
    first_response_at: datetime | None
    resolution: str
    resolved_at: datetime | None
    closed_at: datetime | None
    agent_removed: bool = False  # its machine was retired (`sonde agents remove`)
    kind: TicketKind = TicketKind.INCIDENT
    category: str | None = None  # a path of the admin's tree, "printing/spooler"
    category_confirmed_by: str | None = None  # the L2 who confirmed or corrected it
    outcome: TicketOutcome | None = None  # set on resolve
    time_spent_s: int = 0  # the helpdesk's time on it, logged on resolve or with `ticket time`
    contract: str = ""  # the customer group whose SLA policy applies ("" the default)
    sla_policy_id: int | None = None  # the policy its due times came from (None: wall clock)
    response_risk_at: datetime | None = None  # when each clock turns at risk
    resolve_risk_at: datetime | None = None


@dataclass(frozen=True)
class TicketEventRecord:
    id: int
    ticket_id: int
    kind: TicketEventKind
    actor: str
    at: datetime
    body: str = ""
    from_status: TicketStatus | None = None
    to_status: TicketStatus | None = None
    assignee: str | None = None
    previous_assignee: str | None = None  # for ASSIGNED, ESCALATED: who had it before
    snapshot_id: int | None = None
    snapshot: SnapshotSummaryRecord | None = None  # for DIAGNOSTIC
    findings: tuple[diagnostics_pb2.Finding, ...] = ()  # for DIAGNOSTIC
    command_id: str | None = None  # for SCRIPT_RUN, RUN_ENDED, VERIFIED: the run
