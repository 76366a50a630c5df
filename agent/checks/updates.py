"""updates.reboot_pending: the OS waits for a restart to finish installing updates."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import OK, WARNING, finding
from sonde.v1 import diagnostics_pb2


def reboot_pending(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("updates"):
        return None
    updates = snapshot.updates
    evidence: dict[str, object] = {"source": updates.source}
    if updates.pending_updates_known:
        evidence["pending updates"] = updates.pending_updates
        evidence["pending security updates"] = updates.pending_security_updates
    if not updates.reboot_required:
        return finding("updates.reboot_pending", OK, "No restart is pending.", evidence)
    evidence["flags"] = "; ".join(updates.reboot_reasons)
    first = updates.reboot_reasons[0] if updates.reboot_reasons else "the OS says so"
    more = len(updates.reboot_reasons) - 1
    summary = f"A restart is pending to finish installing updates ({first}"
    summary += f" and {more} more)." if more > 0 else ")."
    fix = fix_for("updates.reboot_pending", snapshot)
    return finding("updates.reboot_pending", WARNING, summary, evidence, fix)
