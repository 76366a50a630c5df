"""Whether an agent will ever fetch what is queued for a machine.

A machine reached without an agent (agentless.py: a row of `agents` with `reached_by` set)
has no session that claims commands: a diagnostic, a script run or a fix queued for it would
wait until it expired. Everything that queues a command for an agent's session calls
require_agent_reachable (or require_agent_of, with the row it already read) first, in its
own transaction; the agentless paths (`--ssh`, `--winrm`), where the server itself does the
work, do not.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from sonde.server.domain.agents import AgentRecord
from sonde.server.errors import Conflict
from sonde.server.storage.tables import agents

_REACH = select(agents.c.hostname, agents.c.reached_by, agents.c.reach_address).where(
    agents.c.id == bindparam("reach_agent_id")
)


class NoAgentThere(Conflict):
    """The machine has no agent: the server reaches it over SSH or WinRM with a flag."""


def require_agent_reachable(connection: Connection, agent_id: str, *, doing: str = "") -> None:
    """Refuse, naming the flag and the address to use, when `agent_id` is a machine without
    an agent; `doing` names the command in the message ("sonde diag", "sonde run")."""
    row = connection.execute(_REACH, {"reach_agent_id": agent_id}).first()
    if row is not None:
        require_agent(agent_id, row.hostname, row.reached_by, row.reach_address, doing=doing)


def require_agent_of(agent: AgentRecord, *, doing: str = "") -> None:
    """require_agent_reachable for an agent row already read (resolve_agent): no new query."""
    require_agent(agent.id, agent.hostname, agent.reached_by, agent.reach_address, doing=doing)


def require_agent(
    agent_id: str, hostname: str, reached_by: str, reach_address: str, *, doing: str = ""
) -> None:
    if not reached_by:
        return
    how = f"--{reached_by} USER@{reach_address}"
    example = f" ({doing} {hostname} {how})" if doing else ""
    raise NoAgentThere(
        f"{hostname} ({agent_id}) has no agent: the server reaches it over {reached_by} at "
        f"{reach_address}, and nothing queued for an agent would ever be fetched. Give "
        f"{how}{example} so that the server connects itself"
    )
