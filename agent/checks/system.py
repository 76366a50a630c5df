"""system.uptime and system.clock_skew."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, duration, finding
from sonde.v1 import diagnostics_pb2


def system_uptime(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("system") or not snapshot.system.HasField("boot_time"):
        return None
    uptime = snapshot.system.uptime_seconds
    severity = OK
    if uptime >= ctx.thresholds.uptime_warning_s:
        severity = WARNING
    if uptime >= ctx.thresholds.uptime_critical_s:
        severity = CRITICAL
    evidence = {"uptime": duration(uptime), "booted": snapshot.system.boot_time.ToJsonString()}
    summary = f"This computer has been running for {duration(uptime)} without a restart"
    summary += "; restarting it often clears slowness and stuck updates." if severity != OK else "."
    return finding("system.uptime", severity, summary, evidence)


def system_clock_skew(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if ctx.reference_time is None or not snapshot.HasField("collected_at"):
        return None
    # The agent sent the snapshot when collection ended: compare that with the server's
    # receipt time (transit makes the agent look a little behind, never ahead).
    sent_at = snapshot.collected_at.ToDatetime(tzinfo=ctx.reference_time.tzinfo)
    sent_s = sent_at.timestamp() + snapshot.duration_ms / 1000
    skew = sent_s - ctx.reference_time.timestamp()
    size = abs(skew)
    severity = OK
    if size >= ctx.thresholds.clock_skew_warning_s:
        severity = WARNING
    if size >= ctx.thresholds.clock_skew_critical_s:
        severity = CRITICAL
    direction = "ahead of" if skew > 0 else "behind"
    evidence = {"skew": f"{skew:+.1f} s", "server time": ctx.reference_time.isoformat()}
    if severity == OK:
        summary = f"The clock agrees with the server's (within {duration(size)})."
    else:
        summary = f"The computer's clock is {duration(size)} {direction} the server's"
        summary += (
            ": Windows domain sign-in (Kerberos) fails beyond 5 minutes."
            if severity == CRITICAL
            else "; beyond 5 minutes domain sign-in (Kerberos) fails."
        )
    fix = fix_for("system.clock_skew", snapshot)
    return finding("system.clock_skew", severity, summary, evidence, fix)
