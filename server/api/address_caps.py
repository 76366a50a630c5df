"""A cap on how many TCP connections one peer address holds on a listener (Linux).

gRPC core counts connections per listener only, and what it has not yet handed to Python (a
handshake, an idle connection) Python never sees, so a cap per address cannot be kept in an
interceptor. Instead the server looks at its own sockets: every `interval_s` it reads the
kernel's table of TCP connections (/proc/net/tcp and tcp6), counts the established ones on
the listener's port by remote address (IPv4 by address, IPv6 by /64, as PeerLockout), and
shuts down the newest of those past the cap: the oldest, such as agents' sessions, are kept.
Age is the scan that first saw a connection (socket inodes are handed out in per-CPU batches,
so they say little about age), then, among those a scan first saw together, the inode. gRPC
then sees the connection end and closes it as it would any other. A socket is shut down only
through a duplicate of the server's own descriptor whose inode is checked first, so a
descriptor number reused meanwhile is never touched.

What it does not bound: between two scans an address can hold more (at most the listener's
own cap); connections in the kernel's accept queue are not the server's yet. Where there is
no /proc/net/tcp (Windows, macOS) the cap is not enforced, and the server says so at start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
ESTABLISHED = "01"
SCAN_INTERVAL_S = 2.0


@dataclass(frozen=True)
class Connection:
    address: str  # what the cap counts: an IPv4 address or an IPv6 /64
    inode: int


def enforced_here() -> bool:
    return TCP_TABLES[0].exists()


def _remote_address(hex_address: str) -> str:
    """'0100007F:1F90' or a tcp6 address -> what the cap counts it against."""
    host = bytes.fromhex(hex_address.partition(":")[0])
    # The kernel prints each 32-bit word in host order.
    words = b"".join(host[i : i + 4][::-1] for i in range(0, len(host), 4))
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words))
    address = ipaddress.IPv6Address(words)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network(f"{address}/64", strict=False))


def listener_connections(port: int, tables: Iterable[Path] = TCP_TABLES) -> Iterator[Connection]:
    """The established connections whose local port is `port`, from the kernel's tables."""
    local_suffix = f":{port:04X}"
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split(None, 10)
            if len(fields) < 10 or not fields[1].endswith(local_suffix):
                continue
            if fields[3] != ESTABLISHED or fields[9] == "0":
                continue
            yield Connection(_remote_address(fields[2]), int(fields[9]))


def over_cap(
    connections: Iterable[Connection],
    max_per_address: int,
    first_seen: Mapping[int, int] | None = None,
) -> dict[str, list[int]]:
    """Each address past the cap -> the inodes of its newest connections beyond it, oldest
    first by `first_seen` (inode -> the scan that first saw it), then by inode."""
    seen = first_seen or {}
    by_address: dict[str, list[int]] = defaultdict(list)
    for connection in connections:
        by_address[connection.address].append(connection.inode)
    return {
        address: sorted(inodes, key=lambda inode: (seen.get(inode, 0), inode))[max_per_address:]
        for address, inodes in by_address.items()
        if len(inodes) > max_per_address
    }


def _own_socket_descriptors() -> dict[int, int]:
    """Socket inode -> this process's descriptor for it."""
    found: dict[int, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found[int(target[8:-1])] = int(name)
    return found


def shut_down(inodes: Iterable[int]) -> int:
    """Shut down this process's sockets with these inodes; how many were."""
    wanted = set(inodes)
    done = 0
    for inode, descriptor in _own_socket_descriptors().items():
        if inode not in wanted:
            continue
        try:
            duplicate = os.dup(descriptor)
        except OSError:
            continue  # closed meanwhile
        try:
            if os.fstat(duplicate).st_ino != inode:
                continue  # the number now names another file
            with socket.socket(fileno=os.dup(duplicate)) as connection:
                connection.shutdown(socket.SHUT_RDWR)
            done += 1
        except OSError:
            continue  # ended by itself meanwhile
        finally:
            os.close(duplicate)
    return done


class AddressCap:
    """At most `max_per_address` connections from one address on the listener at `port`."""

    def __init__(
        self, port: int, max_per_address: int, purpose: str, interval_s: float = SCAN_INTERVAL_S
    ) -> None:
        self.port, self.max_per_address, self.purpose = port, max_per_address, purpose
        self.interval_s = interval_s
        self._warned: set[str] = set()
        self._scans = 0
        self._first_seen: dict[int, int] = {}  # inode -> the scan that first saw it

    def enforce(self) -> int:
        """One scan: shut down what is past the cap; how many connections were."""
        self._scans += 1
        connections = list(listener_connections(self.port))
        self._first_seen = {
            c.inode: self._first_seen.get(c.inode, self._scans) for c in connections
        }
        excess = over_cap(connections, self.max_per_address, self._first_seen)
        for address, inodes in excess.items():
            if address not in self._warned:
                self._warned.add(address)
                log.warning(
                    "%s holds more than %d connections to the listener for %s: closing its "
                    "newest %d (and any more past the cap from now on)",
                    address, self.max_per_address, self.purpose, len(inodes),
                )  # fmt: skip
        if not excess:
            return 0
        return shut_down(inode for inodes in excess.values() for inode in inodes)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self.enforce)
            except Exception:
                log.exception("could not check connections per address for %s", self.purpose)
