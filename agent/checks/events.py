"""events.errors: the errors Windows logged over the last day, and the kinds that matter most
(unexpected restarts, disk and hardware errors, services that crash)."""

from __future__ import annotations

from collections.abc import Callable

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding, worse
from sonde.v1 import diagnostics_pb2

_EVIDENCE_GROUPS = 8
_CRASH = "unexpected restart"
# Provider names as Windows writes them; compared case-insensitively.
_DISK_PROVIDERS = frozenset(
    p.lower() for p in ("disk", "Ntfs", "Microsoft-Windows-Ntfs", "stornvme", "storahci")
)
_KERNEL_POWER = "Microsoft-Windows-Kernel-Power".lower()
_BUGCHECK = "Microsoft-Windows-WER-SystemErrorReporting".lower()
_WHEA = "Microsoft-Windows-WHEA-Logger".lower()
_DISK_IDS = frozenset({7, 11, 51, 55, 98, 153})
_SERVICE_IDS = frozenset({7000, 7001, 7009, 7011, 7023, 7031, 7034})


def _is_crash(event: diagnostics_pb2.EventCount) -> bool:
    provider = event.provider.lower()
    return (
        (provider == _KERNEL_POWER and event.event_id == 41)
        or (provider == _BUGCHECK and event.event_id == 1001)
        or (provider == "eventlog" and event.event_id == 6008)
    )


# (what the technician is told, how to recognise it, whether it alone is a warning), in the
# order they are named. A service that stops with an error now and then is common; it is
# named but is not a warning by itself.
NOTABLE: tuple[tuple[str, Callable[[diagnostics_pb2.EventCount], bool], bool], ...] = (
    (_CRASH, _is_crash, True),
    (
        "disk error",
        lambda e: e.provider.lower() in _DISK_PROVIDERS and e.event_id in _DISK_IDS,
        True,
    ),
    ("hardware error", lambda e: e.provider.lower() == _WHEA, True),
    (
        "service failure",
        lambda e: e.provider == "Service Control Manager" and e.event_id in _SERVICE_IDS,
        False,
    ),
)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def events_errors(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("event_log"):
        return None
    log = snapshot.event_log
    limits = ctx.thresholds
    counts = {label: 0 for label, _, _ in NOTABLE}
    for event in log.events:
        for label, matches, _ in NOTABLE:
            if matches(event):
                counts[label] += event.count
                break
    serious = any(counts[label] for label, _, warns in NOTABLE if warns)
    severity = OK
    if log.error_count >= limits.event_errors_warning_count or serious:
        severity = WARNING
    if log.error_count >= limits.event_errors_critical_count:
        severity = CRITICAL
    if counts[_CRASH] >= limits.event_crashes_critical_count:
        severity = worse(severity, CRITICAL)
    evidence = {
        f"{e.log} {e.provider} {e.event_id}": f"{e.count} x {e.level}: {e.message}"
        for e in log.events[:_EVIDENCE_GROUPS]
    }
    total = f"{log.error_count}{'+' if log.truncated else ''}"
    window = f"the last {log.window_hours} h"
    named = [_plural(count, label) for label, count in counts.items() if count]
    if not log.error_count:
        summary = f"Windows logged no error in {window}."
    elif not named:
        summary = f"Windows logged {total} errors in {window}, none of the serious kinds."
    else:
        summary = f"Windows logged {total} errors in {window}, among them {', '.join(named)}."
    return finding("events.errors", severity, summary, evidence)
