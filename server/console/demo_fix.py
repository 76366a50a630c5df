"""The demo's fix: a low-risk catalog script run on the demo's agent for its ticket, and the
verification that follows (the closed loop), with the real programs and the real catalog.

The catalog this release ships (sonde.catalog.folder.shipped_catalog) is signed by the real
`sonde-catalog sign` with the demo server's own catalog key, published, and its
clear-temp-files script runs on the demo machine: it removes only temporary files nobody has
touched for a year, and never a cache (parameters below), so trying the demo costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sonde.server.console.client import ConsoleClient
from sonde.v1 import console_pb2

# The fix per platform the agent reports; a platform without one skips the fix steps.
DEMO_FIXES = {
    "linux": ("clear-temp-files-linux", {"older_than_days": "365", "include_caches": "0"}),
    "windows": ("clear-temp-files-windows", {"older_than_days": "365"}),
}
RUN_TIMEOUT_S = 60.0
VERIFY_TIMEOUT_S = 60.0
_POLL_S = 0.2
_OPEN = (
    console_pb2.COMMAND_STATE_QUEUED,
    console_pb2.COMMAND_STATE_DELIVERED,
    console_pb2.COMMAND_STATE_RUNNING,
    console_pb2.COMMAND_STATE_PENDING_APPROVAL,
)


class FixNotDone(Exception):
    """The fix or its verification did not finish in time, or the run did not start."""


def publish(client: ConsoleClient, bundle: Path) -> int:
    """Load the signed bundle on the server; how many entries it holds."""
    request = console_pb2.PublishCatalogRequest(bundle=bundle.read_bytes())
    return len(client.call(client.stub.PublishCatalog, request).scripts)


def ask(
    client: ConsoleClient, agent: console_pb2.Agent, ticket_id: int
) -> console_pb2.ScriptRunInfo:
    """Ask for the platform's demo fix, for the ticket, resolving it if the finding clears."""
    script_id, parameters = DEMO_FIXES[agent.platform]
    request = console_pb2.RunScriptRequest(
        agent=agent.id,
        script_id=script_id,
        parameters=parameters,
        ticket_id=ticket_id,
        finding="disk.space",
        resolve_if_cleared=True,
    )
    return client.call(client.stub.RunScript, request).run


def wait_ended(client: ConsoleClient, run_id: str) -> console_pb2.ScriptRunInfo:
    """The run once it has ended (refused by the agent, say, ends it too)."""
    return _poll(client, run_id, lambda run: run.command.state not in _OPEN, RUN_TIMEOUT_S)


def wait_verified(client: ConsoleClient, run_id: str) -> console_pb2.ScriptRunInfo:
    """The run once its verify check is in (cleared, not cleared, or unverified)."""

    def verified(run: console_pb2.ScriptRunInfo) -> bool:
        return run.verification.state not in (
            console_pb2.VERIFICATION_STATE_UNSPECIFIED,
            console_pb2.VERIFICATION_STATE_PENDING,
        )

    return _poll(client, run_id, verified, VERIFY_TIMEOUT_S)


def _poll(
    client: ConsoleClient,
    run_id: str,
    done: Callable[[console_pb2.ScriptRunInfo], bool],
    timeout_s: float,
) -> console_pb2.ScriptRunInfo:
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.call(client.stub.GetRun, console_pb2.GetRunRequest(id=run_id)).run
        if done(run):
            return run
        if time.monotonic() > deadline:
            raise FixNotDone(f"run {run_id} did not get there within {timeout_s:.0f}s")
        time.sleep(_POLL_S)
