"""Turning console messages into rich tables: agents, findings, key facts, users.

Every string that came from an agent or a user (host names, titles, comments, evidence) goes
through `inert`: it becomes a rich Text (never parsed as markup) with control and format
characters replaced by visible escapes, so a host name cannot recolour, move the cursor or
forge extra lines on the technician's terminal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table
from rich.text import Text

from sonde.agent.checks.wording import size
from sonde.server.console.inert import inert
from sonde.server.console.layout import Column, Give, ListTable, unique_prefix_chars
from sonde.v1 import console_pb2, diagnostics_pb2

SEVERITY_STYLE = {
    diagnostics_pb2.SEVERITY_CRITICAL: "bold red",
    diagnostics_pb2.SEVERITY_WARNING: "yellow",
    diagnostics_pb2.SEVERITY_OK: "green",
    diagnostics_pb2.SEVERITY_UNSPECIFIED: "dim",
}


def text(value: str, style: str = "") -> Text:
    """Untrusted text as a Text that rich prints literally."""
    return Text(inert(value), style=style)


# What a retired machine (`sonde agents remove`) is labelled with, wherever it is named.
REMOVED = "(removed)"


def machine_name(hostname: str, agent_id: str, removed: bool = False) -> str:
    """A machine as the name it reports, always beside its id: 'PC-042 (kry2...)', and
    'PC-042 (kry2...) (removed)' once it was retired.

    The name is the agent's own word (another agent may report the same one); the id comes
    from its key. Inert, so it may go into any sentence.
    """
    if not agent_id:
        return inert(hostname) or "-"
    named = agent_id  # an agent that never reported a name goes by its id
    if hostname and hostname != agent_id:
        named = f"{inert(hostname)} ({agent_id})"
    return f"{named} {REMOVED}" if removed else named


def short_id_chars(agent_ids: Iterable[str]) -> int:
    """How much of each id a table shows: 8 characters (40 bits), more when two of the
    table's ids share them, so no two of its machines look alike. Detail views show it all."""
    return unique_prefix_chars(agent_ids)


def machine_cell(hostname: str, agent_id: str, id_chars: int, removed: bool = False) -> Text:
    """A machine in a table cell: the name it reports, the start of its id on the line below
    (the cell's column is at least `id_chars` wide: the id is never cut), and '(removed)'
    under them once it was retired (see machine_column_width)."""
    if not agent_id:
        return text(hostname or "-")
    lines = [Text(agent_id[:id_chars])]
    if hostname and hostname != agent_id:
        lines.insert(0, text(hostname))
    if removed:
        lines.append(Text(REMOVED, style="dim"))
    return Text("\n").join(lines)


def machine_column_width(id_chars: int) -> int:
    """The narrowest a machine column may be: the start of an id, and '(removed)', whole."""
    return max(id_chars, len(REMOVED))


def enum_label(name: str, prefix: str) -> str:
    """'TICKET_STATUS_IN_PROGRESS' -> 'in progress'."""
    return name.removeprefix(prefix).replace("_", " ").lower()


def severity_label(severity: diagnostics_pb2.Severity.ValueType) -> str:
    return enum_label(diagnostics_pb2.Severity.Name(severity), "SEVERITY_")


def severity_text(severity: diagnostics_pb2.Severity.ValueType) -> Text:
    return Text(severity_label(severity), style=SEVERITY_STYLE.get(severity, ""))


def has_time(timestamp: Timestamp) -> bool:
    return timestamp.seconds != 0 or timestamp.nanos != 0


def format_time(timestamp: Timestamp) -> str:
    """Local time to the minute with its zone, '2026-12-01 09:05 CET' (or 'UTC+05:30' where
    the zone has no short name), or '-' when the field is not set."""
    if not has_time(timestamp):
        return "-"
    moment = datetime.fromtimestamp(timestamp.seconds).astimezone()
    zone = moment.strftime("%Z")
    if not (zone.isascii() and zone.isalpha() and len(zone) <= 5):
        offset = moment.strftime("%z")  # '+0530'
        zone = f"UTC{offset[:3]}:{offset[3:5]}"
    return f"{moment:%Y-%m-%d %H:%M} {zone}"


def format_duration(seconds: float) -> str:
    """A span in the two largest units a person reads: '3d 4h', '2h 5m', '40s'."""
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def format_ago(timestamp: Timestamp, now: float | None = None) -> str:
    if not has_time(timestamp):
        return "never"
    now = time.time() if now is None else now
    return f"{format_duration(now - timestamp.seconds)} ago"


def format_bytes(count: float) -> str:
    """A size in binary units, said: '3.1 GiB', '237 GiB' (the findings' own wording)."""
    return size(int(count))


def agent_state(agent: console_pb2.Agent, now: float | None = None) -> Text:
    if agent.HasField("removed_at"):  # retired: revoked too, but that is not the news
        return Text("removed", style="red")
    if agent.revoked:
        return Text("revoked", style="red")
    if agent.reached_by:  # no agent: the server logs in itself, so never online nor offline
        return text(f"{agent.reached_by} {agent.reach_address}")
    if agent.online:
        return Text("online", style="green")
    return Text(f"offline ({format_ago(agent.last_seen_at, now)})", style="dim")


def agents_table(agents: Sequence[console_pb2.Agent], now: float | None = None) -> ListTable:
    """Host name, then the start of its id (unique among the rows: `agent show` takes it)."""
    table = ListTable(
        "Agents",
        [
            Column("host", Give.CUT),
            Column("id"),
            Column("state"),
            Column("cpu", justify="right"),
            Column("mem", justify="right"),
            Column("disk", justify="right"),
            Column("os", Give.CUT, optional=True),
            Column("version", optional=True),
        ],
    )
    id_chars = short_id_chars(agent.id for agent in agents)
    for agent in agents:
        gauges = [f"{value:.0f}%" if agent.online else "-" for value in _gauges(agent)]
        table.add_row(
            text(agent.hostname or "-"),
            text(agent.id[:id_chars]),
            agent_state(agent, now),
            *gauges,
            text(f"{agent.os_name} {agent.os_version}".strip() or agent.platform),
            text(agent.agent_version),
        )
    return table


def _gauges(agent: console_pb2.Agent) -> tuple[float, float, float]:
    return agent.cpu_percent, agent.memory_percent, agent.system_disk_percent


def agent_detail(response: console_pb2.GetAgentResponse, now: float | None = None) -> Table:
    """The agent's identity, state and last diagnostic (its open tickets render apart)."""
    agent = response.agent
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    rows: list[tuple[str, Text]] = [
        ("host", text(agent.hostname)),
        ("id", text(agent.id)),
        ("state", agent_state(agent, now)),
        ("platform", text(agent.platform)),
        ("os", text(f"{agent.os_name} {agent.os_version}".strip())),
        ("agent version", text(agent.agent_version)),
        ("address", text(agent.remote_address or "-")),
        ("enrolled", Text(format_time(agent.enrolled_at))),
        ("last seen", Text(format_ago(agent.last_seen_at, now))),
    ]
    if agent.reached_by:
        how = f"{agent.reached_by} {agent.reach_address}, without an agent"
        example = f"sonde diag {agent.hostname} --{agent.reached_by} USER@{agent.reach_address}"
        rows[5:7] = [("agent version", Text("none")), ("reached by", text(how))]
        rows.insert(7, ("diagnose with", text(example)))
        rows[-1] = ("last reached", Text(format_ago(agent.last_seen_at, now)))
    if agent.online:
        rows.append(("online since", Text(format_time(agent.online_since))))
        cpu, memory, disk = _gauges(agent)
        rows.append(
            ("load", Text(f"cpu {cpu:.0f}%  memory {memory:.0f}%  system disk {disk:.0f}%"))
        )
    if agent.revoked:
        rows.append(("revoked", Text(format_time(agent.revoked_at), style="red")))
    if response.HasField("last_snapshot"):
        summary = response.last_snapshot
        rows.append(("last diagnostic", snapshot_line(summary)))
    for name, value in rows:
        facts.add_row(name, value)
    return facts


def snapshot_line(summary: console_pb2.SnapshotSummary, machine: str = "") -> Text:
    """'#12 at ...: critical, 3 finding(s)'; `machine` (from machine_name) after the number."""
    of = f" of {machine}" if machine else ""
    line = Text(f"#{summary.id}{of} at {format_time(summary.collected_at)}: ")
    line.append_text(severity_text(summary.worst_severity))
    line.append(f", {summary.finding_count} finding(s)")
    if summary.ticket_id:
        line.append(f", ticket #{summary.ticket_id}")
    return line


def sorted_findings(findings: Iterable[diagnostics_pb2.Finding]) -> list[diagnostics_pb2.Finding]:
    """Critical first, then warnings, then ok; a stable order within each severity."""
    return sorted(findings, key=lambda finding: -int(finding.severity))


def findings_table(
    findings: Iterable[diagnostics_pb2.Finding], title: str = "Findings"
) -> ListTable:
    table = ListTable(
        title,
        [
            Column("severity"),
            Column("check"),
            Column("finding", Give.WRAP),
            Column("fix", optional=True),
            Column("evidence", Give.WRAP, optional=True),
        ],
    )
    for finding in sorted_findings(findings):
        evidence = Text(", ").join(text(f"{item.key}={item.value}") for item in finding.evidence)
        table.add_row(
            severity_text(finding.severity),
            text(finding.check),
            text(finding.summary, SEVERITY_STYLE.get(finding.severity, "")),
            text(finding.fix_script_id or "-"),
            evidence,
        )
    return table


def key_facts(snapshot: diagnostics_pb2.Snapshot) -> Table:
    """The facts a technician reads out first: OS, uptime, CPU, memory, disks, network."""
    table = Table(title="Key facts", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    system, cpu, memory = snapshot.system, snapshot.cpu, snapshot.memory
    table.add_row("host", text(machine_name(system.hostname, snapshot.agent_id)))
    os_line = f"{system.os_name} ({system.os_version}, {system.architecture})"
    table.add_row("os", text(os_line))
    table.add_row("uptime", Text(format_duration(system.uptime_seconds)))
    cpu_line = (
        f"{cpu.model}: {cpu.physical_cores} cores / {cpu.logical_cores} threads, "
        f"{cpu.usage_percent:.0f}% busy, load {cpu.load_1m:.2f} {cpu.load_5m:.2f} "
        f"{cpu.load_15m:.2f}"
    )
    table.add_row("cpu", text(cpu_line))
    if cpu.temperatures:
        hottest = max(cpu.temperatures, key=lambda sensor: sensor.celsius)
        table.add_row("temperature", text(f"{hottest.celsius:.0f} C ({hottest.label})"))
    memory_line = (
        f"{format_bytes(memory.used_bytes)} of {format_bytes(memory.total_bytes)} used "
        f"({memory.used_percent:.0f}%), {format_bytes(memory.available_bytes)} available"
    )
    if memory.swap_total_bytes:
        memory_line += f"; swap {memory.swap_used_percent:.0f}% used"
    table.add_row("memory", Text(memory_line))
    for partition in snapshot.disks.partitions:
        line = (
            f"{partition.mountpoint} {format_bytes(partition.used_bytes)} of "
            f"{format_bytes(partition.total_bytes)} ({partition.used_percent:.0f}%)"
        )
        if partition.has_inodes:
            line += f", inodes {partition.inodes_used_percent:.0f}%"
        table.add_row("disk", text(line))
    table.add_row("network", _network_line(snapshot.network))
    unavailable = [
        report
        for report in snapshot.collectors
        if report.state != diagnostics_pb2.COLLECTOR_STATE_OK
    ]
    for report in unavailable:
        state = enum_label(diagnostics_pb2.CollectorState.Name(report.state), "COLLECTOR_STATE_")
        table.add_row("collector", text(f"{report.name}: {state} ({report.reason})", "dim"))
    return table


def _network_line(network: diagnostics_pb2.NetworkFacts) -> Text:
    addresses = [
        f"{interface.name} {address.address}"
        for interface in network.interfaces
        if interface.is_up and not interface.is_loopback
        for address in interface.addresses
        if address.family == "ipv4"
    ]
    gateway = network.default_gateway or f"none ({network.gateway_unavailable or 'unknown'})"
    dns = ", ".join(network.dns_servers) or f"none ({network.dns_unavailable or 'unknown'})"
    line = f"gateway {gateway}; dns {dns}"
    if addresses:
        line += f"; {', '.join(addresses)}"
    for probe in network.probes:
        outcome = f"{probe.duration_ms:.0f} ms" if probe.ok else f"failed: {probe.error}"
        line += f"; {probe.purpose} {probe.host}:{probe.port} {outcome}"
    return text(line)


def users_table(users: Sequence[console_pb2.User]) -> ListTable:
    table = ListTable(
        "Users",
        [
            Column("name", Give.CUT),
            Column("role"),
            Column("state"),
            Column("token expires"),
            Column("disabled", optional=True),
            Column("created", optional=True),
        ],
    )
    for user in users:
        disabled = user.HasField("disabled_at")
        table.add_row(
            text(user.name),
            Text(role_label(user.role)),
            Text("disabled", style="red") if disabled else Text("enabled"),
            Text(
                format_time(user.token_expires_at) if user.HasField("token_expires_at") else "never"
            ),
            Text(format_time(user.disabled_at) if disabled else "-"),
            Text(format_time(user.created_at)),
        )
    return table


def role_label(role: console_pb2.Role.ValueType) -> str:
    return enum_label(console_pb2.Role.Name(role), "ROLE_")
