"""Failures per peer address, in memory: a peer that fails too often is refused for a while.

Enroll and console authentication each keep one PeerLockout (numbers below, docs/server.md).
The first failure from an address opens its window; the `max_failures`-th within it locks
the address out until the window ends: every call from it is refused before any work
(RESOURCE_EXHAUSTED, with the time left as its retry hint). A success does not reset the
count, so valid calls cannot be interleaved to keep guessing. IPv4 peers are counted by
address, IPv6 peers by /64 (one host is usually given a whole /64). At most `max_peers`
addresses are held (about 200 bytes each); past that the oldest window is forgotten first.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sonde.agent.checks.wording import duration
from sonde.server.errors import ResourceExhausted
from sonde.server.peer_addresses import peer_address

__all__ = ["AUTH_FAILURES", "ENROLL_FAILURES", "PeerLockout", "peer_address"]

log = logging.getLogger(__name__)

# Enroll: an agent fails once or twice when its string is wrong or used up; a script that
# enrolls a whole office behind one NAT address with a dead token stops after 20.
ENROLL_FAILURES = 20
# Console: a technician mistypes a token a few times; a helpdesk behind one NAT address
# shares this budget (and a stale token in one script must not lock all of it out at once),
# hence more room than for enrollment. A token is 256 bits: the limit bounds the lookups.
AUTH_FAILURES = 100
WINDOW_S = 300.0
MAX_PEERS = 10_000


@dataclass
class _Window:
    started: float
    failures: int = 0


class PeerLockout:
    """`what` names the failures, for the refusal and the one warning a lockout logs:
    "failed enrollments"."""

    def __init__(
        self,
        what: str,
        *,
        max_failures: int,
        window_s: float = WINDOW_S,
        max_peers: int = MAX_PEERS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.max_failures, self.window_s = what, max_failures, window_s
        self._max_peers = max_peers
        self._monotonic = monotonic
        # In the order the windows opened: the oldest, and the lapsed, come first.
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def refusal(self, peer: str) -> ResourceExhausted | None:
        """None when `peer` may call; else the refusal to answer with, its retry hint the
        time left in the window."""
        address = peer_address(peer)
        window = self._windows.get(address)
        if window is None or window.failures < self.max_failures:
            return None
        left_ms = math.ceil((window.started + self.window_s - self._monotonic()) * 1000)
        if left_ms <= 0:
            return None
        return ResourceExhausted(
            f"too many {self.what} from {address}; retry in {duration(math.ceil(left_ms / 1000))}",
            retry_after_ms=left_ms,
        )

    def failed(self, peer: str) -> bool:
        """Count one failure from `peer`; True when it is the one that locks the peer out."""
        now = self._monotonic()
        while self._windows:  # forget lapsed windows, oldest first
            oldest = next(iter(self._windows.values()))
            if now - oldest.started < self.window_s:
                break
            self._windows.popitem(last=False)
        address = peer_address(peer)
        window = self._windows.get(address)
        if window is None:
            if len(self._windows) >= self._max_peers:
                self._windows.popitem(last=False)
            window = self._windows[address] = _Window(now)
        window.failures += 1
        if window.failures != self.max_failures:
            return False
        log.warning(
            "%d %s from %s within %.0f s: refused until that window ends",
            window.failures,
            self.what,
            address,
            self.window_s,
        )
        return True

    def tracked(self) -> int:
        return len(self._windows)
