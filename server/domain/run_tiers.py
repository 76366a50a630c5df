"""Who may ask for a run, by the script's risk (docs/remediation.md, "What the server checks
when a run is asked"): each refusal says what would allow it."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from sonde.catalog.manifest import Risk
from sonde.server.domain.roles import Permission, Principal, roles_with
from sonde.server.domain.ticket_model import TicketStatus
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.errors import PermissionDenied


def roles_text(permission: Permission) -> str:
    return ", ".join(role.label for role in roles_with(permission))


def check_tier(
    connection: Connection,
    principal: Principal,
    risk: Risk,
    ticket_id: int | None,
    agent: tuple[str, str],
) -> None:
    """Refused, saying what would allow it, when `principal` may not ask for this run on
    `agent` (its id and name)."""
    agent_id, hostname = agent
    if risk is Risk.LOW:
        if principal.may(Permission.SCRIPTS_RUN_MEDIUM):
            return
        if not principal.may(Permission.SCRIPTS_RUN_LOW):
            raise PermissionDenied(
                f"a low-risk script needs {Permission.SCRIPTS_RUN_LOW} "
                f"(roles {roles_text(Permission.SCRIPTS_RUN_LOW)})"
            )
        if ticket_id is None:
            raise PermissionDenied(
                f"a low-risk script runs on a machine of a ticket you work: give --ticket N "
                f"(a ticket assigned to you about {hostname}), or ask someone with "
                f"{Permission.SCRIPTS_RUN_MEDIUM}"
            )
        ticket = load_ticket(connection, ticket_id)
        if ticket.assignee != principal.name:
            raise PermissionDenied(
                f"ticket {ticket_id} is assigned to {ticket.assignee or 'nobody'}, not you: "
                f"take it (sonde tickets assign {ticket_id} --to {principal.name}) to run "
                "low-risk scripts for it"
            )
        if ticket.status is TicketStatus.CLOSED:
            raise PermissionDenied(f"ticket {ticket_id} is closed: reopen it first")
        if ticket.agent_id != agent_id:
            raise PermissionDenied(
                f"ticket {ticket_id} is not about {hostname} ({agent_id}): link it to this "
                "machine, or use a ticket about it"
            )
    elif risk is Risk.MEDIUM:
        if not principal.may(Permission.SCRIPTS_RUN_MEDIUM):
            raise PermissionDenied(
                f"a medium-risk script needs {Permission.SCRIPTS_RUN_MEDIUM} "
                f"(roles {roles_text(Permission.SCRIPTS_RUN_MEDIUM)}): escalate the ticket"
            )
    elif not (
        principal.may(Permission.SCRIPTS_RUN_HIGH) or principal.may(Permission.SCRIPTS_RUN_MEDIUM)
    ):
        raise PermissionDenied(
            f"a high-risk script needs {Permission.SCRIPTS_RUN_HIGH} or "
            f"{Permission.SCRIPTS_RUN_MEDIUM} (roles {roles_text(Permission.SCRIPTS_RUN_MEDIUM)}), "
            "then another person's approval: escalate the ticket"
        )
