"""Reconnect delays and addresses: jittered exponential backoff, so a server restart brings
no stampede, over the list of server addresses the agent moves along on failure."""

from __future__ import annotations

import random
from collections.abc import Sequence

FIRST_DELAY_S = 1.0
GROWTH = 1.6
JITTER = 0.2
CAP_S = 120.0
# A server's retry hint above this is taken as this: a garbled value must not park the agent.
MAX_RETRY_AFTER_S = 3600.0


class Backoff:
    """1 s, then x1.6 per failed attempt, each +-20 % at random, never above 120 s.

    Once the nominal delay reaches the cap, the jitter only shortens it (down to -20 %),
    so agents that have been waiting long still spread out instead of all waiting 120 s.
    """

    def __init__(
        self,
        *,
        first_s: float = FIRST_DELAY_S,
        growth: float = GROWTH,
        jitter: float = JITTER,
        cap_s: float = CAP_S,
        rng: random.Random | None = None,
    ) -> None:
        self._first = first_s
        self._growth = growth
        self._jitter = jitter
        self._cap = cap_s
        self._rng = rng or random.Random()  # noqa: S311 (spreading load, not a secret)
        self._attempt = 0

    def nominal_delay(self, attempt: int) -> float:
        """The delay before jitter for the given attempt (0 is the first)."""
        # Stop at the cap: growth**attempt overflows a float after a long outage.
        delay = self._first
        for _ in range(attempt):
            delay *= self._growth
            if delay >= self._cap:
                return self._cap
        return min(delay, self._cap)

    def next_delay(self) -> float:
        nominal = self.nominal_delay(self._attempt)
        self._attempt += 1
        high = 1.0 + self._jitter if nominal < self._cap else 1.0
        return min(nominal * self._rng.uniform(1.0 - self._jitter, high), self._cap)

    def retry_after_delay(self, retry_after_s: float) -> float:
        """The wait a server asked for, plus up to 20 % jitter; the backoff does not grow."""
        asked = min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        return asked * self._rng.uniform(1.0, 1.0 + self._jitter)

    def reset(self) -> None:
        """A session got its Welcome: the next failure starts again from 1 s."""
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt


class AddressRotation:
    """Which server address the next attempt uses, and how long to wait before it.

    A failed connect or a dropped session moves on to the next address at once; only when
    every address has failed in turn (a full round) does the agent wait, for the backoff's
    next step. With one address that is a backoff step after every failure. A server's
    retry hint is waited out instead, then the next address is tried, and neither counts
    as a failure. A Welcome ends the round and resets the backoff.
    """

    def __init__(self, addresses: Sequence[str], backoff: Backoff) -> None:
        if not addresses:
            raise ValueError("the agent needs at least one server address")
        self._addresses = tuple(addresses)
        self._backoff = backoff
        self._index = 0
        self._failed_in_round = 0

    @property
    def current(self) -> str:
        return self._addresses[self._index]

    @property
    def count(self) -> int:
        return len(self._addresses)

    def connected(self) -> None:
        self._failed_in_round = 0
        self._backoff.reset()

    def failed(self) -> float:
        """Move on after a failure; the seconds to wait before trying `current`."""
        self._index = (self._index + 1) % len(self._addresses)
        self._failed_in_round += 1
        if self._failed_in_round < len(self._addresses):
            return 0.0
        self._failed_in_round = 0
        return self._backoff.next_delay()

    def asked_to_wait(self, retry_after_s: float) -> float:
        """Move on after a refusal with a retry hint; the seconds to wait first."""
        self._index = (self._index + 1) % len(self._addresses)
        return self._backoff.retry_after_delay(retry_after_s)
