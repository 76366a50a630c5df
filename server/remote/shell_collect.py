"""A snapshot from a machine without Python: POSIX shell commands, parsed on the server.

One `sh -c` script prints each source under a `@@sonde NAME` line (uname, /etc/os-release,
/proc, df -P, /proc/net/route, /etc/resolv.conf, systemctl --failed, the reboot flag); this
module parses them into the facts the agent's collectors fill, with the agent's own parsers
(sonde.agent.collectors.linux.parse) where one exists, so the same checks read them. What the
shell cannot see as the agent does (processes, battery, software) is reported unavailable,
never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from sonde.agent.collectors.linux import parse
from sonde.agent.collectors.sampling import SAMPLE_WINDOW_S
from sonde.server.remote.shell import RemoteError, RemoteErrorKind, RemoteShell
from sonde.v1 import diagnostics_pb2

State = diagnostics_pb2.CollectorState
MAX_OUTPUT = 1024 * 1024
_MARK = "@@sonde "

SCRIPT = f"""
LC_ALL=C; export LC_ALL
section() {{ printf '\\n{_MARK}%s\\n' "$1"; }}
section now; date +%s
section uname; uname -s; uname -n; uname -r; uname -m
section os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
section timezone; readlink /etc/localtime 2>/dev/null; cat /etc/timezone 2>/dev/null
section stat-before; cat /proc/stat 2>/dev/null
sleep {SAMPLE_WINDOW_S}
section stat-after; cat /proc/stat 2>/dev/null
section cpus; getconf _NPROCESSORS_ONLN 2>/dev/null
section cpuinfo; cat /proc/cpuinfo 2>/dev/null
section loadavg; cat /proc/loadavg 2>/dev/null
section meminfo; cat /proc/meminfo 2>/dev/null
section filesystems; cat /proc/filesystems 2>/dev/null
section mounts; cat /proc/self/mounts 2>/dev/null
section df; df -P -k 2>/dev/null
section df-inodes; df -P -i 2>/dev/null
section route; cat /proc/net/route 2>/dev/null
section resolv; cat /etc/resolv.conf 2>/dev/null
section resolv-upstream; cat /run/systemd/resolve/resolv.conf 2>/dev/null
section systemd; [ -d /run/systemd/system ] && command -v systemctl >/dev/null && \\
  systemctl list-units --state=failed --plain --no-legend 2>/dev/null && echo '@@ok'
section reboot-required; [ -e /var/run/reboot-required ] && echo '@@yes' && \\
  cat /var/run/reboot-required.pkgs 2>/dev/null
section updates-available; cat /var/lib/update-notifier/updates-available 2>/dev/null
section end
"""

Sections = dict[str, str]


class _CpuTimes(NamedTuple):
    """/proc/stat's first line, as psutil's cpu_times names it (busy_percent reads these)."""

    user: float
    nice: float
    system: float
    idle: float
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    guest: float = 0.0
    guest_nice: float = 0.0


class _Unavailable(Exception):
    """This collector's sources are not on the machine: the reason says which."""


def sections_of(output: str) -> Sections:
    found: Sections = {}
    name, lines = "", list[str]()
    for line in output.splitlines():
        if line.startswith(_MARK):
            if name:
                found[name] = "\n".join(lines).strip("\n")
            name, lines = line[len(_MARK) :].strip(), []
        else:
            lines.append(line)
    return found


def _needed(sections: Sections, name: str, what: str) -> str:
    text = sections.get(name, "").strip()
    if not text:
        raise _Unavailable(f"{what} could not be read over the shell")
    return text


def _kib(meminfo: dict[str, int], key: str) -> int:
    return meminfo.get(key, 0) * 1024


def _system(sections: Sections) -> diagnostics_pb2.SystemFacts:
    kernel, hostname, release, machine = (
        _needed(sections, "uname", "uname").splitlines() + [""] * 4
    )[:4]
    facts = diagnostics_pb2.SystemFacts(
        hostname=hostname,
        os_family=kernel.lower(),
        os_version=release,
        architecture=machine,
        os_name=parse.os_release_name(sections.get("os-release", "")) or kernel,
    )
    zone = sections.get("timezone", "").splitlines()
    if zone and "zoneinfo/" in zone[0]:
        facts.timezone = zone[0].split("zoneinfo/", 1)[1]
    elif zone:
        facts.timezone = zone[-1].strip()
    boot = next(
        (
            int(line.split()[1])
            for line in sections.get("stat-before", "").splitlines()
            if line.startswith("btime ")
        ),
        None,
    )
    if boot is not None:
        now = int(sections.get("now", "0").strip() or 0)
        facts.boot_time.FromSeconds(boot)
        facts.uptime_seconds = max(0, now - boot)
    return facts


def _cpu_times(stat: str) -> _CpuTimes:
    first = next((line for line in stat.splitlines() if line.startswith("cpu ")), "")
    ticks = [float(value) / 100 for value in first.split()[1:11]]
    if len(ticks) < 4:
        raise _Unavailable("/proc/stat holds no CPU times")
    return _CpuTimes(*ticks)


def _cpu(sections: Sections) -> diagnostics_pb2.CpuFacts:
    from sonde.agent.collectors.cpu import busy_percent

    load = _needed(sections, "loadavg", "/proc/loadavg").split()
    facts = diagnostics_pb2.CpuFacts(
        logical_cores=int(sections.get("cpus", "0").strip() or 0),
        model=parse.cpu_model(sections.get("cpuinfo", "")),
        load_1m=float(load[0]),
        load_5m=float(load[1]),
        load_15m=float(load[2]),
        sample_ms=round(SAMPLE_WINDOW_S * 1000),
    )
    before = _cpu_times(_needed(sections, "stat-before", "/proc/stat"))
    after = _cpu_times(_needed(sections, "stat-after", "/proc/stat"))
    facts.usage_percent = busy_percent(before, after)
    return facts


def _memory(sections: Sections) -> diagnostics_pb2.MemoryFacts:
    values: dict[str, int] = {}
    for line in _needed(sections, "meminfo", "/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            values[key.strip()] = int(rest.split()[0])
    total, available = _kib(values, "MemTotal"), _kib(values, "MemAvailable")
    swap_total = _kib(values, "SwapTotal")
    swap_used = max(0, swap_total - _kib(values, "SwapFree"))
    used = max(0, total - available)
    return diagnostics_pb2.MemoryFacts(
        total_bytes=total,
        available_bytes=available,
        used_bytes=used,
        used_percent=round(100.0 * used / total, 1) if total else 0.0,
        swap_total_bytes=swap_total,
        swap_used_bytes=swap_used,
        swap_used_percent=round(100.0 * swap_used / swap_total, 1) if swap_total else 0.0,
    )


def _physical_filesystems(text: str) -> set[str]:
    # As psutil.disk_partitions(all=False): what /proc/filesystems lists without "nodev", and zfs.
    found = {"zfs"}
    for line in text.splitlines():
        if line and not line.startswith("nodev"):
            found.add(line.strip())
    return found


def _unescape(field: str) -> str:
    # /proc/mounts writes a space in a mount point as \040 (and tab, newline, backslash alike).
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def _df_rows(text: str) -> dict[str, list[int]]:
    """df -P: mount point -> its four numbers (total, used, free or inodes alike)."""
    rows: dict[str, list[int]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split(None, 5)
        if len(cols) == 6 and cols[1].isdigit():
            rows[cols[5]] = [int(cols[1]), int(cols[2]), int(cols[3])]
    return rows


def _disks(sections: Sections) -> diagnostics_pb2.DiskFacts:
    physical = _physical_filesystems(_needed(sections, "filesystems", "/proc/filesystems"))
    usage = _df_rows(_needed(sections, "df", "df -P"))
    inodes = _df_rows(sections.get("df-inodes", ""))
    facts = diagnostics_pb2.DiskFacts()
    for line in _needed(sections, "mounts", "/proc/self/mounts").splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        device, mountpoint, fstype, options = cols[0], _unescape(cols[1]), cols[2], cols[3]
        if device in {"", "none"} or fstype not in physical or mountpoint not in usage:
            continue
        total_k, used_k, free_k = usage[mountpoint]
        partition = facts.partitions.add(
            device=device,
            mountpoint=mountpoint,
            filesystem=fstype,
            total_bytes=total_k * 1024,
            used_bytes=used_k * 1024,
            free_bytes=free_k * 1024,
            used_percent=round(100.0 * used_k / (used_k + free_k), 1) if used_k + free_k else 0.0,
            is_system=mountpoint == "/",
            read_only="ro" in options.split(","),
        )
        files = inodes.get(mountpoint)
        if files and files[0] > 0:
            partition.has_inodes = True
            partition.inodes_total = files[0]
            partition.inodes_used = files[0] - files[2]
            partition.inodes_used_percent = round(100.0 * partition.inodes_used / files[0], 1)
    return facts


def _network(sections: Sections) -> diagnostics_pb2.NetworkFacts:
    facts = diagnostics_pb2.NetworkFacts()
    routes = sections.get("route", "")
    if routes:
        route = parse.default_route(routes)
        if route is not None:
            facts.default_gateway, facts.default_interface = route.gateway, route.interface
    else:
        facts.gateway_unavailable = "the default gateway could not be read over the shell"
    servers = parse.resolv_conf_servers(sections.get("resolv", ""))
    if servers == [parse.SYSTEMD_STUB_RESOLVER]:
        servers = parse.resolv_conf_servers(sections.get("resolv-upstream", "")) or servers
    facts.dns_servers.extend(servers)
    if "resolv" not in sections or not sections["resolv"]:
        facts.dns_unavailable = "/etc/resolv.conf could not be read over the shell"
    return facts


def _services(sections: Sections) -> diagnostics_pb2.ServiceFacts:
    text = sections.get("systemd", "")
    if not text.endswith("@@ok"):
        raise _Unavailable("systemd is not the service manager on this machine")
    return diagnostics_pb2.ServiceFacts(
        manager="systemd", failed=parse.systemctl_failed(text.removesuffix("@@ok"))
    )


def _updates(sections: Sections) -> diagnostics_pb2.UpdateFacts:
    facts = diagnostics_pb2.UpdateFacts(source="/var/run/reboot-required")
    flag = sections.get("reboot-required", "").splitlines()
    if flag[:1] == ["@@yes"]:
        facts.reboot_required = True
        packages = " ".join(flag[1:]).split()
        reasons = [f"updated package {name}" for name in dict.fromkeys(packages)]
        facts.reboot_reasons.extend(reasons or ["/var/run/reboot-required exists"])
    available = sections.get("updates-available", "")
    if available:
        facts.pending_updates, facts.pending_security_updates = parse.updates_available(available)
        facts.pending_updates_known = True
        facts.source += ", /var/lib/update-notifier/updates-available"
    return facts


_Parser = Callable[[Sections], object]
# In the agent's registry order; None: the shell path does not collect it.
_COLLECTORS: tuple[tuple[str, _Parser | None], ...] = (
    ("system", _system),
    ("cpu", _cpu),
    ("memory", _memory),
    ("disks", _disks),
    ("battery", None),
    ("network", _network),
    ("processes", None),
    ("services", _services),
    ("software", None),
    ("updates", _updates),
)


def snapshot_from_output(output: str) -> diagnostics_pb2.Snapshot:
    """The Snapshot that SCRIPT's output gives, one CollectorReport per agent collector."""
    sections = sections_of(output)
    snapshot = diagnostics_pb2.Snapshot(collected_by=diagnostics_pb2.COLLECTED_BY_SSH_SHELL)
    snapshot.collected_at.GetCurrentTime()
    for name, parser in _COLLECTORS:
        if parser is None:
            snapshot.collectors.add(
                name=name,
                state=State.COLLECTOR_STATE_UNAVAILABLE,
                reason="not collected over the shell: the machine has no Python 3 with psutil",
            )
            continue
        try:
            facts = parser(sections)
        except _Unavailable as unavailable:
            snapshot.collectors.add(
                name=name, state=State.COLLECTOR_STATE_UNAVAILABLE, reason=str(unavailable)
            )
            continue
        except (ValueError, IndexError) as error:
            snapshot.collectors.add(
                name=name,
                state=State.COLLECTOR_STATE_FAILED,
                reason=f"its shell output did not parse: {error}"[:300],
            )
            continue
        getattr(snapshot, name).CopyFrom(facts)
        snapshot.collectors.add(name=name, state=State.COLLECTOR_STATE_OK)
    return snapshot


async def collect_with_shell(
    shell: RemoteShell, *, timeout_s: float = 30.0
) -> diagnostics_pb2.Snapshot:
    result = await shell.run(["sh", "-c", SCRIPT], timeout_s=timeout_s, max_output=MAX_OUTPUT)
    output = result.stdout.decode("utf-8", "replace")
    if f"{_MARK}end" not in output:
        raise RemoteError(
            RemoteErrorKind.PROTOCOL,
            f"the shell collection on {shell.target.label} stopped before its end "
            f"(exit code {result.exit_code}"
            f"{', output over ' + str(MAX_OUTPUT) + ' bytes' if result.stdout_truncated else ''})",
        )
    snapshot = snapshot_from_output(output)
    snapshot.duration_ms = result.duration_ms
    return snapshot
