"""Binding the server's two listeners, with a one-line reason when an address cannot be had.

Both listeners run with SO_REUSEPORT off (app.COMMON_OPTIONS), so an address another
process holds fails here instead of being shared with it.

grpcio's add_secure_port raises RuntimeError("Failed to bind to address ...") when the bind
fails (releases before 1.28 returned port 0; both are handled), and does not say why: the
reason is found by binding the address once more ourselves.
"""

from __future__ import annotations

import socket
import sys

import grpc

from sonde.server.settings import split_address


class CannotListen(Exception):
    """A listener's address could not be bound; the message is the line to print."""

    def __init__(self, address: str, purpose: str, reason: str) -> None:
        self.address = address
        self.purpose = purpose
        self.reason = reason
        super().__init__(f"cannot listen on {address} for {purpose}: {reason}")


def bind_listener(
    server: grpc.aio.Server,
    address: str,
    credentials: grpc.ServerCredentials,
    purpose: str,
) -> int:
    """Bind `address` on `server`; the port it got, or CannotListen saying why not."""
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise CannotListen(address, purpose, bind_failure_reason(address))
    return port


def bind_failure_reason(address: str) -> str:
    """Why the OS refuses to bind `address`, in its own words ("address already in use")."""
    host, port = split_address(address)
    try:
        candidates = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        return f"the host name does not resolve ({error.strerror})"
    for family, kind, proto, _, sockaddr in candidates:
        with socket.socket(family, kind, proto) as probe:
            if sys.platform != "win32":
                # As gRPC binds: a port whose old connections linger in TIME_WAIT is free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as error:
                return (error.strerror or str(error)).lower()
    return "gRPC could not bind it (set GRPC_VERBOSITY=debug to see why)"
