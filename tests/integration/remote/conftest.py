"""One real sshd for the whole session (tests/support/sshd.py); clients are per test; SQLite
databases copied from the storage tests' migrated template."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sonde.server.remote.host_keys import TrustedHostKey
from sonde.server.storage.db import Database
from tests.integration.storage.databases import sqlite_template
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


@pytest.fixture
async def db(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database of this test's own (the storage tests' template)."""
    target = tmp_path / "sonde.db"
    shutil.copyfile(sqlite_template, target)
    database = await Database.open(f"sqlite+aiosqlite:///{target}")
    try:
        yield database
    finally:
        await database.close()


__all__ = ["sqlite_template"]
