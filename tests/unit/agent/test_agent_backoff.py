"""Reconnect backoff: 1 s first, x1.6 per attempt, +-20 % jitter, never above 120 s; the
address rotation that applies it once per full round; a server's retry hint."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from sonde.agent.backoff import MAX_RETRY_AFTER_S, AddressRotation, Backoff


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


def test_a_retry_hint_is_waited_out_with_upward_jitter_and_does_not_grow_the_backoff() -> None:
    backoff = Backoff(rng=random.Random(7))
    backoff.next_delay()
    hinted = [backoff.retry_after_delay(5.0) for _ in range(500)]
    assert min(hinted) >= 5.0
    assert max(hinted) <= 6.0
    assert max(hinted) - min(hinted) > 0.5  # spread, so a shed fleet does not return at once
    assert backoff.attempt == 1
    assert 1.6 * 0.8 <= backoff.next_delay() <= 1.6 * 1.2


def test_a_retry_hint_is_bounded() -> None:
    backoff = Backoff(jitter=0.0)
    assert backoff.retry_after_delay(10**9) == MAX_RETRY_AFTER_S
    assert backoff.retry_after_delay(-3.0) == 0.0


def test_one_address_waits_a_backoff_step_after_every_failure() -> None:
    rotation = AddressRotation(["a:1"], Backoff(jitter=0.0))
    assert [rotation.failed() for _ in range(4)] == [1.0, 1.6, 1.6 * 1.6, 1.6**3]
    assert rotation.current == "a:1"


def test_failures_move_along_the_list_and_wait_once_per_full_round() -> None:
    rotation = AddressRotation(["a:1", "b:2", "c:3"], Backoff(jitter=0.0))
    tried = [rotation.current]
    waits = []
    for _ in range(9):
        waits.append(rotation.failed())
        tried.append(rotation.current)
    assert tried == ["a:1", "b:2", "c:3"] * 3 + ["a:1"]
    assert waits == [0.0, 0.0, 1.0, 0.0, 0.0, 1.6, 0.0, 0.0, 1.6 * 1.6]


def test_a_welcome_resets_the_round_and_the_backoff() -> None:
    rotation = AddressRotation(["a:1", "b:2"], Backoff(jitter=0.0))
    for _ in range(6):
        rotation.failed()  # three full rounds
    assert rotation.current == "a:1"
    rotation.connected()
    # The session on a:1 drops: b:2 at once, then a full round's first step.
    assert rotation.failed() == 0.0
    assert rotation.current == "b:2"
    assert rotation.failed() == 1.0
    assert rotation.current == "a:1"


def test_a_retry_hint_moves_on_without_counting_as_a_failure() -> None:
    rotation = AddressRotation(["a:1", "b:2"], Backoff(jitter=0.0))
    assert rotation.asked_to_wait(3.0) == 3.0
    assert rotation.current == "b:2"
    assert rotation.asked_to_wait(3.0) == 3.0
    assert rotation.current == "a:1"
    # Neither hint counted: a:1 then b:2 fail as a fresh round, starting from 1 s.
    assert rotation.failed() == 0.0
    assert rotation.failed() == 1.0


def test_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one server address"):
        AddressRotation([], Backoff())
