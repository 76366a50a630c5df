"""What the CLI prints when the real server refuses a call names the `sonde` command, never the
RPC: every ConsoleService method (from the service descriptor), called through the CLI's own
client with an empty request as an L1 technician and as an admin."""

from __future__ import annotations

import re

import pytest
from google.protobuf.message_factory import GetMessageClass

from sonde.server.api.auth import METHOD_PERMISSIONS
from sonde.server.console.client import ConsoleClient
from sonde.server.console.command_names import COMMAND_OF_RPC
from sonde.server.console.config import Credentials
from sonde.server.console.errors import CliError
from sonde.server.domain.roles import Role, roles_with
from sonde.v1 import console_pb2
from tests.support.deployment import Deployment

CONSOLE = console_pb2.DESCRIPTOR.services_by_name["ConsoleService"]
# Logout last: it revokes the token the sweep is using.
METHODS = sorted(CONSOLE.methods, key=lambda method: (method.name == "Logout", method.name))
RPC_NAME = re.compile(r"\b(" + "|".join(method.name for method in CONSOLE.methods) + r")\b")


def what_the_cli_says(client: ConsoleClient, method_name: str) -> CliError | None:
    """The CliError an empty request to `method_name` ends in, or None when it is answered."""
    # From the descriptor, not console_pb2: some requests live in other files (deploy.proto).
    request_type = GetMessageClass(CONSOLE.methods_by_name[method_name].input_type)
    try:
        client.call(getattr(client.stub, method_name), request_type(), deadline_s=30)
    except CliError as error:
        return error
    return None


@pytest.mark.parametrize("role", [Role.L1, Role.ADMIN], ids=lambda role: role.label)
def test_every_refusal_names_the_command_not_the_rpc(shared_sonde: Deployment, role: Role) -> None:
    name = f"wording-{role.label}"
    token = shared_sonde.add_user(name, role.label)
    credentials = Credentials(
        shared_sonde.console_address, token, shared_sonde.ca_file.read_bytes()
    )
    refused_for_permission: list[str] = []
    with ConsoleClient(credentials) as client:
        for method in METHODS:
            error = what_the_cli_says(client, method.name)
            if error is None:
                continue
            assert RPC_NAME.search(error.message) is None, (method.name, error.message)
            permission = METHOD_PERMISSIONS[f"/{CONSOLE.full_name}/{method.name}"]
            if role.may(permission):
                assert error.code != "PERMISSION_DENIED" or "needs the" not in error.message
                continue
            holders = ", ".join(holder.label for holder in roles_with(permission))
            assert error.code == "PERMISSION_DENIED", (method.name, error.message)
            assert error.message == (
                f"`{COMMAND_OF_RPC[method.name]}` needs the {permission} permission "
                f"({holders}); {name} is {role.label}"
            )
            refused_for_permission.append(method.name)
    if role is Role.L1:
        # The admin-only methods, every one of them refused in the technician's words.
        assert sorted(refused_for_permission) == sorted(
            method.name
            for method in CONSOLE.methods
            if not role.may(METHOD_PERMISSIONS[f"/{CONSOLE.full_name}/{method.name}"])
        )
    else:
        assert refused_for_permission == []
