"""One real sshd for the whole session (tests/support/sshd.py); clients are per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sonde.server.remote.host_keys import TrustedHostKey
from tests.support.sshd import Sshd, have_sshd, start_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not have_sshd():
        pytest.fail("openssh-server is not installed: apt-get install openssh-server (.ci/run)")
    daemon = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield daemon
    daemon.stop()


@pytest.fixture
def trusted(sshd: Sshd) -> list[TrustedHostKey]:
    """The sshd's real host key, as a technician would have trusted it."""
    return [
        TrustedHostKey(
            "127.0.0.1", sshd.port, sshd.host_key, "admin", datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        )
    ]
