"""`sonde diag AGENT [--ticket N] [--timeout S]`: a live diagnostic during the call."""

from __future__ import annotations

import argparse
import contextlib
import time

import grpc
from rich.text import Text

from sonde.server.console.client import diag_deadline
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.render import findings_table, inert, key_facts, snapshot_line
from sonde.v1 import console_pb2

# How often the spinner line refreshes while the agent collects.
_SPINNER_TICK_S = 0.1


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    diag = commands.add_parser(
        "diag",
        parents=[common],
        help="run a full diagnostic on an agent now",
        description="Ask the agent for a snapshot, store it with its findings (linked to "
        "--ticket when given) and show the findings, critical first, and the key facts.",
    )
    diag.add_argument("agent", metavar="AGENT", help="id, host name or unambiguous prefix")
    diag.add_argument("--ticket", type=int, default=0, metavar="N", help="link to ticket N")
    diag.add_argument(
        "--timeout",
        type=int,
        default=0,
        metavar="S",
        help="seconds the agent gets (default: the server's)",
    )
    diag.set_defaults(handler=run_diag)


def run_diag(args: argparse.Namespace, ctx: Context) -> int:
    if args.timeout < 0 or args.timeout > 3600:
        raise CliError("INVALID_ARGUMENT", f"--timeout {args.timeout}: expected 1 to 3600 seconds")
    if args.ticket < 0:
        raise CliError("INVALID_ARGUMENT", f"--ticket {args.ticket}: a ticket number is positive")
    client = ctx.client()
    request = console_pb2.RunDiagnosticsRequest(
        agent=args.agent, ticket_id=args.ticket, timeout_s=args.timeout
    )
    future = client.start(
        client.stub.RunDiagnostics, request, deadline_s=diag_deadline(args.timeout)
    )
    if not ctx.out.json_mode and ctx.out.errors.is_terminal:
        started = time.monotonic()
        with ctx.out.errors.status("") as status:
            # Waiting on the call itself, a tick at a time, so the line shows elapsed time.
            while not future.done():
                elapsed = time.monotonic() - started
                status.update(Text(f"collecting from {inert(args.agent)}... {elapsed:.1f}s"))
                with contextlib.suppress(grpc.FutureTimeoutError):
                    future.exception(timeout=_SPINNER_TICK_S)
    response = client.result(future)
    stored = response.snapshot
    heading = Text("Diagnostic ", style="bold")
    heading.append_text(snapshot_line(stored.summary))
    ctx.out.result(response, heading, findings_table(stored.findings), key_facts(stored.snapshot))
    return 0
