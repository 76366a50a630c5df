"""`sonde diag AGENT`: a full diagnostic now, or queued until the agent connects.

With --ssh USER@HOST[:PORT] the server logs in to a machine without an agent, with the stored
credential for the host (or, with --ask-password, a password given for this connection alone),
to a host whose key was trusted (`sonde hosts trust`), collects there and stores the snapshot
as an agent's (docs/agentless.md, "SSH"). --winrm USER@HOST does
the same over WinRM, as the host's settings say (`sonde hosts winrm`), running the agent's
collect.ps1 there.

An online agent's result is shown as soon as it arrives. An offline agent's diagnostic is
queued (it expires after --expires, 24 h by default) and the command says when it will expire
and which ticket it will land on; --wait waits for it, --no-queue refuses instead.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
import time

import grpc
from rich.text import Text

from sonde.server.console.agents import AGENT_HELP
from sonde.server.console.arguments import ticket_number
from sonde.server.console.client import diag_deadline
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.inert import inert
from sonde.server.console.render import findings_table, key_facts, snapshot_line
from sonde.server.console.render_collection import collected_by_line
from sonde.server.console.render_command import OPEN_STATES, machine, queued_line, state_label
from sonde.server.console.render_fixes import fix_hints
from sonde.server.console.render_processes import top_processes
from sonde.server.console.secret_options import refuse_secret_options
from sonde.server.console.users import seconds_between
from sonde.v1 import console_pb2

# How often the spinner line refreshes while the agent collects.
_SPINNER_TICK_S = 0.1
MAX_EXPIRY_S = 30 * 86400
MAX_TIMEOUT_S = 600


def diag_timeout(value: str) -> int:
    """--timeout: 1 to 600 seconds, refused at parse time like every other number."""
    if not value.isdigit() or not 0 < int(value) <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"{value!r}: expected 1 to {MAX_TIMEOUT_S} seconds")
    return int(value)


def diag_expiry(value: str) -> int:
    """--expires: how long a queued diagnostic waits, 1 s to 30 days."""
    return seconds_between(value, shortest_s=1, longest_s=MAX_EXPIRY_S, bounds="1s and 30d")


EXIT_NOT_DONE = 3  # queued or still on its way: not a failure, not a result either
# How long the server may take over SSH or WinRM: login, then collection.
AGENTLESS_TIMEOUT_S = 120
# A password for one agentless login, read instead of a prompt (never a command-line option).
PASSWORD_VARIABLE = "SONDE_REMOTE_PASSWORD"  # noqa: S105 (the variable's name)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    diag = commands.add_parser(
        "diag",
        parents=[common],
        help="run a full diagnostic on an agent (queued while it is offline)",
        description="Ask the agent for a snapshot, store it with its findings (linked to "
        "--ticket when given) and show the findings, critical first, and the key facts. "
        "An offline agent gets it when it connects, until --expires.",
    )
    diag.add_argument(
        "agent", metavar="AGENT", help=AGENT_HELP + "; with --ssh or --winrm, the machine's name"
    )
    diag.add_argument(
        "--ticket", type=ticket_number, default=0, metavar="N", help="link to ticket N"
    )
    diag.add_argument(
        "--timeout",
        type=diag_timeout,
        default=0,
        metavar="S",
        help="seconds to wait for the result (default: the server's, 30)",
    )
    diag.add_argument(
        "--expires",
        type=diag_expiry,
        default=0,
        metavar="DURATION",
        help="how long a queued diagnostic waits for an offline agent, e.g. 2h (default 24h)",
    )
    remote = diag.add_argument_group(
        "a machine without an agent (the server logs in; docs/agentless.md)"
    )
    remote.add_argument(
        "--ssh",
        metavar="USER@HOST[:PORT]",
        default="",
        help="collect over SSH; the host key must be trusted (sonde hosts trust)",
    )
    remote.add_argument(
        "--winrm",
        metavar="USER@HOST[:PORT]",
        default="",
        help="collect over WinRM as the host's settings say (sonde hosts winrm); port 5986, "
        "or 5985 when they say plain HTTP",
    )
    remote.add_argument(
        "--credential",
        default="",
        metavar="NAME",
        help="the stored credential to log in with (default: the one for the host)",
    )
    remote.add_argument(
        "--ask-password",
        action="store_true",
        help=f"log in with a password given now instead of a stored credential: "
        f"{PASSWORD_VARIABLE} or a prompt that does not echo; used for this connection only, "
        "never stored",
    )
    refuse_secret_options(
        remote,
        f"use a stored credential (sonde credentials add), or --ask-password with "
        f"{PASSWORD_VARIABLE} or its prompt",
    )
    remote.add_argument(
        "--shell-only",
        action="store_true",
        help="shell commands only, even where python3 could run the agent's collectors",
    )
    when = diag.add_mutually_exclusive_group()
    when.add_argument(
        "--wait", action="store_true", help="wait for the result even if the agent is offline"
    )
    when.add_argument(
        "--no-queue",
        action="store_true",
        help="refuse at once when the agent is offline instead of queueing",
    )
    diag.set_defaults(handler=run_diag)


def run_diag(args: argparse.Namespace, ctx: Context) -> int:
    if args.ssh and args.winrm:
        raise CliError("INVALID_ARGUMENT", "give --ssh or --winrm, not both")
    if args.ssh or args.winrm:
        flag = "--ssh" if args.ssh else "--winrm"
        if args.wait or args.no_queue or args.expires:
            raise CliError(
                "INVALID_ARGUMENT",
                f"--wait, --no-queue and --expires are for an agent's queue; {flag} collects now",
            )
        if args.ask_password and args.credential:
            raise CliError("INVALID_ARGUMENT", "give --credential or --ask-password, not both")
        if args.winrm and args.shell_only:
            raise CliError("INVALID_ARGUMENT", "--shell-only is for --ssh: WinRM runs collect.ps1")
        return run_agentless_diag(args, ctx)
    if args.credential or args.shell_only or args.ask_password:
        raise CliError(
            "INVALID_ARGUMENT",
            "--credential, --ask-password and --shell-only go with --ssh "
            "(--credential and --ask-password: --winrm too)",
        )
    client = ctx.client()
    request = console_pb2.RunDiagnosticsRequest(
        agent=args.agent,
        ticket_id=args.ticket,
        timeout_s=args.timeout,
        expires_s=args.expires,
        no_queue=args.no_queue,
        wait_offline=args.wait,
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
    command = response.command
    if response.HasField("snapshot"):
        stored = response.snapshot
        heading = Text("Diagnostic ", style="bold")
        # The machine that answered, by the name it reports and the id it holds.
        heading.append_text(snapshot_line(stored.summary, machine(command)))
        ctx.out.result(
            response,
            heading,
            findings_table(stored.findings),
            *fix_hints(stored.findings, args.agent),
            *top_processes(stored.findings, stored.snapshot),
            key_facts(stored.snapshot),
        )
        return 0
    if command.state in OPEN_STATES:
        ctx.out.result(response, queued_line(command, response.agent_online))
        return 0 if not response.agent_online and not args.wait else EXIT_NOT_DONE
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
        return 1
    raise CliError(
        "FAILED_PRECONDITION",
        f"the diagnostic {command.id} for {machine(command)} ended {state_label(command.state)}: "
        f"{command.reason or 'no reason given'}",
    )


def one_time_password(ctx: Context, address: str) -> str:
    """The password for one login: SONDE_REMOTE_PASSWORD, or asked without echo."""
    given = ctx.env.get(PASSWORD_VARIABLE)
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise CliError(
            "INVALID_ARGUMENT",
            f"no terminal to ask for the password on: set {PASSWORD_VARIABLE}",
        )
    return getpass.getpass(f"password for {inert(address)}: ")


def run_agentless_diag(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    transport = (
        console_pb2.REMOTE_TRANSPORT_WINRM if args.winrm else console_pb2.REMOTE_TRANSPORT_SSH
    )
    address = args.winrm or args.ssh
    request = console_pb2.RunAgentlessDiagnosticsRequest(
        transport=transport,
        address=address,
        ticket_id=args.ticket,
        credential=args.credential,
        shell_only=args.shell_only,
        one_time_password=one_time_password(ctx, address) if args.ask_password else "",
    )
    future = client.start(
        client.stub.RunAgentlessDiagnostics,
        request,
        deadline_s=diag_deadline(args.timeout or AGENTLESS_TIMEOUT_S),
    )
    if not ctx.out.json_mode and ctx.out.errors.is_terminal:
        started = time.monotonic()
        with ctx.out.errors.status("") as status:
            while not future.done():
                elapsed = time.monotonic() - started
                status.update(Text(f"logging in to {inert(address)}... {elapsed:.1f}s"))
                with contextlib.suppress(grpc.FutureTimeoutError):
                    future.exception(timeout=_SPINNER_TICK_S)
    response = client.result(future)
    stored = response.snapshot
    heading = Text("Diagnostic ", style="bold")
    heading.append_text(snapshot_line(stored.summary, machine(response.command)))
    ctx.out.result(
        response,
        heading,
        collected_by_line(stored.snapshot, response.note),
        findings_table(stored.findings),
        *fix_hints(stored.findings, args.agent),
        *top_processes(stored.findings, stored.snapshot),
        key_facts(stored.snapshot),
    )
    return 0
