"""services.failed: services that should be running and are not."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding
from sonde.v1 import diagnostics_pb2

_NAMED_IN_SUMMARY = 3


def services_failed(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("services"):
        return None
    failed = list(snapshot.services.failed)
    count = len(failed)
    severity = OK
    if count:
        severity = WARNING
    if count >= ctx.thresholds.failed_services_critical_count:
        severity = CRITICAL
    evidence = {s.name: f"{s.state} ({s.detail})" if s.detail else s.state for s in failed}
    if not count:
        return finding(
            "services.failed", OK, "No service has failed.", {"manager": snapshot.services.manager}
        )
    names = ", ".join(s.display_name or s.name for s in failed[:_NAMED_IN_SUMMARY])
    more = f" and {count - _NAMED_IN_SUMMARY} more" if count > _NAMED_IN_SUMMARY else ""
    plural = "service has" if count == 1 else "services have"
    summary = f"{count} {plural} failed or stopped unexpectedly: {names}{more}."
    fix = fix_for("services.failed", snapshot)
    return finding("services.failed", severity, summary, evidence, fix)
