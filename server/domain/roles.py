"""Technician roles as named sets of permissions, and the principal an authenticated call runs as.

ROLE_PERMISSIONS is the one table of what each role may do. The auth layer checks each console
method's permission against it (server/api/auth.py, METHOD_PERMISSIONS), domain rules check the
finer ones (an L2 ticket is resolved or closed only with tickets.resolve_escalated), and the
security test derives every expected refusal from it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Role(enum.Enum):
    """A technician's role; what it allows is its set in ROLE_PERMISSIONS, not its rank."""

    L1 = 1
    L2 = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: expected l1, l2 or admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self]


class Permission(enum.StrEnum):
    """One thing a technician may do, named `area.verb`."""

    ACCOUNT_READ = "account.read"
    ACCOUNT_LOGOUT = "account.logout"
    AGENTS_READ = "agents.read"
    DIAGNOSTICS_RUN = "diagnostics.run"
    DIAGNOSTICS_READ = "diagnostics.read"
    COMMANDS_READ = "commands.read"
    COMMANDS_CANCEL = "commands.cancel"
    TICKETS_READ = "tickets.read"
    TICKETS_WORK = "tickets.work"
    # Resolve or close a ticket escalated to L2 (an L1 may still comment on it).
    TICKETS_RESOLVE_ESCALATED = "tickets.resolve_escalated"
    AGENTS_REVOKE = "agents.revoke"
    # Retire a machine: revoke it and take it out of the lists (its history stays).
    AGENTS_REMOVE = "agents.remove"
    USERS_MANAGE = "users.manage"
    ENROLLMENT_MANAGE = "enrollment.manage"
    AUDIT_READ = "audit.read"
    # The signed script catalog: list and show what is published; run a script of a risk
    # (checked by the risk of the script, in the domain); approve another's high-risk run;
    # publish a signed bundle.
    SCRIPTS_READ = "scripts.read"
    SCRIPTS_RUN_LOW = "scripts.run.low"
    SCRIPTS_RUN_MEDIUM = "scripts.run.medium"
    SCRIPTS_RUN_HIGH = "scripts.run.high"
    SCRIPTS_APPROVE = "scripts.approve"
    CATALOG_MANAGE = "catalog.manage"
    # Writing scripts: propose a new script or version (never sent to an agent), and review
    # another's proposal. Review is the admins' alone: it says a script may go to every
    # workstation at its risk, high included, which an l2 may not run.
    SCRIPTS_PROPOSE = "scripts.propose"
    CATALOG_REVIEW = "catalog.review"
    # The credentials agentless reach logs in with (never their secrets): list them; add and
    # remove them. Using one is checked by whoever connects (diagnostics.run, scripts.run.*).
    CREDENTIALS_READ = "credentials.read"
    CREDENTIALS_MANAGE = "credentials.manage"
    # The SSH host keys agentless reach trusts: list them; trust one by its fingerprint, or
    # forget a host's (a reinstalled machine). Trusting is an l2's: it says who the server
    # may send a credential to.
    HOSTS_READ = "hosts.read"
    HOSTS_TRUST = "hosts.trust"
    # Push install of the agent (`sonde deploy`): log in to hosts with stored credentials,
    # install, and enroll each with a one-time token: an admin's, as tokens are.
    AGENTS_DEPLOY = "agents.deploy"
    # The tree of request categories tickets are sorted by (ticket_categories.py).
    CATEGORIES_MANAGE = "categories.manage"
    # Writing and updating resolution procedures: Level 1's job as much as Level 2's.
    KB_EDIT = "kb.edit"
    # SLA: read the calendars, policies and the compliance report (L2 checks the quality of
    # the service); keep the calendars and policies (docs/sla.md).
    SLA_READ = "sla.read"
    SLA_MANAGE = "sla.manage"
    # Outbound webhooks (docs/webhooks.md): where every ticket event is POSTed, with a secret
    # that signs them; set up, listed and removed by an admin.
    WEBHOOKS_MANAGE = "webhooks.manage"
    # Monitoring: agent groups, their interval, collectors, clear rule and thresholds
    # (docs/monitoring.md); an admin's, since a low threshold opens tickets fleet-wide.
    MONITORING_MANAGE = "monitoring.manage"


_L1: frozenset[Permission] = frozenset(
    {
        Permission.ACCOUNT_READ,
        Permission.ACCOUNT_LOGOUT,
        Permission.AGENTS_READ,
        Permission.DIAGNOSTICS_RUN,
        Permission.DIAGNOSTICS_READ,
        Permission.COMMANDS_READ,
        Permission.COMMANDS_CANCEL,
        Permission.TICKETS_READ,
        Permission.TICKETS_WORK,
        Permission.SCRIPTS_READ,
        Permission.SCRIPTS_RUN_LOW,
        Permission.HOSTS_READ,
        Permission.KB_EDIT,
    }
)
_L2: frozenset[Permission] = _L1 | {
    Permission.TICKETS_RESOLVE_ESCALATED,
    Permission.SCRIPTS_RUN_MEDIUM,
    Permission.SCRIPTS_APPROVE,
    Permission.SCRIPTS_PROPOSE,
    Permission.CREDENTIALS_READ,
    Permission.HOSTS_TRUST,
    Permission.SLA_READ,
}
_ADMIN: frozenset[Permission] = _L2 | {
    Permission.SCRIPTS_RUN_HIGH,
    Permission.CATALOG_MANAGE,
    Permission.CATALOG_REVIEW,
    Permission.AGENTS_REVOKE,
    Permission.AGENTS_REMOVE,
    Permission.USERS_MANAGE,
    Permission.ENROLLMENT_MANAGE,
    Permission.AUDIT_READ,
    Permission.CREDENTIALS_MANAGE,
    Permission.AGENTS_DEPLOY,
    Permission.CATEGORIES_MANAGE,
    Permission.SLA_MANAGE,
    Permission.WEBHOOKS_MANAGE,
    Permission.MONITORING_MANAGE,
}

# The one table of what each role may do.
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {Role.L1: _L1, Role.L2: _L2, Role.ADMIN: _ADMIN}
)


def roles_with(permission: Permission) -> tuple[Role, ...]:
    """The roles that hold `permission`, in declaration order (for messages and docs)."""
    return tuple(role for role in Role if role.may(permission))


@dataclass(frozen=True)
class Principal:
    """Who is calling: a technician or admin identified by an API token."""

    user_id: int
    name: str
    role: Role
    peer: str = field(default="", compare=False)  # where this call came from, for the audit
    token_id: str = field(default="", compare=False)  # the API token's public id (logout)

    def may(self, permission: Permission) -> bool:
        return self.role.may(permission)
