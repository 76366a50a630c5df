"""Admin commands: `sonde users add|list|disable|enable|role|email|rotate` (`user` works too) and
`sonde token create` (agent enrollment)."""

from __future__ import annotations

import argparse
import re

from rich.text import Text

from sonde.server.console.context import Context
from sonde.server.console.inert import inert
from sonde.server.console.render import format_time, role_label, users_table
from sonde.v1 import console_pb2

ROLES = {"l1": console_pb2.ROLE_L1, "l2": console_pb2.ROLE_L2, "admin": console_pb2.ROLE_ADMIN}
_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# An enrollment token's lifetime and uses, as the server allows them
# (server/domain/enrollment_tokens.py: MIN_TTL, MAX_TTL, MAX_USES), refused here at parse time.
MIN_TTL_S = 60
MAX_TTL_S = 30 * 86400
MAX_USES = 1000
# An API token's lifetime (server/domain/users.py: 1 minute to 3650 days).
MAX_TOKEN_LIFETIME_S = 3650 * 86400


def role(value: str) -> console_pb2.Role.ValueType:
    key = value.strip().lower()
    if key not in ROLES:
        raise argparse.ArgumentTypeError(f"unknown role {value!r}: expected l1, l2 or admin")
    return ROLES[key]


def seconds_between(value: str, *, shortest_s: int, longest_s: int, bounds: str) -> int:
    """'90s', '30m', '1h', '2d', '1w' or plain seconds, as seconds."""
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration: expected e.g. 30m, 1h, 2d or seconds"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not shortest_s <= seconds <= longest_s:
        raise argparse.ArgumentTypeError(f"{value!r}: expected between {bounds}")
    return seconds


def enrollment_lifetime(value: str) -> int:
    """An enrollment token's lifetime, in seconds."""
    return seconds_between(value, shortest_s=MIN_TTL_S, longest_s=MAX_TTL_S, bounds="1m and 30d")


def token_lifetime(value: str) -> int:
    """An API token's lifetime, in seconds."""
    return seconds_between(
        value, shortest_s=60, longest_s=MAX_TOKEN_LIFETIME_S, bounds="1m and 3650d"
    )


def uses(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= MAX_USES:
        raise argparse.ArgumentTypeError(f"--uses {value!r}: expected 1 to {MAX_USES}")
    return int(value)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    user = commands.add_parser(
        "users", aliases=["user"], parents=[common], help="technician accounts (admin)"
    )
    user_commands = user.add_subparsers(
        dest="user_command", metavar="{add,list,disable,enable,role,rotate}"
    )
    user_commands.required = True
    add = user_commands.add_parser(
        "add", parents=[common], help="create a user and print their API token once"
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", type=role, required=True, help="l1, l2 or admin")
    add.add_argument(
        "--expires", type=token_lifetime, default=0, help="the API token's lifetime, e.g. 90d"
    )
    add.set_defaults(handler=run_add)
    listed = user_commands.add_parser("list", parents=[common], help="list users")
    listed.set_defaults(handler=run_list)
    for verb, helped in (
        ("disable", "refuse every API token of NAME from now on"),
        ("enable", "accept NAME's API token again"),
    ):
        changed = user_commands.add_parser(verb, parents=[common], help=helped)
        changed.add_argument("name", metavar="NAME")
        changed.set_defaults(handler=run_disable if verb == "disable" else run_enable)
    role_change = user_commands.add_parser("role", parents=[common], help="give NAME a role")
    role_change.add_argument("name", metavar="NAME")
    role_change.add_argument("role", metavar="ROLE", type=role, help="l1, l2 or admin")
    role_change.set_defaults(handler=run_role)
    email = user_commands.add_parser(
        "email", parents=[common], help="where NAME is told of SLA risk and assignments"
    )
    email.add_argument("name", metavar="NAME")
    email.add_argument("email", metavar="ADDRESS", help='a mail address; "" takes it away')
    email.set_defaults(handler=run_email)
    rotate = user_commands.add_parser(
        "rotate", parents=[common], help="revoke NAME's API tokens and print a new one once"
    )
    rotate.add_argument("name", metavar="NAME")
    rotate.add_argument(
        "--expires", type=token_lifetime, default=0, help="the new token's lifetime, e.g. 90d"
    )
    rotate.set_defaults(handler=run_rotate)

    token = commands.add_parser("token", parents=[common], help="agent enrollment tokens (admin)")
    token_commands = token.add_subparsers(dest="token_command", metavar="{create}")
    token_commands.required = True
    create = token_commands.add_parser(
        "create", parents=[common], help="print one enrollment string for `sonde-agent enroll`"
    )
    create.add_argument("--uses", type=uses, default=1, help="how many agents may use it")
    create.add_argument(
        "--ttl", type=enrollment_lifetime, default=3600, help="lifetime, 1m to 30d (default 1h)"
    )
    create.set_defaults(handler=run_token_create)


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.CreateUserRequest(
        name=args.name, role=args.role, token_expires_in_s=args.expires
    )
    response = client.call(client.stub.CreateUser, request)
    _show_token(ctx, response, f"created {inert(response.user.name)}", response.user)
    return 0


def run_rotate(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.RotateUserTokenRequest(name=args.name, token_expires_in_s=args.expires)
    response = client.call(client.stub.RotateUserToken, request)
    done = f"revoked {inert(response.user.name)}'s API tokens"
    _show_token(ctx, response, done, response.user)
    return 0


def _show_token(
    ctx: Context,
    response: console_pb2.CreateUserResponse | console_pb2.RotateUserTokenResponse,
    done: str,
    user: console_pb2.User,
) -> None:
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
        return
    line = Text(f"{done} ({role_label(user.role)}). API token (shown once")
    if user.HasField("token_expires_at"):
        line.append(f", expires {format_time(user.token_expires_at)}")
    line.append("): ")
    line.append(inert(response.api_token), style="bold")
    ctx.out.show_lines(line)


def run_disable(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.DisableUser, console_pb2.DisableUserRequest(name=args.name))
    ctx.out.result(
        response, Text(f"disabled {inert(response.user.name)}: their API token is refused now")
    )
    return 0


def run_enable(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.EnableUser, console_pb2.EnableUserRequest(name=args.name))
    ctx.out.result(response, Text(f"enabled {inert(response.user.name)}"))
    return 0


def run_role(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.SetUserRoleRequest(name=args.name, role=args.role)
    response = client.call(client.stub.SetUserRole, request)
    line = f"{inert(response.user.name)} is now {role_label(response.user.role)}"
    ctx.out.result(response, Text(line))
    return 0


def run_email(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.SetUserEmailRequest(name=args.name, email=args.email.strip())
    response = client.call(client.stub.SetUserEmail, request)
    told = inert(response.user.email) if response.user.email else "nothing by mail"
    ctx.out.result(response, Text(f"{inert(response.user.name)} is told at {told}"))
    return 0


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.ListUsers, console_pb2.ListUsersRequest())
    ctx.out.result(response, users_table(response.users))
    return 0


def run_token_create(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.CreateEnrollmentTokenRequest(uses=args.uses, ttl_s=args.ttl)
    response = client.call(client.stub.CreateEnrollmentToken, request)
    note = Text(
        f"enrollment token for {response.uses} agent(s), expires "
        f"{format_time(response.expires_at)}; on the workstation run:",
        style="dim",
    )
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
    else:
        ctx.out.show_lines(note, Text(f"sonde-agent enroll {inert(response.enrollment)}"))
    return 0
