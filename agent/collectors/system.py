"""System facts: OS, host name, architecture, uptime, boot time, users, time zone."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from pathlib import Path

import psutil

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.platform_parts import PlatformParts
from sonde.v1 import diagnostics_pb2


def os_family() -> str:
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "darwin"
    return sys.platform.rstrip("0123456789")  # "linux", "freebsd"


def timezone_name() -> str:
    """The IANA name where the OS says it ("Europe/Paris"), else the local abbreviation."""
    if os.environ.get("TZ"):
        return os.environ["TZ"].lstrip(":")
    if sys.platform != "win32":
        try:
            target = os.readlink("/etc/localtime")
        except OSError:
            target = ""
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
        try:
            return Path("/etc/timezone").read_text(encoding="utf-8").strip()
        except OSError:
            pass
    return time.strftime("%Z")


def collect_system(ctx: CollectContext, parts: PlatformParts) -> diagnostics_pb2.SystemFacts:
    facts = diagnostics_pb2.SystemFacts(
        hostname=socket.gethostname(),
        os_family=os_family(),
        architecture=platform.machine(),
        timezone=timezone_name(),
    )
    try:
        release = parts.os_release()
        facts.os_name, facts.os_version = release.name, release.version
    except CollectorUnavailable:
        facts.os_name, facts.os_version = platform.system(), platform.release()
    boot = psutil.boot_time()
    facts.boot_time.FromSeconds(int(boot))
    facts.uptime_seconds = max(0, int(time.time() - boot))
    try:
        sessions = psutil.users()
    except (OSError, psutil.Error):
        sessions = []  # utmp unreadable: the rest of the facts still stand
    for session in sessions:
        user = facts.users.add(name=session.name, terminal=session.terminal or "")
        user.host = session.host or ""
        user.started_at.FromSeconds(int(session.started))
    return facts
