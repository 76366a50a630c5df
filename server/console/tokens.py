"""`sonde tokens [list]` and `sonde tokens revoke TOKEN`: the enrollment tokens an admin made
(`sonde token create` makes one). A token's secret is shown once, at creation, never here."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from sonde.server.console.context import Context
from sonde.server.console.render import enum_label, format_time, text
from sonde.v1 import console_pb2

_STATE_STYLE = {
    console_pb2.ENROLLMENT_TOKEN_STATE_ACTIVE: "green",
    console_pb2.ENROLLMENT_TOKEN_STATE_REVOKED: "red",
}


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    tokens = commands.add_parser(
        "tokens",
        parents=[common],
        help="list or revoke agent enrollment tokens (admin)",
        description="Tokens that can still enroll an agent; --all adds used-up, expired and "
        "revoked ones. Their secrets are never shown again.",
    )
    tokens.add_argument("--all", action="store_true", help="also used-up, expired and revoked")
    tokens.set_defaults(handler=run_list)
    token_commands = tokens.add_subparsers(dest="tokens_command", metavar="{list,revoke}")
    listed = token_commands.add_parser("list", parents=[common], help="list enrollment tokens")
    # SUPPRESS: `sonde tokens --all list` keeps the --all given before `list`.
    listed.add_argument(
        "--all",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also used-up, expired and revoked",
    )
    listed.set_defaults(handler=run_list)
    revoke = token_commands.add_parser(
        "revoke",
        parents=[common],
        help="refuse every enrollment with TOKEN from now on, on every server",
    )
    revoke.add_argument("token", metavar="TOKEN", help="the token's id, or its start")
    revoke.set_defaults(handler=run_revoke)


def state_label(state: console_pb2.EnrollmentTokenState.ValueType) -> str:
    return enum_label(console_pb2.EnrollmentTokenState.Name(state), "ENROLLMENT_TOKEN_STATE_")


def tokens_table(tokens: Sequence[console_pb2.EnrollmentToken]) -> Table:
    """One line a token at 80 columns: the day it was made (its time is in --json)."""
    table = Table(title="Enrollment tokens", title_justify="left", box=None, padding=(0, 1))
    # An id is copied into `sonde tokens revoke`: never wrapped or cut.
    table.add_column("id", no_wrap=True, min_width=16)
    table.add_column("state", no_wrap=True)
    table.add_column("uses left", justify="right", no_wrap=True)
    table.add_column("expires", no_wrap=True)
    table.add_column("made by")
    table.add_column("made", no_wrap=True)
    for token in tokens:
        table.add_row(
            text(token.id),
            Text(state_label(token.state), style=_STATE_STYLE.get(token.state, "dim")),
            f"{token.uses_left} of {token.uses_granted}",
            format_time(token.expires_at),
            text(token.created_by),
            format_time(token.created_at)[:10],
        )
    return table


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListEnrollmentTokensRequest(include_inactive=args.all)
    response = client.call(client.stub.ListEnrollmentTokens, request)
    if not response.tokens and not ctx.out.json_mode:
        ctx.out.done(
            ("no enrollment tokens" if args.all else "no enrollment token can enroll now")
            + ": make one with `sonde token create`"
            + ("" if args.all else " (--all shows used-up, expired and revoked ones)")
        )
        return 0
    ctx.out.result(response, tokens_table(response.tokens))
    return 0


def run_revoke(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.RevokeEnrollmentTokenRequest(token=args.token)
    response = client.call(client.stub.RevokeEnrollmentToken, request)
    ctx.out.emit_message(response)
    token = response.token
    ctx.out.done(
        f"revoked enrollment token {token.id} ({token.uses_left} of {token.uses_granted} uses "
        "left): every enrollment with it is refused from now on"
    )
    return 0
