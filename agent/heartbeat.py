"""The few cheap gauges a heartbeat carries."""

from __future__ import annotations

import os
import sys

import psutil
from google.protobuf.timestamp_pb2 import Timestamp

from sonde.v1 import agent_pb2


def system_disk() -> str:
    """The disk the OS lives on: / on POSIX, the system drive on Windows."""
    if sys.platform == "win32":
        return os.environ.get("SYSTEMDRIVE", "C:") + "\\"
    return "/"


def prime_cpu_gauge() -> None:
    # psutil.cpu_percent(None) measures since the previous call; the first one returns 0.0.
    psutil.cpu_percent(None)


def now_timestamp() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def build_heartbeat(outbox_pending: int) -> agent_pb2.Heartbeat:
    """Gauges since the previous heartbeat; each costs a syscall or two, no subprocess."""
    try:
        disk_percent = psutil.disk_usage(system_disk()).percent
    except OSError:
        disk_percent = 0.0
    return agent_pb2.Heartbeat(
        agent_time=now_timestamp(),
        cpu_percent=psutil.cpu_percent(None),
        memory_percent=psutil.virtual_memory().percent,
        system_disk_percent=disk_percent,
        outbox_pending=outbox_pending,
    )
