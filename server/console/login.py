"""`sonde login`, `sonde logout`, `sonde whoami`: who the CLI talks to, and as whom."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.text import Text

from sonde.server.console.client import ConsoleClient
from sonde.server.console.config import (
    Credentials,
    check_server_address,
    read_ca_file,
    remove_credentials,
    save_credentials,
)
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.inert import inert
from sonde.server.console.output import message_json
from sonde.server.console.render import role_label
from sonde.v1 import console_pb2


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    login = commands.add_parser(
        "login",
        parents=[common],
        help="check credentials with the server and save them",
        description="Check the token with the server (as `sonde whoami` does), then save "
        "server, token and CA to the config file (owner-only).",
    )
    login.add_argument("server", metavar="SERVER", help="the console address, HOST:PORT")
    login.add_argument("--token", required=True, help="your API token ('-' reads it from stdin)")
    login.add_argument(
        "--ca", required=True, type=Path, help="the server's CA certificate (pki/ca.crt)"
    )
    login.set_defaults(handler=run_login)

    logout = commands.add_parser(
        "logout", parents=[common], help="revoke the saved API token and forget it"
    )
    logout.set_defaults(handler=run_logout)

    whoami = commands.add_parser("whoami", parents=[common], help="show who you are logged in as")
    whoami.set_defaults(handler=run_whoami)


def _token(value: str) -> str:
    token = sys.stdin.readline().strip() if value == "-" else value.strip()
    if not token:
        raise CliError("INVALID_ARGUMENT", "the API token is empty")
    return token


def run_login(args: argparse.Namespace, ctx: Context) -> int:
    credentials = Credentials(
        server=check_server_address(args.server),
        token=_token(args.token),
        ca_pem=read_ca_file(args.ca),
    )
    with ConsoleClient(credentials) as client:
        try:
            response = client.call(client.stub.WhoAmI, console_pb2.WhoAmIRequest())
        except CliError as error:
            if error.code != "UNAUTHENTICATED" or "ask an admin" in error.message:
                raise  # disabled, revoked or expired accounts say so themselves
            # Not "log in again": this is the login. Nothing was saved.
            raise CliError(
                error.code,
                f"{credentials.server} refused this API token (mistyped, revoked, expired or "
                "for another server); nothing was saved: ask an admin for your token, or for "
                "a new one (`sonde users rotate NAME`)",
            ) from None
    path = save_credentials(credentials, ctx.config_path)
    ctx.out.emit({"server": credentials.server, "config": str(path), **message_json(response)})
    user = response.user
    ctx.out.done(
        f"logged in to {credentials.server} as {user.name} ({role_label(user.role)}); "
        f"saved to {path}"
    )
    return 0


def run_logout(args: argparse.Namespace, ctx: Context) -> int:
    """Revoke the saved API token on the server, then forget it here. If the server cannot
    revoke it, the credentials are still removed, and the exit status says the token lives on."""
    path = ctx.config_path
    revoked, why = False, ""
    if path.exists():
        try:
            client = ctx.client()
            client.call(client.stub.Logout, console_pb2.LogoutRequest())
            revoked = True
        except CliError as error:
            why = str(error)
        finally:
            ctx.close()
    removed = remove_credentials(path)
    ctx.out.emit({"config": str(path), "removed": removed, "token_revoked": revoked})
    if not removed:
        ctx.out.done(f"not logged in (no {path})")
        return 0
    if revoked:
        ctx.out.done(f"revoked the API token on the server and removed {path}")
        return 0
    ctx.out.done(
        f"removed {path}, but the server did not revoke the API token ({why}): it stays valid "
        "until an admin runs `sonde users rotate` for you"
    )
    return 1


def run_whoami(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.WhoAmI, console_pb2.WhoAmIRequest())
    line = Text(inert(response.user.name), style="bold")
    line.append(f" ({role_label(response.user.role)}) on {inert(client.server)}")
    if response.server_version:
        line.append(f", server {inert(response.server_version)}")
    ctx.out.result(response, line)
    return 0
