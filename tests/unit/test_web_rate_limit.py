"""The web form's per-address limit: at most `count` requests in any `window_s`, an IPv6 client
counted by its /64 (it may own all of it), the oldest addresses forgotten past MAX_PEERS."""

from __future__ import annotations

from sonde.server.peer_addresses import http_peer_address
from sonde.server.web.rate_limit import PeerLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_count_requests_in_any_window_then_the_wait_until_the_oldest_lapses() -> None:
    clock = Clock()
    limiter = PeerLimiter(3, 600.0, clock)
    for _ in range(3):
        assert limiter.wait_s("192.0.2.7") == 0
        clock.now += 100
    assert limiter.wait_s("192.0.2.7") == 300.0  # the first of the three was 300 s ago
    assert limiter.wait_s("192.0.2.8") == 0  # another address has its own
    clock.now += 300
    assert limiter.wait_s("192.0.2.7") == 0


def test_an_ipv6_client_counts_by_its_slash_64() -> None:
    limiter = PeerLimiter(2, 600.0, Clock())
    assert limiter.wait_s("2001:db8:1:2::7") == 0
    assert limiter.wait_s("2001:db8:1:2:ffff::1") == 0
    assert limiter.wait_s("2001:db8:1:2::abcd") > 0  # same /64: one budget
    assert limiter.wait_s("2001:db8:1:3::7") == 0
    assert http_peer_address("2001:db8:1:2::7") == "2001:db8:1:2::/64"
    assert http_peer_address("10.0.0.9") == "10.0.0.9"
    assert http_peer_address("not an address") == "not an address"
