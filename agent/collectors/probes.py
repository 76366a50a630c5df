"""Timed name resolution and TCP connects, run side by side and each bounded in time."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sonde.v1 import diagnostics_pb2

PROBE_TIMEOUT_S = 2.0
T = TypeVar("T")


def split_host_port(address: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port); ValueError saying what is wrong."""
    host, sep, port_text = address.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{address!r}: port {port} is outside 1-65535")
    return host, port


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(name: str) -> diagnostics_pb2.NameResolution:
    started = time.perf_counter()
    result = diagnostics_pb2.NameResolution(name=name)
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        result.error = str(error) or type(error).__name__
    else:
        result.ok = True
        result.addresses.extend(dict.fromkeys(str(info[4][0]) for info in infos))
    result.duration_ms = round((time.perf_counter() - started) * 1000, 2)
    return result


def connect(purpose: str, address: str) -> diagnostics_pb2.ConnectProbe:
    """Time a TCP connect (resolution apart) to a configured "host:port"."""
    probe = diagnostics_pb2.ConnectProbe(purpose=purpose)
    try:
        probe.host, probe.port = split_host_port(address)
    except ValueError as error:
        probe.host, probe.error = address, f"refused to probe: {error}"
        return probe
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            probe.host, probe.port, type=socket.SOCK_STREAM
        )[0]
    except (OSError, UnicodeError) as error:
        probe.error = f"cannot resolve {probe.host}: {error}"
        return probe
    started = time.perf_counter()
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(PROBE_TIMEOUT_S)
        try:
            sock.connect(sockaddr)
        except TimeoutError:
            probe.error = f"no answer within {PROBE_TIMEOUT_S:g} s"
        except OSError as error:
            probe.error = error.strerror or str(error)
        else:
            probe.ok = True
    probe.duration_ms = round((time.perf_counter() - started) * 1000, 2)
    return probe


def run_side_by_side(jobs: list[Callable[[], T]], timeout_s: float) -> list[T | None]:
    """Run jobs in daemon threads; None for a job still running at the deadline.

    Daemon threads because getaddrinfo has no timeout of its own and must not hold
    the agent open at exit.
    """
    results: list[T | None] = [None] * len(jobs)

    def runner(index: int, job: Callable[[], T]) -> None:
        results[index] = job()

    threads = [
        threading.Thread(target=runner, args=(i, job), daemon=True, name="network-probe")
        for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return list(results)
