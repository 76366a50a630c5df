"""How often one address may send the web form: at most `count` requests in `window_s`,
counted in this process (each replica counts its own), in memory bounded by MAX_PEERS. An IPv6
client counts by its /64, as the console's lockouts do (one host is usually given a whole /64)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from sonde.server.peer_addresses import http_peer_address

MAX_PEERS = 10_000


class PeerLimiter:
    def __init__(
        self, count: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._count = count
        self._window_s = window_s
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_s(self, peer: str) -> float:
        """0 and the request counted, or how long `peer` must wait before the next one."""
        now = self._clock()
        peer = http_peer_address(peer)
        times = self._seen.pop(peer, None) or deque()
        while times and now - times[0] >= self._window_s:
            times.popleft()
        self._seen[peer] = times  # the most recent peer last
        if len(times) >= self._count:
            return self._window_s - (now - times[0])
        times.append(now)
        while len(self._seen) > MAX_PEERS:
            self._seen.popitem(last=False)
        return 0.0
