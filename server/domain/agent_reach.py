"""Whether an agent will ever fetch what is queued for a machine.

A machine reached without an agent (agentless.py: a row of `agents` with `reached_by` set)
has no session that claims commands: a diagnostic, a script run or a fix queued for it would
wait until it expired. Everything that queues a command for an agent's session calls
require_agent_of first, in its own transaction, with the row it already read; the agentless
paths (`--ssh`, `--winrm`), where the server itself does the work, do not.
"""

from __future__ import annotations

from sonde.server.domain.agents import AgentRecord
from sonde.server.errors import Conflict


class NoAgentThere(Conflict):
    """The machine has no agent: the server reaches it over SSH or WinRM with a flag."""


def require_agent_of(agent: AgentRecord, *, doing: str = "") -> None:
    """Refuse, naming the flag and the address to use, when `agent` (the row resolve_agent
    read) is a machine without an agent; `doing` names the command ("sonde diag")."""
    if not agent.reached_by:
        return
    how = f"--{agent.reached_by} USER@{agent.reach_address}"
    example = f" ({doing} {agent.hostname} {how})" if doing else ""
    raise NoAgentThere(
        f"{agent.hostname} ({agent.id}) has no agent: the server reaches it over "
        f"{agent.reached_by} at {agent.reach_address}, and nothing queued for an agent would "
        f"ever be fetched. Give {how}{example} so that the server connects itself"
    )
