"""A snapshot of a machine without an agent, over any RemoteShell (SSH today).

The agent's own collectors when the machine's python3 can run them (agent_payload.py), else
the POSIX shell collection (shell_collect.py); the snapshot says which (collected_by), and
`note` why the shell was used. The checks are the server's to evaluate, as for an agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sonde.server.remote.agent_payload import can_run_collectors, collect_with_agent_code
from sonde.server.remote.shell import RemoteShell
from sonde.server.remote.shell_collect import collect_with_shell
from sonde.v1 import diagnostics_pb2


@dataclass(frozen=True)
class RemoteSnapshot:
    snapshot: diagnostics_pb2.Snapshot
    note: str  # why the shell collection was used; "" when the agent's collectors ran


async def collect_remote_snapshot(
    shell: RemoteShell,
    *,
    python: str = "python3",
    shell_only: bool = False,
    collectors: Sequence[str] = (),
) -> RemoteSnapshot:
    """Collect from the machine `shell` is open to; RemoteError when neither way works.
    `collectors`: only those where the agent's collectors run (a run's verification); the
    shell collection always gathers all it can."""
    if shell_only:
        return RemoteSnapshot(await collect_with_shell(shell), "the shell collection was asked for")
    missing = await can_run_collectors(shell, python)
    if missing:
        return RemoteSnapshot(await collect_with_shell(shell), missing)
    return RemoteSnapshot(await collect_with_agent_code(shell, python, collectors=collectors), "")
