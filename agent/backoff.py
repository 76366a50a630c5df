"""Reconnect delays: jittered exponential backoff, so a server restart brings no stampede."""

from __future__ import annotations

import random

FIRST_DELAY_S = 1.0
GROWTH = 1.6
JITTER = 0.2
CAP_S = 120.0


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

    def reset(self) -> None:
        """A session got its Welcome: the next failure starts again from 1 s."""
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt
