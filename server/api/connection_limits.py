"""Connection limits on a listener (docs/server.md, "Connection limits").

gRPC core enforces three of them on each listener, as channel arguments (grpcio 1.85, each
checked by tests/integration/server/test_connection_limits.py):

- `grpc.server_handshake_timeout_ms`: a connection that has not finished TLS and sent its
  HTTP/2 settings in time is closed (core's default is 120 s);
- `grpc.max_connection_idle_ms`: a connection with no call in flight for that long is sent
  GOAWAY and closed. An agent's Session stream is always in flight, so agents are never
  idle; a technician's channel reconnects by itself on its next call;
- `grpc.max_allowed_incoming_connections`: past that many connections on the listener, a new
  one is closed as soon as it is accepted, before its handshake costs anything.

gRPC core has no cap per peer address: see address_caps.py.
"""

from __future__ import annotations

import logging

from sonde.server.api.address_caps import AddressCap
from sonde.server.api.address_caps import enforced_here as address_caps_enforced_here
from sonde.server.settings import ConnectionLimits

log = logging.getLogger(__name__)

# Descriptors the server holds besides connections: the database, logs, gRPC's own.
FILES_BESIDES = 256


def listener_options(limits: ConnectionLimits, max_connections: int) -> list[tuple[str, int]]:
    """The channel arguments that bound one listener's connections."""
    return [
        ("grpc.server_handshake_timeout_ms", round(limits.handshake_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", round(limits.idle_connection_timeout_s * 1000)),
        ("grpc.max_allowed_incoming_connections", max_connections),
    ]


def address_caps(limits: ConnectionLimits, agent_port: int, console_port: int) -> list[AddressCap]:
    """The per-address caps to keep on the two listeners (none where they cannot be kept)."""
    wanted = [
        AddressCap(agent_port, limits.max_agent_connections_per_address, "agents"),
        AddressCap(console_port, limits.max_console_connections_per_address, "the console"),
    ]
    wanted = [cap for cap in wanted if cap.max_per_address > 0]
    if wanted and not address_caps_enforced_here():
        log.warning(
            "connection caps per address need the kernel's /proc/net/tcp, which this system "
            "does not have: only the caps per listener and the timeouts apply"
        )
        return []
    return wanted


def warn_if_over_file_limit(
    limits: ConnectionLimits, open_file_limit: int | None, *, web_form: bool = False
) -> None:
    """Say so at start when the listeners' caps cannot be reached within the file limit
    (the web form's too when it is served)."""
    web = limits.max_web_connections if web_form else 0
    wanted = limits.max_agent_connections + limits.max_console_connections + web + FILES_BESIDES
    if open_file_limit is not None and open_file_limit < wanted:
        log.warning(
            "the open-file limit (%d) is below the connection caps (%d agent + %d console "
            "+ %d web form connections, and about %d other files): raise the hard limit "
            "(LimitNOFILE= in a systemd unit, ulimit -Hn) or lower the caps in server.json",
            open_file_limit, limits.max_agent_connections, limits.max_console_connections,
            web, FILES_BESIDES,
        )  # fmt: skip
