"""`sonde demo [--once] [--json]`: the whole system on this machine in about a minute.

A server and one agent run as real processes in a temporary folder; the demo enrolls the
agent, runs a diagnostic, opens a ticket with it and shows it. Then it prints the commands
to try and keeps running until Ctrl-C (or stops at once with --once). Either way the
processes are stopped and the folder deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from rich.text import Text

from sonde.server.console.context import Context
from sonde.server.console.demo_run import DemoRun, Step, StepFailed, tail
from sonde.server.console.errors import CliError
from sonde.server.console.inert import inert
from sonde.server.console.output import Output, message_json
from sonde.server.console.render import findings_table
from sonde.server.console.render_ticket import ticket_view

# While waiting for Ctrl-C, how often to check that both processes still run.
_WATCH_S = 0.5


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run a server and an agent locally and show a diagnostic on a ticket",
        description="Start sonde-server and sonde-agent in a temporary folder, enroll, run a "
        "diagnostic, open a ticket with it; then run until Ctrl-C.",
    )
    demo.add_argument("--once", action="store_true", help="stop and clean up after the steps")
    demo.set_defaults(handler=run_demo)


def _progress(out: Output) -> Any:
    def show(step: Step) -> None:
        mark = Text("✓ " if step.ok else "✗ ", style="green" if step.ok else "bold red")
        mark.append(step.name)
        mark.append(f"  {step.seconds:.1f}s", style="dim")
        if step.detail:
            mark.append(f"\n  {inert(step.detail)}", style="red")
        # People watch the steps; with --json they go to stderr so stdout stays one document.
        (out.errors if out.json_mode else out.console).print(mark)

    return show


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM stop the demo, so the cleanup below always runs.

    SIGINT is set explicitly: a shell starts background jobs with it ignored, and the demo
    must still stop on it.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(args: argparse.Namespace, ctx: Context) -> int:
    out = ctx.out
    folder = Path(tempfile.mkdtemp(prefix="sonde-demo-"))
    run = DemoRun(folder=folder, progress=_progress(out))
    ready = False
    try:
        with _stop_signals_interrupt():
            try:
                run.run_all()
            except StepFailed as failure:
                _report_failure(out, run, str(failure))
                return 1
            ready = True
            out.emit(demo_json(run))
            _show_result(out, run, once=args.once)
            if args.once:
                return 0
            return _watch(out, run)
    except KeyboardInterrupt:
        # Ctrl-C is how a running demo ends; during the steps it cuts the demo short.
        out.errors.print("stopping the demo and deleting its folder")
        return 0 if ready else 130
    finally:
        run.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _watch(out: Output, run: DemoRun) -> int:
    out.errors.print(Text("running: press Ctrl-C to stop and delete the demo", style="dim"))
    while True:
        dead = run.first_dead_process()
        if dead is not None:
            _report_failure(out, run, dead)
            return 1
        time.sleep(_WATCH_S)


def demo_json(run: DemoRun) -> dict[str, Any]:
    ticket = message_json(run.ticket.ticket)
    ticket["timeline"] = [message_json(event) for event in run.ticket.timeline]
    return {
        "agent": message_json(run.agent),
        "findings": [message_json(finding) for finding in run.snapshot.findings],
        "ticket": ticket,
        "snapshot_id": run.snapshot.summary.id,
        "fix": message_json(run.fix) if run.fix.command.id else None,
        "steps": [step.to_json() for step in run.steps],
        "console_address": run.console_address,
    }


def _report_failure(out: Output, run: DemoRun, reason: str) -> None:
    for name in ("server", "agent"):
        lines = tail(run.log_path(name))
        if lines:
            out.errors.print(Text(f"--- last lines of the {name} log ---", style="dim"))
            for line in lines:
                out.errors.print(Text(inert(line)))
    error = CliError("ABORTED", f"demo step failed: {reason}")
    if out.json_mode:
        out.emit({**error.to_json(), "steps": [step.to_json() for step in run.steps]})
    else:
        out.error(error)


def exports(run: DemoRun) -> list[str]:
    values = {
        "SONDE_SERVER": run.console_address,
        "SONDE_TOKEN": run.admin_token,
        "SONDE_CA": str(run.ca_file),
    }
    if sys.platform == "win32":
        return [f'$env:{name} = "{value}"' for name, value in values.items()]
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def _show_result(out: Output, run: DemoRun, *, once: bool) -> None:
    if out.json_mode:
        return
    ticket_id = run.ticket.ticket.id
    host = run.agent.hostname or run.agent.id
    out.show(Text(""), findings_table(run.snapshot.findings), Text(""), ticket_view(run.ticket))
    lines = [
        *([] if once else exports(run)),
        "sonde agents",
        f"sonde agent show {shlex.quote(host)}",
        f"sonde diag {shlex.quote(host)} --ticket {ticket_id}",
        f"sonde ticket show {ticket_id}",
        *([f"sonde runs show {run.fix.command.id[:12]}"] if run.fix.command.id else []),
        "sonde scripts stats",
        f'sonde ticket comment {ticket_id} "called the user back"',
        "sonde ticket list",
    ]
    heading = (
        "\nThis demo stops now (--once). Run `sonde demo` to keep it running, then try:"
        if once
        else "\nTry next, in another terminal:"
    )
    out.show(Text(heading, style="bold"))
    out.show_lines(*(Text(f"  {inert(line)}") for line in lines))
