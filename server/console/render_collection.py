"""How a snapshot was collected, in one line: by its agent, or by the server over SSH or WinRM
(Snapshot.collected_by), and why the shell was used when it was."""

from __future__ import annotations

from rich.text import Text

from sonde.server.console.inert import inert
from sonde.v1 import diagnostics_pb2

_HOW = {
    diagnostics_pb2.COLLECTED_BY_UNSPECIFIED: "by its agent",
    diagnostics_pb2.COLLECTED_BY_AGENT: "by its agent",
    diagnostics_pb2.COLLECTED_BY_SSH_PYTHON: "over SSH, by the agent's collectors run there",
    diagnostics_pb2.COLLECTED_BY_SSH_SHELL: "over SSH, by shell commands",
    diagnostics_pb2.COLLECTED_BY_WINRM: "over WinRM, by the agent's collect.ps1 run there",
}


def collected_by_line(snapshot: diagnostics_pb2.Snapshot, note: str = "") -> Text:
    """'collected over SSH, by shell commands (python3 there has no psutil)'."""
    line = Text(f"collected {_HOW.get(snapshot.collected_by, 'by an unknown way')}", style="dim")
    if note:
        line.append(f" ({inert(note)})", style="dim")
    return line
