"""`sonde webhook add|list|rotate|remove`: the outbound webhooks every ticket event is POSTed to
(docs/webhooks.md). The shared secret is made by the server and shown once, by `add` and by
`rotate`; an admin's own comes from SONDE_WEBHOOK_SECRET, never from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.text import Text

from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_time, has_time, text
from sonde.server.console.secret_options import refuse_secret_options
from sonde.server.console.users import seconds_between
from sonde.v1 import console_pb2

SECRET_VARIABLE = "SONDE_WEBHOOK_SECRET"  # noqa: S105 (the variable's name)
MAX_OVERLAP_S = 7 * 86400  # as the server refuses (server/webhooks/endpoints.py MAX_OVERLAP)
MAX_CA_FILE_BYTES = 64 * 1024


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    webhook = commands.add_parser(
        "webhook",
        parents=[common],
        help="outbound webhooks on ticket events (admin)",
        description="Every ticket event POSTed, in order and signed, to the helpdesk tools "
        "a team already runs (docs/webhooks.md).",
    )
    webhook.set_defaults(handler=run_list)
    verbs = webhook.add_subparsers(dest="webhook_command", metavar="{add,list,rotate,remove}")
    add = verbs.add_parser(
        "add",
        parents=[common],
        help="send every ticket event from now on to an https URL",
        description="The server makes the shared secret and shows it this once (or takes "
        f"yours from {SECRET_VARIABLE}); the receiver checks each POST's signature with it.",
    )
    add.add_argument("url", metavar="URL", help="https://HOST[:PORT]/PATH")
    add.add_argument(
        "--events",
        default="",
        help="the event kinds to send, comma-separated (opened,comment,resolved,...); all by "
        "default",
    )
    add.add_argument(
        "--ca",
        type=Path,
        help="the PEM CA file the receiver's certificate chains to (default: the system's CAs)",
    )
    refuse_secret_options(add, f"set {SECRET_VARIABLE}, or let the server make the secret")
    add.set_defaults(handler=run_add)
    listed = verbs.add_parser("list", parents=[common], help="the webhooks and their delivery")
    listed.set_defaults(handler=run_list)
    rotate = verbs.add_parser(
        "rotate",
        parents=[common],
        help="give a webhook a new secret; the old one signs beside it for a while",
        description="The server makes the new secret and shows it this once (or takes yours "
        f"from {SECRET_VARIABLE}). Until the overlap ends each POST carries two signatures, "
        "the new secret's and the old one's: switch the receiver to the new secret meanwhile.",
    )
    rotate.add_argument("id", metavar="ID")
    rotate.add_argument(
        "--overlap",
        type=overlap_seconds,
        default=None,
        metavar="DURATION",
        help="how long the old secret still signs, 0 to 7d (default 24h; 0: it stops at once)",
    )
    refuse_secret_options(rotate, f"set {SECRET_VARIABLE}, or let the server make the secret")
    rotate.set_defaults(handler=run_rotate)
    remove = verbs.add_parser("remove", parents=[common], help="stop sending to a webhook")
    remove.add_argument("id", metavar="ID")
    remove.set_defaults(handler=run_remove)


def overlap_seconds(value: str) -> int:
    return seconds_between(value, shortest_s=0, longest_s=MAX_OVERLAP_S, bounds="0 and 7d")


def _read_ca(path: Path) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CA_FILE_BYTES + 1)
    except OSError as error:
        raise CliError("INVALID_ARGUMENT", f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_CA_FILE_BYTES:
        raise CliError("INVALID_ARGUMENT", f"{path} is larger than a CA file (64 KiB at most)")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise CliError("INVALID_ARGUMENT", f"{path} is not a PEM file (text)") from None


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    request = console_pb2.AddWebhookRequest(
        url=args.url,
        events=[kind.strip() for kind in args.events.split(",") if kind.strip()],
        ca_pem=_read_ca(args.ca) if args.ca is not None else "",
        secret=ctx.env.get(SECRET_VARIABLE, ""),
    )
    client = ctx.client()
    response = client.call(client.stub.AddWebhook, request)
    ctx.out.emit_message(response)
    added = response.webhook
    kinds = ", ".join(added.events) or "every event"
    ctx.out.done(f"webhook {added.id} sends {kinds} to {added.url}")
    if request.secret:
        ctx.out.done(f"its secret is the one in {SECRET_VARIABLE}")
    else:
        ctx.out.done(
            f"its secret, shown this once (the receiver verifies each POST with it): "
            f"{response.secret}"
        )
    return 0


def _state(hook: console_pb2.Webhook) -> Text:
    if hook.failures:
        retry = (
            f", retry {format_time(hook.next_attempt_at)}" if has_time(hook.next_attempt_at) else ""
        )
        return Text(f"{hook.failures} failed in a row{retry}", style="red")
    return Text("ok", style="green")


def webhooks_table(hooks: list[console_pb2.Webhook]) -> ListTable:
    table = ListTable(
        "Webhooks",
        [
            Column("id"),
            Column("url", Give.WRAP),
            Column("events", Give.WRAP, optional=True),
            Column("sent"),
            Column("waiting"),
            Column("state", Give.WRAP),
            Column("last sent", optional=True),
        ],
    )
    for hook in hooks:
        notes = []
        if hook.last_error:
            notes.append(f"last error {format_time(hook.last_error_at)}: {hook.last_error}")
        if has_time(hook.previous_secret_until):
            until = format_time(hook.previous_secret_until)
            notes.append(f"the previous secret signs too until {until}")
        error = "; ".join(notes)
        table.add_row(
            hook.id,
            text(hook.url),
            text(", ".join(hook.events) or "all"),
            str(hook.delivered),
            str(hook.pending),
            _state(hook),
            format_time(hook.last_success_at) if has_time(hook.last_success_at) else "-",
            detail=Text(error, style="dim") if error else None,
        )
    return table


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.ListWebhooks, console_pb2.ListWebhooksRequest())
    if not response.webhooks and not ctx.out.json_mode:
        ctx.out.done("no webhooks are set up: add one with `sonde webhook add https://HOST/PATH`")
        return 0
    ctx.out.result(response, webhooks_table(list(response.webhooks)))
    return 0


def run_remove(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.RemoveWebhook, console_pb2.RemoveWebhookRequest(id=args.id))
    ctx.out.emit_message(response)
    removed = response.webhook
    ctx.out.done(
        f"removed webhook {removed.id} ({removed.url}) after {removed.delivered} events sent; "
        f"{removed.pending} were still waiting and are not sent"
    )
    return 0


def run_rotate(args: argparse.Namespace, ctx: Context) -> int:
    request = console_pb2.RotateWebhookSecretRequest(
        id=args.id, secret=ctx.env.get(SECRET_VARIABLE, "")
    )
    if args.overlap is not None:
        request.overlap_s = args.overlap
    client = ctx.client()
    response = client.call(client.stub.RotateWebhookSecret, request)
    ctx.out.emit_message(response)
    hook = response.webhook
    if has_time(hook.previous_secret_until):
        until = format_time(hook.previous_secret_until)
        ctx.out.done(
            f"webhook {hook.id} ({hook.url}) has a new secret; the old one still signs each "
            f"POST beside it until {until}: switch the receiver to the new one before then"
        )
    else:
        ctx.out.done(
            f"webhook {hook.id} ({hook.url}) has a new secret; the old one no longer signs"
        )
    if request.secret:
        ctx.out.done(f"its new secret is the one in {SECRET_VARIABLE}")
    else:
        ctx.out.done(f"its new secret, shown this once: {response.secret}")
    return 0
