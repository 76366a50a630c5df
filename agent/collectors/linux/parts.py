"""The Linux half of the collectors: reads /proc, /sys, /etc and a few commands.

Thin on purpose: each function reads, then hands the text to a pure parser in parse.py.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from sonde.agent.collectors.command import run_command
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.linux import parse
from sonde.agent.collectors.platform_parts import BatteryCapacity, DefaultRoute, OsRelease
from sonde.v1 import diagnostics_pb2

_COMMAND_TIMEOUT_S = 20.0
POWER_SUPPLY = Path("/sys/class/power_supply")
REBOOT_REQUIRED = Path("/var/run/reboot-required")
UPDATES_AVAILABLE = Path("/var/lib/update-notifier/updates-available")


def _read(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError as error:
        raise CollectorUnavailable(f"{what}: {path} does not exist on this system") from error
    except PermissionError as error:
        raise CollectorUnavailable(f"{what}: no permission to read {path}") from error


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return run_command(argv, _COMMAND_TIMEOUT_S)


def os_release() -> OsRelease:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            name = parse.os_release_name(Path(path).read_text(encoding="utf-8"))
        except OSError:
            continue
        if name:
            return OsRelease(name=name, version=platform.release())
    return OsRelease(name="Linux", version=platform.release())


def cpu_model() -> str:
    return parse.cpu_model(_read("/proc/cpuinfo", "CPU model")) or platform.processor()


def default_route() -> DefaultRoute | None:
    return parse.default_route(_read("/proc/net/route", "default gateway"))


def dns_servers() -> list[str]:
    servers = parse.resolv_conf_servers(_read("/etc/resolv.conf", "DNS servers"))
    if servers == [parse.SYSTEMD_STUB_RESOLVER]:
        # systemd-resolved's local stub: the servers it forwards to are the useful fact.
        try:
            upstream = Path("/run/systemd/resolve/resolv.conf").read_text(encoding="utf-8")
        except OSError:
            return servers
        return parse.resolv_conf_servers(upstream) or servers
    return servers


def proxy_settings() -> diagnostics_pb2.ProxySettings | None:
    return None  # on Linux the environment is the only common source; network.py reads it


def machine_proxy() -> diagnostics_pb2.ProxySettings | None:
    raise CollectorUnavailable("Linux has no machine-wide proxy apart from the environment")


def battery_capacity() -> BatteryCapacity | None:
    try:
        supplies = sorted(POWER_SUPPLY.iterdir())
    except OSError:
        return None
    for supply in supplies:
        try:
            if (supply / "type").read_text(encoding="utf-8").strip() != "Battery":
                continue
            uevent = (supply / "uevent").read_text(encoding="utf-8")
        except OSError:
            continue  # a peripheral's battery (mouse) may refuse to be read
        capacity = parse.power_supply_capacity(uevent)
        if capacity is not None:
            return capacity
    return None


def service_facts() -> diagnostics_pb2.ServiceFacts:
    if not Path("/run/systemd/system").is_dir():
        raise CollectorUnavailable("systemd is not the service manager on this machine")
    if shutil.which("systemctl") is None:
        raise CollectorUnavailable("systemctl is not installed")
    done = _run(["systemctl", "list-units", "--state=failed", "--plain", "--no-legend"])
    if done.returncode != 0:
        raise CollectorUnavailable(f"systemctl refused: {done.stderr.strip()[:200]}")
    return diagnostics_pb2.ServiceFacts(
        manager="systemd", failed=parse.systemctl_failed(done.stdout)
    )


def software_inventory() -> diagnostics_pb2.SoftwareFacts:
    if shutil.which("dpkg-query"):
        fmt = "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Maintainer}\\n"
        done = _run(["dpkg-query", "-W", f"-f={fmt}"])
        return diagnostics_pb2.SoftwareFacts(
            source="dpkg", packages=parse.dpkg_packages(done.stdout)
        )
    if shutil.which("rpm"):
        fmt = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{VENDOR}\\t%{INSTALLTIME:date}\\n"
        done = _run(["rpm", "-qa", "--qf", fmt])
        return diagnostics_pb2.SoftwareFacts(source="rpm", packages=parse.rpm_packages(done.stdout))
    raise CollectorUnavailable("neither dpkg nor rpm is installed: no package database to list")


def update_facts() -> diagnostics_pb2.UpdateFacts:
    facts = diagnostics_pb2.UpdateFacts(source=str(REBOOT_REQUIRED))
    if REBOOT_REQUIRED.exists():
        facts.reboot_required = True
        try:
            packages = Path(f"{REBOOT_REQUIRED}.pkgs").read_text(encoding="utf-8").split()
        except OSError:
            packages = []
        reasons = [f"updated package {name}" for name in dict.fromkeys(packages)]
        facts.reboot_reasons.extend(reasons or [f"{REBOOT_REQUIRED} exists"])
    if os.access(UPDATES_AVAILABLE, os.R_OK):
        text = UPDATES_AVAILABLE.read_text(encoding="utf-8", errors="replace")
        facts.pending_updates, facts.pending_security_updates = parse.updates_available(text)
        facts.pending_updates_known = True
        facts.source += f", {UPDATES_AVAILABLE}"
    return facts
