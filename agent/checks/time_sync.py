"""time.sync: the computer takes its time from a real source, and did so recently. Unlike
system.clock_skew it needs no server: it reads the OS's own sync status."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, duration, finding
from sonde.v1 import diagnostics_pb2

DAY_S = 86400


def time_sync(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("time_sync"):
        return None
    sync = snapshot.time_sync
    limits = ctx.thresholds
    fix = fix_for("time.sync", snapshot)
    evidence: dict[str, object] = {
        "source": sync.source or "none",
        "last successful sync": sync.last_sync_text or "never",
        "stratum": sync.stratum,
        "time service": sync.service_state or "unknown",
    }
    if sync.offset_seconds:
        evidence["offset"] = f"{sync.offset_seconds:+.3f} s"
    if sync.service_state == "stopped":
        summary = "The Windows Time service is stopped: the clock is not kept in time."
        return finding("time.sync", WARNING, summary, evidence, fix)
    if not sync.synchronized:
        summary = (
            f"The clock is not synchronised (source: {sync.source or 'none'}): it drifts, and "
            "beyond 5 minutes domain sign-in (Kerberos) fails."
        )
        return finding("time.sync", WARNING, summary, evidence, fix)
    if not sync.HasField("last_sync_at") or not snapshot.HasField("collected_at"):
        summary = f"The clock takes its time from {sync.source}."
        return finding("time.sync", OK, summary, evidence)
    age = (snapshot.collected_at.ToDatetime() - sync.last_sync_at.ToDatetime()).total_seconds()
    severity = OK
    if age >= limits.time_sync_warning_days * DAY_S:
        severity = WARNING
    if age >= limits.time_sync_critical_days * DAY_S:
        severity = CRITICAL
    if severity == OK:
        summary = f"The clock synchronised with {sync.source} {duration(max(age, 0))} ago."
    else:
        summary = (
            f"The clock last synchronised {duration(age)} ago, with {sync.source}: "
            "the time source has not been reached since."
        )
    return finding("time.sync", severity, summary, evidence, fix)
