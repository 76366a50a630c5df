"""`pip install sonde-helpdesk` (no extras) gives a working agent that never imports server deps."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SERVER_ONLY = (
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "rich",
    "grpc_health",
    "sonde.server",
)

# Runs the agent's code paths with the server's packages made unimportable.
PROBE = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {SERVER_ONLY!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"the agent imported {{name}}, a server-only package")
            return None

    sys.meta_path.insert(0, Block())
    import sonde.agent.transport, sonde.agent.enroll, sonde.agent.journal, sonde.agent.state
    from sonde.agent.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_agent_collects_without_server_packages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "collect", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["snapshot"]["system"]["hostname"]


def test_agent_help_runs_without_server_packages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("enroll", "run", "collect"):
        assert command in done.stdout
