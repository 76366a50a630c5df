"""`sonde sla policy set` reads its targets as business time and refuses days at parse time."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sonde.server.console.errors import CliError
from sonde.server.console.sla import at_risk_share, business_time, calendar_definition


@pytest.mark.parametrize(("typed", "seconds"), [("4h", 14400), ("30m", 1800), ("1h30m", 5400)])
def test_business_time_in_hours_and_minutes(typed: str, seconds: int) -> None:
    assert business_time(typed) == seconds


@pytest.mark.parametrize("typed", ["2d", "1w", "1d4h"])
def test_a_target_in_days_is_refused_since_a_business_day_has_the_calendar_s_length(
    typed: str,
) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="say business hours"):
        business_time(typed)


@pytest.mark.parametrize("typed", ["", "h", "4x", "-4h", "99999h"])
def test_anything_else_is_not_a_target(typed: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a target"):
        business_time(typed)


@pytest.mark.parametrize("typed", ["0", "1", "0.01", "x"])
def test_the_at_risk_share_is_a_share_of_the_target(typed: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--at-risk"):
        at_risk_share(typed)


def test_a_toml_calendar_becomes_the_json_the_server_reads(tmp_path: Path) -> None:
    path = tmp_path / "paris.toml"
    path.write_text(
        'time_zone = "Europe/Paris"\nholidays = [2026-12-25]\n[hours]\n"mon-fri" = "09:00-18:00"\n'
    )
    assert calendar_definition(path) == (
        '{"time_zone": "Europe/Paris", "holidays": ["2026-12-25"], '
        '"hours": {"mon-fri": "09:00-18:00"}}'
    )


def test_a_calendar_file_over_the_server_s_limit_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_text("[" + "0," * 200_000 + "0]")
    with pytest.raises(CliError, match="is over 262144 bytes"):
        calendar_definition(path)
