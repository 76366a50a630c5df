"""Reconnect backoff: 1 s first, x1.6 per attempt, +-20 % jitter, never above 120 s."""

from __future__ import annotations

import itertools
import random
import statistics

from sonde.agent.backoff import Backoff


def _sequences(runs: int, length: int) -> list[list[float]]:
    rng = random.Random(20261128)
    sequences = []
    for _ in range(runs):
        backoff = Backoff(rng=rng)
        sequences.append([backoff.next_delay() for _ in range(length)])
    return sequences


def test_nominal_sequence_grows_by_1_6_from_1_s_up_to_the_cap() -> None:
    backoff = Backoff()
    nominal = [backoff.nominal_delay(n) for n in range(15)]
    assert nominal[0] == 1.0
    for previous, current in itertools.pairwise(nominal):
        assert current == min(previous * 1.6, 120.0) or current == 120.0
    assert nominal[:4] == [1.0, 1.6, 1.6 * 1.6, 1.6**3]
    assert nominal[-1] == 120.0
    assert backoff.nominal_delay(10_000) == 120.0  # a week-long outage does not overflow


def test_every_delay_stays_within_20_percent_of_nominal_and_under_the_cap() -> None:
    nominal = Backoff()
    for sequence in _sequences(runs=300, length=20):
        for attempt, delay in enumerate(sequence):
            expected = nominal.nominal_delay(attempt)
            assert expected * 0.8 <= delay <= min(expected * 1.2, 120.0)


def test_jitter_spreads_delays_over_the_whole_band() -> None:
    firsts = [sequence[0] for sequence in _sequences(runs=2000, length=1)]
    assert 0.99 <= statistics.mean(firsts) <= 1.01
    assert min(firsts) < 0.82
    assert max(firsts) > 1.18
    assert statistics.pstdev(firsts) > 0.1  # uniform over +-0.2 gives about 0.115


def test_mean_growth_per_attempt_is_1_6() -> None:
    sequences = _sequences(runs=2000, length=6)
    means = [statistics.mean(s[n] for s in sequences) for n in range(6)]
    for previous, current in itertools.pairwise(means):
        assert 1.55 <= current / previous <= 1.65


def test_at_the_cap_agents_still_spread_out_but_never_exceed_120_s() -> None:
    capped = [sequence[-1] for sequence in _sequences(runs=1000, length=30)]
    assert max(capped) <= 120.0
    assert min(capped) >= 96.0
    assert statistics.pstdev(capped) > 5.0


def test_reset_starts_again_from_one_second() -> None:
    backoff = Backoff(rng=random.Random(1))
    for _ in range(10):
        backoff.next_delay()
    assert backoff.attempt == 10
    backoff.reset()
    assert 0.8 <= backoff.next_delay() <= 1.2
