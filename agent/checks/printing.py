"""print.stuck_jobs: print jobs in error or waiting too long, and a spooler that is not
running while printers are installed."""

from __future__ import annotations

from datetime import timedelta

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, duration, finding
from sonde.v1 import diagnostics_pb2

_STUCK_STATES = ("error", "blocked", "paperout", "offline", "usermintervention")
_NAMED_IN_SUMMARY = 2


def _stuck(
    job: diagnostics_pb2.PrintJob, snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> bool:
    status = job.status.lower().replace(" ", "")
    if any(state in status for state in _STUCK_STATES):
        return True
    if not job.HasField("submitted_at") or not snapshot.HasField("collected_at"):
        return False
    waited = snapshot.collected_at.ToDatetime() - job.submitted_at.ToDatetime()
    return waited >= timedelta(minutes=ctx.thresholds.print_job_stuck_minutes)


def print_stuck_jobs(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("printing"):
        return None
    printing = snapshot.printing
    fix = fix_for("print.stuck_jobs", snapshot)
    evidence: dict[str, object] = {
        "spooler": printing.spooler_state or "unknown",
        "printers": len(printing.printers),
        "jobs": len(printing.jobs),
    }
    if printing.spooler_state not in ("", "running") and printing.printers:
        summary = (
            f"The Print Spooler service is {printing.spooler_state}: nothing can be printed "
            f"on the {len(printing.printers)} printers installed."
        )
        return finding("print.stuck_jobs", CRITICAL, summary, evidence, fix)
    stuck = [job for job in printing.jobs if _stuck(job, snapshot, ctx)]
    for job in stuck:
        age = ""
        if job.HasField("submitted_at") and snapshot.HasField("collected_at"):
            seconds = (
                snapshot.collected_at.ToDatetime() - job.submitted_at.ToDatetime()
            ).total_seconds()
            age = f", waiting {duration(max(seconds, 0))}"
        evidence[f"{job.printer} job {job.job_id}"] = f"{job.document} ({job.status}{age})"
    if not stuck:
        return finding("print.stuck_jobs", OK, "No print job is stuck.", evidence)
    severity = WARNING
    if len(stuck) >= ctx.thresholds.print_stuck_jobs_critical_count:
        severity = CRITICAL
    printers = list(dict.fromkeys(job.printer for job in stuck))
    where = ", ".join(printers[:_NAMED_IN_SUMMARY])
    if len(printers) > _NAMED_IN_SUMMARY:
        where += f" and {len(printers) - _NAMED_IN_SUMMARY} more"
    plural = "job is" if len(stuck) == 1 else "jobs are"
    summary = (
        f"{len(stuck)} print {plural} stuck on {where}: restarting the spooler usually "
        "frees the queue."
    )
    return finding("print.stuck_jobs", severity, summary, evidence, fix)
