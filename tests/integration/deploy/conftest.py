"""Push install tests: one wheelhouse per source tree, shared by the xdist workers
(tests/support/deploy_hosts.py), real sshd hosts, a real server on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.storage.databases import db_url, pg_url, sqlite_template
from tests.support.deploy_hosts import TestHost, shared_wheelhouse, start_host
from tests.support.live_server import LiveServer, live_server
from tests.support.sshd import have_sshd


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not have_sshd():
        pytest.fail("openssh-server is not installed: apt-get install openssh-server (.ci/run)")
    return shared_wheelhouse()


__all__ = ["db_url", "pg_url", "sqlite_template"]


@pytest.fixture(scope="session")
def agent_template(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """Site-packages with the agent installed once, for hosts provisioned with it."""
    from tests.support.deploy_hosts import build_agent_template

    return build_agent_template(tmp_path_factory.mktemp("deploy") / "template", wheelhouse)


# The Linux push install's server and one sshd host; the Windows and fleet tests give their own
# `live` (with an MSI, a package listener, an agent template).
@pytest.fixture
async def live(db_url: str, tmp_path: Path, wheelhouse: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url, wheelhouse=wheelhouse) as running:
        yield running


@pytest.fixture
def host(tmp_path: Path) -> Iterator[TestHost]:
    started = start_host(tmp_path / "hosts")
    yield started
    started.stop()
