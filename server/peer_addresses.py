"""The address behind a gRPC peer string, which is what limits count against (not the port:
a client can open as many connections, and so ports, as it likes)."""

from __future__ import annotations

import ipaddress
import urllib.parse


def peer_address(peer: str) -> str:
    """The address a failure counts against: 'ipv4:10.0.0.9:5123' -> '10.0.0.9',
    'ipv6:[2001:db8:1:2::7]:5123' -> '2001:db8:1:2::/64'; anything else as given."""
    family, _, rest = peer.partition(":")
    host = urllib.parse.unquote(rest).rpartition(":")[0].strip("[]")
    try:
        if family == "ipv4":
            return str(ipaddress.IPv4Address(host))
        if family == "ipv6":
            return str(ipaddress.IPv6Network(f"{host}/64", strict=False))
    except ValueError:
        pass
    return peer


def http_peer_address(remote: str) -> str:
    """The same for an HTTP client's bare address ('10.0.0.9', '2001:db8:1:2::7'), as an
    aiohttp request gives it: IPv4 by address, IPv6 by /64."""
    as_peer = f"ipv6:[{remote}]:0" if ":" in remote else f"ipv4:{remote}:0"
    found = peer_address(as_peer)
    return remote if found == as_peer else found  # not an address: as given
