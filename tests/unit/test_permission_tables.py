"""Every console method has a permission, and the docs' role tables say what the code says.

The refusals themselves are tested end to end in tests/e2e/test_security.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf.descriptor import ServiceDescriptor

from sonde.server.api.auth import METHOD_PERMISSIONS, OPEN_METHODS
from sonde.server.domain.roles import ROLE_PERMISSIONS, Permission, Role
from sonde.v1 import agent_pb2, console_pb2, enrollment_pb2

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = console_pb2.DESCRIPTOR.services_by_name["ConsoleService"]


def paths(service: ServiceDescriptor) -> set[str]:
    return {f"/{service.full_name}/{method.name}" for method in service.methods}


def test_every_console_method_in_the_descriptors_has_a_permission_and_nothing_else_does() -> None:
    console_paths = paths(CONSOLE)
    missing = sorted(console_paths - set(METHOD_PERMISSIONS))
    assert not missing, f"add these to METHOD_PERMISSIONS in server/api/auth.py: {missing}"
    assert set(METHOD_PERMISSIONS) <= console_paths, "METHOD_PERMISSIONS names unknown methods"


def test_only_enrollment_is_open_and_the_agent_service_is_neither_open_nor_permitted() -> None:
    enrollment = enrollment_pb2.DESCRIPTOR.services_by_name["EnrollmentService"]
    agent = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
    assert paths(enrollment) <= OPEN_METHODS
    agent_paths = paths(agent)
    assert not agent_paths & (OPEN_METHODS | set(METHOD_PERMISSIONS))
    assert not OPEN_METHODS & set(METHOD_PERMISSIONS)


# -- the docs ---------------------------------------------------------------------------------

MATRIX_ROW = re.compile(r"^\| `([a-z_.]+)` \| (.+) \| (yes|no) \| (yes|no) \| (yes|no) \|$", re.M)
ROLE_ROW = re.compile(r"^\| `(l1|l2|admin)` \| (.+) \|$", re.M)
DOTTED = re.compile(r"`([a-z_]+\.[a-z_.]+)`")


def test_the_security_doc_has_one_row_per_permission_matching_both_tables() -> None:
    rows = MATRIX_ROW.findall((ROOT / "docs" / "security.md").read_text())
    assert sorted(row[0] for row in rows) == sorted(Permission)
    for name, allows, *marks in rows:
        permission = Permission(name)
        documented = {role for role, mark in zip(Role, marks, strict=True) if mark == "yes"}
        assert documented == {r for r in Role if permission in ROLE_PERMISSIONS[r]}, name
        methods = {m.name for m in CONSOLE.methods if re.search(rf"`{m.name}`", allows) is not None}
        needing = {
            path.rsplit("/", 1)[1] for path, p in METHOD_PERMISSIONS.items() if p is permission
        }
        assert methods == needing, name


@pytest.mark.parametrize("doc", ["README.md", "docs/tickets.md"])
def test_the_role_table_in_the_docs_matches_role_permissions(doc: str) -> None:
    rows = ROLE_ROW.findall((ROOT / doc).read_text())
    assert [label for label, _ in rows] == [role.label for role in Role], doc
    held: set[Permission] = set()
    previous = ""
    for label, cell in rows:
        if not cell.startswith(f"all of `{previous}`'s"):
            held = set()
        held |= {Permission(name) for name in DOTTED.findall(cell)}
        assert held == ROLE_PERMISSIONS[Role.parse(label)], (doc, label)
        previous = label
