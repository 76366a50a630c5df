"""A run's verification and output on the terminal: `sonde runs show`, `sonde run --wait`,
`sonde fix` and the run events of a ticket's timeline share these lines."""

from __future__ import annotations

from rich.text import Text

from sonde.server.console.render import SEVERITY_STYLE, enum_label, severity_text, text
from sonde.v1 import console_pb2

TIMELINE_OUTPUT_LINES = 8
_STATE_STYLE = {
    console_pb2.VERIFICATION_STATE_CLEARED: "bold green",
    console_pb2.VERIFICATION_STATE_NOT_CLEARED: "bold red",
    console_pb2.VERIFICATION_STATE_UNVERIFIED: "yellow",
    console_pb2.VERIFICATION_STATE_PENDING: "cyan",
    console_pb2.VERIFICATION_STATE_AFTER_RESTART: "cyan",
}
_STATE_WORDS = {
    console_pb2.VERIFICATION_STATE_NONE: "nothing to verify",
    console_pb2.VERIFICATION_STATE_PENDING: "checking again",
    console_pb2.VERIFICATION_STATE_AFTER_RESTART: "checked once the machine restarts",
    console_pb2.VERIFICATION_STATE_NOT_CLEARED: "not cleared",
}


def verification_label(state: console_pb2.VerificationState.ValueType) -> str:
    return _STATE_WORDS.get(state) or enum_label(
        console_pb2.VerificationState.Name(state), "VERIFICATION_STATE_"
    )


def verification_text(verification: console_pb2.RunVerification) -> Text:
    """One line: the state, and why when it says."""
    line = Text(
        verification_label(verification.state), style=_STATE_STYLE.get(verification.state, "")
    )
    if verification.reason and verification.state != console_pb2.VERIFICATION_STATE_NOT_CLEARED:
        line.append_text(text(f": {verification.reason}"))
    if verification.resolved_ticket:
        line.append(", the ticket is resolved with it")
    return line


def check_lines(verification: console_pb2.RunVerification) -> list[Text]:
    """Each checked finding: its severity before the run -> after, and what it says now."""
    lines: list[Text] = []
    for check in verification.checks:
        if not check.seen_after and verification.state == console_pb2.VERIFICATION_STATE_PENDING:
            lines.append(text(f"  {check.check}", "dim"))
            continue
        line = Text("  ")
        line.append_text(
            severity_text(check.before) if check.seen_before else Text("unknown", style="dim")
        )
        line.append(" -> ")
        line.append_text(
            severity_text(check.after) if check.seen_after else Text("no finding", style="yellow")
        )
        line.append_text(text(f" {check.check}", "dim"))
        if check.summary:
            line.append_text(text(f": {check.summary}", SEVERITY_STYLE.get(check.after, "")))
        lines.append(line)
    return lines


def output_tail(run: console_pb2.ScriptRunInfo, count: int = TIMELINE_OUTPUT_LINES) -> list[Text]:
    """The last `count` lines the script printed (the timeline carries a tail only)."""
    lines: list[Text] = []
    for name, data, size in (
        ("output", run.stdout, run.stdout_bytes),
        ("errors", run.stderr, run.stderr_bytes),
    ):
        printed = data.decode("utf-8", "replace").rstrip("\n").split("\n") if data else []
        if not printed:
            continue
        shown = printed[-count:]
        cut = len(printed) > count or size > len(data)
        head = f"{name}, last {len(shown)} lines" if cut else name
        lines.append(text(f"  {head} (sonde runs show {run.command.id[:12]}):", "dim"))
        lines.extend(text(f"    {line}") for line in shown)
    return lines


def run_event_lines(event: console_pb2.TicketEvent) -> list[Text]:
    """Under a run's timeline events: who approved it, its output's tail, its checks."""
    if not event.HasField("run"):
        return []
    run = event.run
    if event.kind == console_pb2.TICKET_EVENT_KIND_SCRIPT_RUN and run.approved_by:
        return [text(f"approved by {run.approved_by}")]
    if event.kind == console_pb2.TICKET_EVENT_KIND_RUN_ENDED:
        return output_tail(run)
    if event.kind == console_pb2.TICKET_EVENT_KIND_VERIFIED and run.HasField("verification"):
        return check_lines(run.verification)
    return []
