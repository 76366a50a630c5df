"""updates.reboot_pending: the OS waits for a restart to finish installing updates;
windows.update: Windows Update still installs; macos.updates: updates macOS offers wait."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.thresholds import DAY_S
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding
from sonde.v1 import diagnostics_pb2

MACOS_SOURCE = "softwareupdate"  # UpdateFacts.source of the macOS collector


def reboot_pending(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("updates") or snapshot.updates.source == MACOS_SOURCE:
        return None  # macOS keeps no restart-pending flag: macos.updates reads its updates
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


def windows_update(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    """windows.update: Windows Update still installs (it last did so recently)."""
    if not snapshot.HasField("windows_update"):
        return None
    wu = snapshot.windows_update
    limits = ctx.thresholds
    evidence: dict[str, object] = {
        "last successful install": _when(wu.last_install_success_at),
        "last successful search": _when(wu.last_search_success_at),
        "latest hotfixes": ", ".join(wu.recent_hotfixes[:5]) or "none listed",
        "service start": wu.service_start_type or "unknown",
    }
    fix = fix_for("windows.update", snapshot)
    if wu.service_start_type == "disabled":
        summary = "The Windows Update service is disabled: this computer gets no updates."
        return finding("windows.update", CRITICAL, summary, evidence, fix)
    latest = wu.last_install_success_at if wu.HasField("last_install_success_at") else None
    if latest is None and wu.HasField("latest_hotfix_at"):
        latest = wu.latest_hotfix_at
    if latest is None or not snapshot.HasField("collected_at"):
        return finding("windows.update", OK, "Windows Update gives no install date.", evidence)
    days = (snapshot.collected_at.ToDatetime() - latest.ToDatetime()).total_seconds() / DAY_S
    severity = OK
    if days >= limits.update_install_warning_days:
        severity = WARNING
    if days >= limits.update_install_critical_days:
        severity = CRITICAL
    if severity == OK:
        summary = f"Windows Update last installed updates {int(max(days, 0))} days ago."
    else:
        summary = (
            f"Windows Update has installed nothing for {int(days)} days: monthly security "
            "updates are missing."
        )
    return finding("windows.update", severity, summary, evidence, fix)


def macos_updates(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    """macos.updates: updates softwareupdate lists and the Mac has not installed."""
    if not snapshot.HasField("updates") or snapshot.updates.source != MACOS_SOURCE:
        return None
    pending = list(snapshot.updates.pending)
    recommended = [u for u in pending if u.recommended]
    security = [u for u in recommended if "security" in u.title.lower()]
    restart = [u for u in recommended if u.restart_required]
    evidence: dict[str, object] = {
        u.label or u.title: ", ".join(
            part
            for part in (
                f"version {u.version}" if u.version else "",
                "recommended" if u.recommended else "not recommended",
                "needs a restart" if u.restart_required else "",
                f"{u.size_kib // 1024} MiB" if u.size_kib else "",
            )
            if part
        )
        for u in pending[:10]
    }
    if not recommended:
        summary = "macOS is up to date (as of its last check for updates)."
        if pending:
            others = ", ".join(u.title for u in pending[:3])
            summary = f"macOS has no recommended update waiting; also offered: {others}."
        return finding("macos.updates", OK, summary, evidence)
    names = ", ".join(u.title for u in recommended[:3])
    more = len(recommended) - 3
    count = len(recommended)
    summary = f"{count} recommended macOS update{'s' if count != 1 else ''} wait"
    summary += f"{'' if count != 1 else 's'} to be installed: {names}"
    summary += f" and {more} more" if more > 0 else ""
    if restart:
        summary += f"; {restart[0].title} needs a restart"
    summary += "."
    severity = CRITICAL if security else WARNING
    if security:
        summary += f" {security[0].title} fixes security flaws already being exploited."
    return finding("macos.updates", severity, summary, evidence)


def _when(moment: Timestamp) -> str:
    return moment.ToJsonString() if moment.seconds else "never"
