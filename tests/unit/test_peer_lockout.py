"""The per-address failure limiter (server/api/peer_lockout.py) and the per-stream warning
limit (server/api/agent_session.py), on a clock the test moves by hand."""

from __future__ import annotations

import logging

import pytest

from sonde.server.api.agent_session import StreamWarnings
from sonde.server.api.peer_lockout import PeerLockout, peer_address
from sonde.server.errors import ResourceExhausted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.9:5123", "10.0.0.9"),
        ("ipv6:[2001:db8:1:2::7]:5123", "2001:db8:1:2::/64"),
        ("ipv6:%5B2001:db8:1:2:ffff::1%5D:443", "2001:db8:1:2::/64"),
        ("ipv6:[::1]:40000", "::/64"),
        ("unix:/run/sonde.sock", "unix:/run/sonde.sock"),
        ("ipv4:not-an-address:1", "ipv4:not-an-address:1"),
        ("", ""),
    ],
)
def test_failures_count_against_the_address_not_the_connection(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_the_failure_that_reaches_the_limit_locks_the_address_until_the_window_ends() -> None:
    clock = Clock()
    lockout = PeerLockout("failed enrollments", max_failures=3, window_s=300, monotonic=clock)
    assert [lockout.failed("ipv4:10.0.0.9:1") for _ in range(2)] == [False, False]
    assert lockout.refusal("ipv4:10.0.0.9:2") is None
    clock.now += 100
    assert lockout.failed("ipv4:10.0.0.9:3")  # the third, from yet another connection
    refusal = lockout.refusal("ipv4:10.0.0.9:4")
    assert isinstance(refusal, ResourceExhausted)
    assert refusal.retry_after_ms == 200_000
    assert str(refusal) == "too many failed enrollments from 10.0.0.9; retry in 3 min 20 s"
    assert lockout.refusal("ipv4:10.0.0.10:1") is None  # another address
    clock.now += 199.5
    late = lockout.refusal("ipv4:10.0.0.9:5")
    assert late is not None
    assert late.retry_after_ms == 500
    assert str(late).endswith("retry in 1 s")
    clock.now += 0.5
    assert lockout.refusal("ipv4:10.0.0.9:6") is None
    # The count starts over with the next failure.
    assert not lockout.failed("ipv4:10.0.0.9:7")
    assert lockout.refusal("ipv4:10.0.0.9:8") is None


def test_one_ipv6_host_cannot_spread_its_failures_over_its_64() -> None:
    lockout = PeerLockout("failed authentications", max_failures=2, monotonic=Clock())
    lockout.failed("ipv6:[2001:db8:0:7::1]:1")
    lockout.failed("ipv6:[2001:db8:0:7:aaaa:bbbb:cccc:dddd]:2")
    assert lockout.refusal("ipv6:[2001:db8:0:7::9]:3") is not None
    assert lockout.refusal("ipv6:[2001:db8:0:8::1]:3") is None


def test_memory_is_bounded_and_lapsed_windows_are_forgotten() -> None:
    clock = Clock()
    lockout = PeerLockout("failed enrollments", max_failures=5, max_peers=100, monotonic=clock)
    for n in range(10_000):
        lockout.failed(f"ipv4:10.{n // 65536}.{n // 256 % 256}.{n % 256}:1")
    assert lockout.tracked() == 100
    # The newest windows are the ones kept.
    for _ in range(4):
        lockout.failed("ipv4:10.0.39.15:1")  # n = 9,999
    assert lockout.refusal("ipv4:10.0.39.15:2") is not None
    clock.now += lockout.window_s
    lockout.failed("ipv4:192.0.2.1:1")
    assert lockout.tracked() == 1


def test_a_lockout_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    lockout = PeerLockout("failed enrollments", max_failures=3, monotonic=Clock())
    with caplog.at_level(logging.WARNING, "sonde.server.api.peer_lockout"):
        for _ in range(10):
            lockout.failed("ipv4:10.0.0.9:1")
    assert [r.getMessage() for r in caplog.records] == [
        "3 failed enrollments from 10.0.0.9 within 300 s: refused until that window ends"
    ]


def test_a_stream_gets_ten_warnings_a_minute_then_one_line_counting_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    warnings = StreamWarnings("agent-a", monotonic=clock)
    with caplog.at_level(logging.WARNING, "sonde.server.api.agent_session"):
        for n in range(10_000):
            warnings.warn("sent message %d", n)
        clock.now += 60
        warnings.warn("sent message %s", "late")
        warnings.flush()  # nothing more was left out
    assert [r.getMessage() for r in caplog.records] == [
        *(f"agent agent-a sent message {n}" for n in range(10)),
        "agent agent-a: 9990 more warnings about its stream in the last 60 s, left out",
        "agent agent-a sent message late",
    ]
