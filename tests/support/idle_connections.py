"""Connections that never log in, for the connection-limit tests: raw TCP (no TLS), TLS with
no HTTP/2, and HTTP/2 with its settings sent but no call; and whether the server closed them.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path

# The HTTP/2 client preface and an empty SETTINGS frame: enough for gRPC core's handshake.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


class HalfOpen(Enum):
    TCP = "TCP connected, no TLS"
    TLS = "TLS done, no HTTP/2"
    HTTP2 = "HTTP/2 settings sent, no call"


def open_connections(
    port: int, kind: HalfOpen, count: int, ca_file: Path | None = None, server_name: str = ""
) -> list[socket.socket]:
    """`count` connections to 127.0.0.1:port that go no further than `kind`."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.set_alpn_protocols(["h2"])

    def one(_: int) -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        if kind is HalfOpen.TCP:
            return connection
        tls = context.wrap_socket(connection, server_hostname=server_name)
        if kind is HalfOpen.HTTP2:
            tls.sendall(HTTP2_PREFACE)
        return tls

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def closed_by_server(connection: socket.socket) -> bool:
    """True when the server has closed it (end of stream or reset); reads what it sent."""
    connection.setblocking(False)
    try:
        while True:
            if connection.recv(65536) == b"":
                return True
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    except OSError:  # reset, or a TLS alert: closed all the same
        return True


def wait_all_closed(connections: Sequence[socket.socket], timeout: float) -> float:
    """Seconds until the server closed every one; AssertionError saying how many are left."""
    started = time.monotonic()
    open_ones = list(connections)
    while open_ones:
        open_ones = [c for c in open_ones if not closed_by_server(c)]
        if open_ones and time.monotonic() - started > timeout:
            raise AssertionError(
                f"{len(open_ones)} of {len(connections)} connections still open after {timeout} s"
            )
        time.sleep(0.2)
    return time.monotonic() - started


def count_open(connections: Sequence[socket.socket]) -> int:
    return sum(not closed_by_server(c) for c in connections)


@contextlib.contextmanager
def closing_all(connections: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield connections
    finally:
        for connection in connections:
            connection.close()
