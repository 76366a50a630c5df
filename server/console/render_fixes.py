"""Under a diagnostic's findings: how to run each raised finding's catalog fix."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from sonde.server.console.inert import inert
from sonde.server.console.render import sorted_findings
from sonde.v1 import diagnostics_pb2


def fix_hints(findings: Iterable[diagnostics_pb2.Finding], agent: str) -> list[Text]:
    """'To fix: sonde fix PC-1 disk.space (clear-temp-files-linux)' for each warning or
    critical finding that names a catalog script; nothing when none does."""
    lines: list[Text] = []
    for finding in sorted_findings(findings):
        if finding.severity < diagnostics_pb2.SEVERITY_WARNING or not finding.fix_script_id:
            continue
        line = Text("To fix: ", style="bold")
        line.append(inert(f"sonde fix {agent} {finding.check}"))
        line.append(inert(f" ({finding.fix_script_id})"), style="dim")
        lines.append(line)
    return lines
