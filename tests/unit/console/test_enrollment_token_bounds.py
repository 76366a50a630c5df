"""`sonde token create` refuses at parse time exactly what the server would refuse: the
bounds of --uses and --ttl are the domain's (server/domain/enrollment_tokens.py)."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from sonde.server.console import users
from sonde.server.domain import enrollment_tokens


def test_the_clis_bounds_are_the_servers() -> None:
    assert users.MAX_USES == enrollment_tokens.MAX_USES
    assert timedelta(seconds=users.MIN_TTL_S) == enrollment_tokens.MIN_TTL
    assert timedelta(seconds=users.MAX_TTL_S) == enrollment_tokens.MAX_TTL


def test_uses_from_one_to_the_servers_most() -> None:
    assert users.uses("1") == 1
    assert users.uses(str(enrollment_tokens.MAX_USES)) == enrollment_tokens.MAX_USES
    for bad in ("0", "-1", str(enrollment_tokens.MAX_USES + 1), "many"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected 1 to {users.MAX_USES}"):
            users.uses(bad)


def test_lifetime_from_a_minute_to_thirty_days() -> None:
    assert users.enrollment_lifetime("1m") == 60
    assert users.enrollment_lifetime("30d") == 30 * 86400
    assert users.enrollment_lifetime("1h") == 3600
    for bad in ("59s", "59", "31d", "5w", "0"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected between 1m and 30d"):
            users.enrollment_lifetime(bad)
