"""The role table: l1, l2 and admin as named sets of permissions."""

from __future__ import annotations

import pytest

from sonde.server.domain.roles import ROLE_PERMISSIONS, Permission, Principal, Role, roles_with


def test_every_role_has_a_set_and_every_permission_belongs_to_some_role() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert set().union(*ROLE_PERMISSIONS.values()) == set(Permission)


def test_each_role_has_strictly_more_than_the_one_below() -> None:
    l1, l2, admin = (ROLE_PERMISSIONS[role] for role in (Role.L1, Role.L2, Role.ADMIN))
    assert l1 < l2 < admin


@pytest.mark.parametrize(
    "permission",
    [
        Permission.TICKETS_RESOLVE_ESCALATED,
        Permission.USERS_MANAGE,
        Permission.AGENTS_REVOKE,
        Permission.ENROLLMENT_MANAGE,
        Permission.AUDIT_READ,
    ],
)
def test_l1_lacks_what_is_beyond_first_line_work(permission: Permission) -> None:
    assert permission not in ROLE_PERMISSIONS[Role.L1]
    assert not Principal(1, "ann", Role.L1).may(permission)


def test_l2_resolves_escalated_tickets_but_administers_nothing() -> None:
    bob = Principal(2, "bob", Role.L2)
    assert bob.may(Permission.TICKETS_RESOLVE_ESCALATED)
    for permission in (Permission.USERS_MANAGE, Permission.AGENTS_REVOKE, Permission.AUDIT_READ):
        assert not bob.may(permission)


def test_first_line_work_is_open_to_every_role() -> None:
    for permission in (
        Permission.ACCOUNT_READ,
        Permission.DIAGNOSTICS_RUN,
        Permission.TICKETS_WORK,
        Permission.COMMANDS_READ,
        Permission.COMMANDS_CANCEL,
    ):
        assert roles_with(permission) == (Role.L1, Role.L2, Role.ADMIN)


def test_permission_names_are_dotted_and_roles_parse_from_their_labels() -> None:
    assert Permission("tickets.resolve_escalated") is Permission.TICKETS_RESOLVE_ESCALATED
    assert all(
        "." in permission.value and permission.value == permission.value.lower()
        for permission in Permission
    )
    assert roles_with(Permission.USERS_MANAGE) == (Role.ADMIN,)
    assert [Role.parse(role.label) for role in Role] == list(Role)
    with pytest.raises(ValueError, match="expected l1, l2 or admin"):
        Role.parse("root")
