"""`sonde run`, `sonde runs`, `sonde approve`, `sonde reject`: catalog scripts run on agents.

sonde run AGENT SCRIPT [--param NAME=VALUE ...] [--version X.Y.Z] [--ticket N] [--expires 24h]
          [--dry-run] [--finding CHECK] [--resolve-if-cleared] [--wait]
          [--ssh USER@HOST[:PORT] | --winrm USER@HOST[:PORT]] [--credential NAME]
sonde runs [--agent A] [--ticket N] [--state S ...]
sonde runs show RUN [--follow]
sonde runs cancel RUN [--reason TEXT]
sonde approve RUN
sonde reject RUN --reason TEXT

Who may run what is the script's risk (docs/remediation.md, "Runs: tiers, approvals,
dispatch"); the server refuses with what would allow it.
"""

from __future__ import annotations

import argparse
import contextlib
import time

from rich.table import Table
from rich.text import Text

from sonde.server.console.agents import AGENT_HELP
from sonde.server.console.arguments import page_limit, ticket_number
from sonde.server.console.commands import _state as command_state
from sonde.server.console.context import Context
from sonde.server.console.diag import diag_expiry
from sonde.server.console.errors import CliError
from sonde.server.console.inert import inert
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_time, has_time, text
from sonde.server.console.render_command import STATE_NAMES, machine, state_text
from sonde.server.console.render_verification import check_lines, verification_text
from sonde.v1 import console_pb2

FOLLOW_POLL_S = 0.5
VERIFY_WAIT_S = 120.0  # --wait waits this long for a run's verification after it ends
EXIT_NOT_DONE = 3  # still pending, queued or running when the command returned
_FINAL = {
    console_pb2.COMMAND_STATE_SUCCEEDED,
    console_pb2.COMMAND_STATE_FAILED,
    console_pb2.COMMAND_STATE_TIMED_OUT,
    console_pb2.COMMAND_STATE_CANCELLED,
    console_pb2.COMMAND_STATE_REFUSED,
    console_pb2.COMMAND_STATE_INTERRUPTED,
    console_pb2.COMMAND_STATE_EXPIRED,
    console_pb2.COMMAND_STATE_REJECTED,
}


def parameter(value: str) -> tuple[str, str]:
    """--param NAME=VALUE: the value is everything after the first '=', as typed."""
    name, equals, given = value.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=VALUE, like service_name=cups")
    return name.strip(), given


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run a catalog script on an agent (by its risk: a ticket, or another's approval)",
        description="Ask the agent to run a published catalog script with checked parameters. "
        "A low-risk script by an L1 needs --ticket (a ticket you work about that machine); a "
        "high-risk one waits until another person approves it (sonde approve RUN). With --ssh "
        "or --winrm the server runs it itself on a machine without an agent, under the same "
        "rules.",
    )
    run.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    run.add_argument("script", metavar="SCRIPT", help="the script id, like flush-dns-cache")
    run.add_argument(
        "--param",
        type=parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of the script's manifest (repeatable)",
    )
    run.add_argument("--version", default="", metavar="X.Y.Z", help="this version (newest)")
    run.add_argument("--ticket", type=ticket_number, default=0, metavar="N", help="ticket N")
    run.add_argument(
        "--expires",
        type=diag_expiry,
        default=0,
        metavar="DURATION",
        help="not started after this long, e.g. 2h (default 24h, at most 30d)",
    )
    run.add_argument("--dry-run", action="store_true", help="say what it would do, change nothing")
    run.add_argument(
        "--finding",
        default="",
        metavar="CHECK",
        help="the finding it is meant to fix, like disk.space: verified first",
    )
    add_closing_options(run)
    add_reach_options(run)
    run.set_defaults(handler=run_script)

    runs = commands.add_parser(
        "runs", parents=[common], help="script runs: pending approval, queued, running, ended"
    )
    runs.add_argument("--agent", default="", metavar="AGENT", help="only this agent's")
    runs.add_argument(
        "--ticket", type=ticket_number, default=0, metavar="N", help="only ticket N's"
    )
    runs.add_argument(
        "--state",
        type=command_state,
        action="append",
        default=[],
        metavar="STATE",
        help="only in this state (repeatable): " + ", ".join(sorted(STATE_NAMES)),
    )
    runs.add_argument("--limit", type=page_limit, default=100, metavar="N", help="at most N (100)")
    runs.set_defaults(handler=run_list)
    actions = runs.add_subparsers(dest="runs_action", metavar="{show,cancel}")
    show = actions.add_parser("show", parents=[common], help="one run, its output and exit code")
    show.add_argument("run", metavar="RUN", help="the run's id (or its start)")
    show.add_argument("--follow", action="store_true", help="print its output live until it ends")
    show.set_defaults(handler=run_show)
    cancel = actions.add_parser(
        "cancel", parents=[common], help="stop a run or keep it from running"
    )
    cancel.add_argument("run", metavar="RUN", help="the run's id (or its start)")
    cancel.add_argument("--reason", default="", metavar="TEXT", help="why (audited)")
    cancel.set_defaults(handler=run_cancel)

    approve = commands.add_parser(
        "approve", parents=[common], help="approve another person's high-risk run (scripts.approve)"
    )
    approve.add_argument("run", metavar="RUN", help="the run's id (or its start)")
    approve.set_defaults(handler=run_approve)
    reject = commands.add_parser(
        "reject", parents=[common], help="reject another person's high-risk run: it never runs"
    )
    reject.add_argument("run", metavar="RUN", help="the run's id (or its start)")
    reject.add_argument("--reason", required=True, metavar="TEXT", help="why (audited, shown)")
    reject.set_defaults(handler=run_reject)


def run_script(args: argparse.Namespace, ctx: Context) -> int:
    given: dict[str, str] = {}
    for name, value in args.param:
        if name in given:
            raise CliError("INVALID_ARGUMENT", f"--param {name} is given twice")
        given[name] = value
    client = ctx.client()
    request = console_pb2.RunScriptRequest(
        agent=args.agent,
        script_id=args.script,
        version=args.version,
        parameters=given,
        ticket_id=args.ticket,
        expires_in_s=args.expires,
        dry_run=args.dry_run,
        finding=args.finding,
        resolve_if_cleared=args.resolve_if_cleared,
        ssh=args.ssh,
        winrm=args.winrm,
        credential=args.credential,
    )
    response = client.call(client.stub.RunScript, request)
    run = response.run
    if not args.wait or run.command.state == console_pb2.COMMAND_STATE_PENDING_APPROVAL:
        ctx.out.result(response, run_line(run))
        return 0
    ctx.out.show(run_line(run))
    return follow(ctx, run.command.id)


def add_closing_options(parser: argparse.ArgumentParser) -> None:
    """--resolve-if-cleared and --wait, shared by `sonde run` and `sonde fix`."""
    parser.add_argument(
        "--resolve-if-cleared",
        action="store_true",
        help="resolve --ticket with the run once its verification clears the finding",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow its output until it ends, then its verification",
    )


def add_reach_options(parser: argparse.ArgumentParser) -> None:
    """--ssh, --winrm and --credential, shared by `sonde run` and `sonde fix`."""
    remote = parser.add_argument_group(
        "a machine without an agent (the server logs in and runs it; docs/agentless.md)"
    )
    remote.add_argument(
        "--ssh",
        metavar="USER@HOST[:PORT]",
        default="",
        help="run a bash or sh script over SSH; the host key must be trusted (sonde hosts trust)",
    )
    remote.add_argument(
        "--winrm",
        metavar="USER@HOST[:PORT]",
        default="",
        help="run a PowerShell script over WinRM as the host's settings say (sonde hosts winrm)",
    )
    remote.add_argument(
        "--credential",
        default="",
        metavar="NAME",
        help="the stored credential to log in with (default: the one for the host)",
    )


def run_line(run: console_pb2.ScriptRunInfo) -> Text:
    line = Text(f"Run {run.command.id} ", style="bold")
    line.append(inert(f"of {run.script_id} {run.script_version} on {machine(run.command)} "))
    if run.reached_by:
        line.append(inert(f"over {run.reached_by} "))
    line.append("is ")
    line.append_text(state_text(run.command.state))
    if run.command.state == console_pb2.COMMAND_STATE_PENDING_APPROVAL:
        line.append(f": another person with scripts.approve runs `sonde approve {run.command.id}`")
    elif run.command.reason:
        line.append(inert(f": {run.command.reason}"))
    return line


def reached(run: console_pb2.ScriptRunInfo) -> str:
    """ " (ssh)" after the machine of a run the server ran itself; "" for an agent's."""
    return f" ({run.reached_by.split(':', 1)[0]})" if run.reached_by else ""


def reached_text(run: console_pb2.ScriptRunInfo) -> str:
    how = f"{run.reached_by}, the server logged in"
    return how + (f" with the credential {run.credential}" if run.credential else "")


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListRunsRequest(
        agent=args.agent, ticket_id=args.ticket, states=args.state, limit=args.limit
    )
    response = client.call(client.stub.ListRuns, request)
    table = ListTable(
        "Script runs",
        [
            Column("run"),
            Column("script"),
            Column("machine", Give.WRAP),
            Column("state"),
            Column("by"),
            Column("approved by", optional=True),
            Column("ticket", optional=True),
            Column("exit", optional=True),
        ],
    )
    for run in response.runs:
        table.add_row(
            text(run.command.id[:12]),
            text(f"{run.script_id} {run.script_version}" + (" (dry run)" if run.dry_run else "")),
            text(machine(run.command) + reached(run)),
            state_text(run.command.state),
            text(run.command.requested_by),
            text(run.approved_by),
            Text(str(run.command.ticket_id) if run.command.ticket_id else ""),
            Text(str(run.exit_code) if run.ended else ""),
        )
    ctx.out.result(response, table)
    return 0


def run_detail(run: console_pb2.ScriptRunInfo) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    command = run.command
    rows: list[tuple[str, Text]] = [
        ("run", text(command.id)),
        ("script", text(f"{run.script_id} {run.script_version} ({run.risk} risk)")),
        ("machine", text(machine(command))),
        *([("reached by", text(reached_text(run)))] if run.reached_by else []),
        ("state", state_text(command.state)),
        ("asked by", text(command.requested_by)),
    ]
    if run.approved_by:
        rows.append(("approved by", text(f"{run.approved_by} at {format_time(run.approved_at)}")))
    if run.rejected_by:
        rows.append(("rejected by", text(run.rejected_by)))
    if has_time(run.approval_due_at) and not run.approved_by:
        rows.append(("approval due", text(format_time(run.approval_due_at))))
    if command.ticket_id:
        rows.append(("ticket", Text(str(command.ticket_id))))
    shown = ", ".join(f"{name}={value}" for name, value in sorted(run.parameters.items()))
    rows.append(("parameters", text(shown or "none") + Text(" (dry run)" if run.dry_run else "")))
    rows.append(("expires", text(format_time(command.expires_at))))
    if command.reason:
        rows.append(("reason", text(command.reason)))
    if run.ended:
        rows.append(("exit code", Text(str(run.exit_code))))
        rows.append(("duration", Text(f"{run.duration_ms / 1000:.1f} s")))
    if run.user_session:
        rows.append(("session", text(run.user_session)))
    if run.finding:
        rows.append(("fixes", text(run.finding)))
    if run.HasField("verification"):
        rows.append(("verification", verification_text(run.verification)))
        if (
            run.verification.state == console_pb2.VERIFICATION_STATE_NOT_CLEARED
            and command.ticket_id
        ):
            escalate = f"sonde ticket escalate {command.ticket_id} --reason TEXT"
            rows.append(("next", text(f"it did not fix it: {escalate}, or try another fix")))
        checks = check_lines(run.verification)
        if checks:
            rows.append(("checks", Text("\n").join(line[2:] for line in checks)))
        elif run.resolve_if_cleared:
            rows.append(("on clearing", text(f"resolve ticket {command.ticket_id}")))
    elif run.resolve_if_cleared:
        rows.append(("on clearing", text(f"resolve ticket {command.ticket_id}")))
    for label, value in rows:
        table.add_row(label, value)
    return table


def _output_text(run: console_pb2.ScriptRunInfo) -> list[Text]:
    lines: list[Text] = []
    for name, data, truncated, size in (
        ("stdout", run.stdout, run.stdout_truncated, run.stdout_bytes),
        ("stderr", run.stderr, run.stderr_truncated, run.stderr_bytes),
    ):
        if not data and not truncated:
            continue
        head = f"-- {name}" + (f" (kept {len(data)} of {size} bytes)" if truncated else "")
        lines.append(Text(head, style="bold"))
        lines += [text(line) for line in data.decode("utf-8", "replace").rstrip("\n").split("\n")]
    return lines


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    if args.follow:
        return follow(ctx, args.run)
    client = ctx.client()
    response = client.call(client.stub.GetRun, console_pb2.GetRunRequest(id=args.run))
    ctx.out.result(response, run_detail(response.run), *_output_text(response.run))
    return 0


def follow(ctx: Context, run_id: str) -> int:
    """Print the live output as it comes, then the stored result once its verification is
    in (VERIFY_WAIT_S at most); in JSON, only the end."""
    client = ctx.client()
    offset = 0
    while True:
        response = client.call(
            client.stub.GetRun, console_pb2.GetRunRequest(id=run_id, live_offset=offset)
        )
        if response.live_output and not ctx.out.json_mode:
            live = response.live_output.decode("utf-8", "replace")
            # Each line made inert (no escape sequences, no markup), the line breaks kept.
            ctx.out.stdout.write("\n".join(inert(line) for line in live.split("\n")))
            ctx.out.stdout.flush()
        offset = response.live_bytes
        if response.run.command.state in _FINAL:
            break
        time.sleep(FOLLOW_POLL_S)
    if response.live_dropped and not ctx.out.json_mode:
        ctx.out.show(Text(f"({response.live_dropped} bytes more than the live view keeps)"))
    if response.run.verification.state == console_pb2.VERIFICATION_STATE_PENDING:
        verified = _wait_verification(ctx, run_id)
        if verified is not None:
            response.run.verification.CopyFrom(verified.run.verification)
    if offset and not ctx.out.json_mode:
        response.run.ClearField("stdout")  # shown live already: the detail says how it ended
        response.run.ClearField("stderr")
    ctx.out.result(response, run_detail(response.run), *_output_text(response.run))
    return 0 if response.run.command.state == console_pb2.COMMAND_STATE_SUCCEEDED else 1


def _wait_verification(ctx: Context, run_id: str) -> console_pb2.GetRunResponse | None:
    """The run once its verify checks are in, a live line meanwhile; None if they take
    longer than VERIFY_WAIT_S (the agent went away: `sonde runs show` tells later)."""
    client = ctx.client()
    deadline = time.monotonic() + VERIFY_WAIT_S
    with contextlib.ExitStack() as stack:
        status = None
        if not ctx.out.json_mode and ctx.out.errors.is_terminal:
            status = stack.enter_context(ctx.out.errors.status(""))
        while time.monotonic() < deadline:
            response = client.call(client.stub.GetRun, console_pb2.GetRunRequest(id=run_id))
            if response.run.verification.state != console_pb2.VERIFICATION_STATE_PENDING:
                return response
            if status is not None:
                checks = ", ".join(check.check for check in response.run.verification.checks)
                status.update(Text(f"checking {checks} again on the machine..."))
            time.sleep(FOLLOW_POLL_S)
    return None


def run_cancel(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.CancelRunRequest(id=args.run, reason=args.reason)
    response = client.call(client.stub.CancelRun, request)
    ctx.out.result(response, run_line(response.run))
    return 0


def run_approve(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.ApproveRun, console_pb2.ApproveRunRequest(id=args.run))
    ctx.out.result(response, run_line(response.run))
    return 0


def run_reject(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.RejectRunRequest(id=args.run, reason=args.reason)
    response = client.call(client.stub.RejectRun, request)
    ctx.out.result(response, run_line(response.run))
    return 0
