"""What technicians type to name a remote machine: HOST[:PORT] and USER@HOST[:PORT].

An IPv6 address takes brackets when a port follows ([fe80::1]:22); a bare one is a host
alone. Names are lower-cased (as credentials' host patterns compare them); ports are 1-65535.
"""

from __future__ import annotations

import re

from sonde.server.remote.shell import RemoteTarget, Transport

MAX_HOST_CHARS = 253
_HOST = re.compile(r"[a-z0-9._-]+|[0-9a-f:.]+")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._@\\-]{0,127}")
DEFAULT_PORTS = {Transport.SSH: 22, Transport.WINRM: 5986}


class BadAddress(ValueError):
    """What was typed does not name a machine; the message says what was expected."""


def host_and_port(text: str, default_port: int) -> tuple[str, int]:
    """HOST, HOST:PORT, [IPV6]:PORT or a bare IPv6 address -> (host, port)."""
    text = text.strip()
    host, port = text, str(default_port)
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise BadAddress(f"{text[:80]!r}: expected [IPV6]:PORT")
        host, port = inside, rest[1:] or str(default_port)
    elif text.count(":") == 1:
        host, port = text.split(":")
    host = host.lower().removesuffix(".")
    if not host or len(host) > MAX_HOST_CHARS or not _HOST.fullmatch(host):
        raise BadAddress(f"{text[:80]!r} is not a host name or address (pc-042.corp.lan, 10.1.2.3)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadAddress(f"{text[:80]!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def remote_target(text: str, transport: Transport) -> RemoteTarget:
    """USER@HOST[:PORT] -> the target; the user is required (nothing logs in as 'whoever')."""
    user, sep, address = text.strip().rpartition("@")
    if not sep or not _USER.fullmatch(user):
        raise BadAddress(
            f"{text[:80]!r}: expected USER@HOST[:PORT], e.g. helpdesk@10.1.2.3 or "
            "helpdesk@pc-042.corp.lan:2222"
        )
    host, port = host_and_port(address, DEFAULT_PORTS[transport])
    return RemoteTarget(transport, user, host, port)
