"""`sonde-agent collect [--json]`: collect locally, evaluate the checks, print both.

This is also what a technician asks a user to run on the phone, so the text reads top
down: facts by area, then findings worst first. Text from the OS (host names, process
names, service descriptions) is printed inert: control characters are shown escaped.
"""

from __future__ import annotations

import asyncio
import json
import sys
import unicodedata
from collections.abc import Iterable
from typing import TextIO

from google.protobuf.json_format import MessageToDict

from sonde.agent.checks import evaluate, worst_severity
from sonde.agent.checks.wording import duration, percent, size
from sonde.agent.collect_windows_areas import windows_areas
from sonde.agent.collectors.runner import CollectContext, collect_snapshot
from sonde.v1 import diagnostics_pb2

Severity = diagnostics_pb2.Severity
State = diagnostics_pb2.CollectorState
Rows = list[tuple[str, str]]

_SEVERITY_WORD = {
    Severity.SEVERITY_OK: "ok",
    Severity.SEVERITY_WARNING: "warning",
    Severity.SEVERITY_CRITICAL: "critical",
    Severity.SEVERITY_UNSPECIFIED: "unspecified",
}
_COLOUR = {
    Severity.SEVERITY_OK: "\x1b[32m",
    Severity.SEVERITY_WARNING: "\x1b[33m",
    Severity.SEVERITY_CRITICAL: "\x1b[1;31m",
}
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
_STATE_WORD = {
    State.COLLECTOR_STATE_UNAVAILABLE: "unavailable",
    State.COLLECTOR_STATE_TIMED_OUT: "timed out",
    State.COLLECTOR_STATE_FAILED: "failed",
}
# Control characters, format characters (bidi overrides) and line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def inert(text: object) -> str:
    """The text with every character that could move the cursor or recolour shown escaped."""
    out = []
    for char in str(text):
        if unicodedata.category(char) in _UNSAFE_CATEGORIES:
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def severity_word(severity: diagnostics_pb2.Severity.ValueType) -> str:
    return _SEVERITY_WORD.get(severity, "unspecified")


def _system(facts: diagnostics_pb2.SystemFacts) -> Rows:
    users = ", ".join(sorted({u.name for u in facts.users})) or "nobody"
    return [
        ("Host name", facts.hostname),
        ("OS", f"{facts.os_name} ({facts.os_version}, {facts.architecture})"),
        ("Up for", f"{duration(facts.uptime_seconds)} (booted {facts.boot_time.ToJsonString()})"),
        ("Logged in", users),
        ("Time zone", facts.timezone),
    ]


def _cpu(facts: diagnostics_pb2.CpuFacts) -> Rows:
    rows = [
        ("Model", facts.model or "unknown"),
        ("Cores", f"{facts.physical_cores} physical, {facts.logical_cores} logical"),
        ("Usage", f"{percent(facts.usage_percent)} over {facts.sample_ms} ms"),
        ("Load", f"{facts.load_1m:.2f} / {facts.load_5m:.2f} / {facts.load_15m:.2f} (1/5/15 min)"),
    ]
    if facts.temperatures:
        hottest = max(facts.temperatures, key=lambda t: t.celsius)
        rows.append(("Hottest", f"{hottest.celsius:.0f} °C ({hottest.sensor} {hottest.label})"))
    else:
        rows.append(("Temperature", f"unavailable: {facts.temperatures_unavailable}"))
    return rows


def _memory(facts: diagnostics_pb2.MemoryFacts) -> Rows:
    return [
        (
            "Memory",
            f"{percent(facts.used_percent)} used, {size(facts.available_bytes)} "
            f"available of {size(facts.total_bytes)}",
        ),
        ("Swap", f"{percent(facts.swap_used_percent)} used of {size(facts.swap_total_bytes)}"),
    ]


def _disks(facts: diagnostics_pb2.DiskFacts) -> Rows:
    rows: Rows = []
    for part in facts.partitions:
        line = f"{percent(part.used_percent)} used, {size(part.free_bytes)} free of "
        line += (
            f"{size(part.total_bytes)} ({part.filesystem}{', read-only' if part.read_only else ''})"
        )
        if part.has_inodes:
            line += f", file entries {percent(part.inodes_used_percent)} used"
        rows.append((part.mountpoint, line))
    for drive in facts.smart:
        verdict = "passed" if drive.passed else "FAILED"
        rows.append((f"SMART {drive.device}", f"{verdict} ({drive.model})"))
    if facts.smart_unavailable:
        rows.append(("SMART", f"unavailable: {facts.smart_unavailable}"))
    return rows


def _battery(facts: diagnostics_pb2.BatteryFacts) -> Rows:
    if not facts.present:
        return [("Battery", "none (desktop or not reported)")]
    plugged = "plugged in" if facts.plugged_in else "on battery"
    rows = [("Charge", f"{percent(facts.charge_percent)}, {plugged}")]
    if facts.design_capacity_mwh or (facts.condition and not facts.wear_unavailable):
        rows.append(("Wear", f"{percent(facts.wear_percent)} ({facts.cycle_count} cycles)"))
    else:
        rows.append(("Wear", f"unavailable: {facts.wear_unavailable}"))
    if facts.condition:
        rows.append(("Condition", facts.condition))  # macOS's own word: Normal, Service ...
    return rows


def _network(facts: diagnostics_pb2.NetworkFacts) -> Rows:
    rows: Rows = []
    for nic in facts.interfaces:
        if nic.is_loopback:
            continue
        addresses = ", ".join(a.address for a in nic.addresses if a.family != "mac") or "no address"
        state = "up" if nic.is_up else "down"
        speed = f", {nic.speed_mbps} Mb/s" if nic.speed_mbps else ""
        rows.append((nic.name, f"{state}{speed}: {addresses}"))
    gateway = facts.default_gateway or f"none {facts.gateway_unavailable}".strip()
    rows.append(("Gateway", f"{gateway} {facts.default_interface}".strip()))
    rows.append(("DNS servers", ", ".join(facts.dns_servers) or facts.dns_unavailable or "none"))
    for name in facts.resolutions:
        outcome = f"{name.duration_ms:.0f} ms" if name.ok else f"failed: {name.error}"
        rows.append((f"Resolve {name.name}", outcome))
    for probe in facts.probes:
        outcome = f"{probe.duration_ms:.1f} ms" if probe.ok else f"failed: {probe.error}"
        rows.append((f"Connect {probe.purpose}", f"{probe.host}:{probe.port} {outcome}"))
    if facts.HasField("proxy"):
        proxy = facts.proxy
        shown = proxy.https_proxy or proxy.http_proxy or proxy.auto_config_url
        rows.append(("Proxy", f"{shown} (from {proxy.source})"))
    if facts.HasField("machine_proxy"):
        machine = facts.machine_proxy
        rows.append(("Machine proxy", f"{machine.https_proxy or machine.http_proxy} (WinHTTP)"))
    return rows


def _processes(facts: diagnostics_pb2.ProcessFacts) -> Rows:
    rows = [("Running", str(facts.total))]
    for process in list(facts.top_by_cpu)[:5]:
        rows.append((f"CPU {process.pid}", f"{percent(process.cpu_percent)} {process.name}"))
    for process in list(facts.top_by_memory)[:5]:
        rows.append((f"Memory {process.pid}", f"{size(process.rss_bytes)} {process.name}"))
    return rows


def _services(facts: diagnostics_pb2.ServiceFacts) -> Rows:
    rows = [("Failed", f"{len(facts.failed)} ({facts.manager})")]
    rows += [(s.name, f"{s.state}: {s.display_name}") for s in facts.failed]
    return rows


def _software(facts: diagnostics_pb2.SoftwareFacts) -> Rows:
    cut = ", list capped" if facts.truncated else ""
    refreshed = facts.refreshed_at.ToJsonString()
    return [("Installed", f"{facts.total} packages from {facts.source}{cut} (as of {refreshed})")]


def _pending(update: diagnostics_pb2.PendingUpdate) -> tuple[str, str]:
    said = "recommended" if update.recommended else "not recommended"
    said += ", needs a restart" if update.restart_required else ""
    return (update.title, f"{update.version}, {said}" if update.version else said)


def _updates(facts: diagnostics_pb2.UpdateFacts) -> Rows:
    if facts.source == "softwareupdate":  # macOS: no restart flag, a list of updates
        listed = [_pending(u) for u in facts.pending[:20]]
        return listed or [("Pending updates", "none (as of macOS's last check)")]
    reboot = "yes: " + "; ".join(facts.reboot_reasons) if facts.reboot_required else "no"
    rows = [("Restart pending", reboot)]
    if facts.pending_updates_known:
        rows.append(
            (
                "Pending updates",
                f"{facts.pending_updates} ({facts.pending_security_updates} security)",
            )
        )
    return rows


def _areas(snapshot: diagnostics_pb2.Snapshot) -> Iterable[tuple[str, Rows]]:
    if snapshot.HasField("system"):
        yield "System", _system(snapshot.system)
    if snapshot.HasField("cpu"):
        yield "CPU", _cpu(snapshot.cpu)
    if snapshot.HasField("memory"):
        yield "Memory", _memory(snapshot.memory)
    if snapshot.HasField("disks"):
        yield "Disks", _disks(snapshot.disks)
    if snapshot.HasField("battery"):
        yield "Battery", _battery(snapshot.battery)
    if snapshot.HasField("network"):
        yield "Network", _network(snapshot.network)
    if snapshot.HasField("processes"):
        yield "Processes", _processes(snapshot.processes)
    if snapshot.HasField("services"):
        yield "Services", _services(snapshot.services)
    if snapshot.HasField("software"):
        yield "Software", _software(snapshot.software)
    if snapshot.HasField("updates"):
        yield "Updates", _updates(snapshot.updates)
    yield from windows_areas(snapshot)


def render_text(
    snapshot: diagnostics_pb2.Snapshot, findings: list[diagnostics_pb2.Finding], colour: bool
) -> str:
    def paint(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if colour else text

    lines = [
        paint(_BOLD, f"Diagnostic of {inert(snapshot.system.hostname or 'this computer')}")
        + f" at {snapshot.collected_at.ToJsonString()} ({snapshot.duration_ms} ms)"
    ]
    for title, rows in _areas(snapshot):
        lines.append("")
        lines.append(paint(_BOLD, title))
        width = max((len(inert(label)) for label, _ in rows), default=0)
        lines += [f"  {inert(label):<{width}}  {inert(value)}" for label, value in rows]
    problems = [c for c in snapshot.collectors if c.state != State.COLLECTOR_STATE_OK]
    if problems:
        lines += ["", paint(_BOLD, "Not collected")]
        for report in problems:
            word = _STATE_WORD.get(report.state, "unknown")
            lines.append(f"  {inert(report.name)}: {word}: {inert(report.reason)}")
    ordered = sorted(findings, key=lambda f: -f.severity)
    lines += ["", paint(_BOLD, f"Findings (worst: {severity_word(worst_severity(findings))})")]
    for found in ordered:
        tag = severity_word(found.severity).upper()
        lines.append(
            f"  {paint(_COLOUR.get(found.severity, ''), f'{tag:<8}')} "
            f"{inert(found.check)}: {inert(found.summary)}"
        )
        for item in found.evidence:
            lines.append(paint(_DIM, f"           {inert(item.key)}: {inert(item.value)}"))
        if found.fix_script_id:
            lines.append(f"           suggested fix: {inert(found.fix_script_id)}")
    return "\n".join(lines) + "\n"


def render_json(snapshot: diagnostics_pb2.Snapshot, findings: list[diagnostics_pb2.Finding]) -> str:
    document = {
        "snapshot": MessageToDict(snapshot, preserving_proto_field_name=True),
        "findings": [MessageToDict(f, preserving_proto_field_name=True) for f in findings],
        "worst_severity": severity_word(worst_severity(findings)),
    }
    # ensure_ascii: every control character, C1 included, leaves as an escape.
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def run_collect(ctx: CollectContext, *, as_json: bool, out: TextIO) -> int:
    """Collect, evaluate, print; 0, or 1 when no collector succeeded."""
    progress = sys.stderr if sys.stderr.isatty() else None
    on_progress = None
    if progress is not None:

        def on_progress(finished: int, total: int, running: list[str]) -> None:
            waiting = f", waiting for {', '.join(running)}" if running else ""
            progress.write(f"\r\x1b[Kcollecting: {finished}/{total} done{waiting}")
            progress.flush()

    snapshot = asyncio.run(collect_snapshot(ctx, on_progress=on_progress))
    if progress is not None:
        progress.write("\r\x1b[K")
        progress.flush()
    findings = evaluate(snapshot)
    if as_json:
        out.write(render_json(snapshot, findings))
    else:
        out.write(render_text(snapshot, findings, colour=out.isatty()))
    out.flush()
    succeeded = any(c.state == State.COLLECTOR_STATE_OK for c in snapshot.collectors)
    return 0 if succeeded else 1
