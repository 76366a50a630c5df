"""Limits that would make no sense are refused when they are made, naming the field."""

from __future__ import annotations

import pytest

from sonde.agent.remediation import RunLimits


@pytest.mark.parametrize(
    ("field", "value", "refusal"),
    [
        ("timeout_s", 0, "timeout_s must be above 0 and at most 21600"),
        ("timeout_s", 21601, "timeout_s must be above 0"),
        ("output_cap_bytes", -1, "output_cap_bytes must be 0 or more"),
        ("chunk_bytes", 0, "chunk_bytes must be at least 1"),
        ("kill_grace_s", -0.5, "kill_grace_s must be 0 or more"),
        ("observe_interval_s", 0, "observe_interval_s must be above 0"),
    ],
)
def test_a_senseless_limit_is_refused(field: str, value: float, refusal: str) -> None:
    with pytest.raises(ValueError, match=refusal):
        RunLimits(**{field: value})  # type: ignore[arg-type]


def test_the_defaults_are_the_issue_s() -> None:
    limits = RunLimits()
    assert limits.output_cap_bytes == 1024 * 1024
    assert limits.chunk_bytes == 16 * 1024
    assert limits.timeout_s is None  # the manifest's
