"""A snapshot of a Windows machine without an agent: the agent's own collect.ps1 over WinRM.

The script's bytes are the ones the agent runs (document.collection_script), sent as a run
file of the launcher (winrm_powershell.script_document), so no text of it touches the command
line; its one JSON document is parsed by the agent's own windows_facts, so the same checks
give the same findings as a Windows agent on the same outputs. What the document does not
give (the CPU busy share, the process list: the agent reads them with psutil) is reported
unavailable, never guessed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sonde.agent.collectors.windows.document import collection_script, windows_facts
from sonde.server.remote.shell import RemoteError, RemoteErrorKind
from sonde.server.remote.winrm import WinRMShell
from sonde.server.remote.winrm_powershell import script_document
from sonde.v1 import diagnostics_pb2

SCRIPT_NAME = "collect.ps1"
TIMEOUT_S = 90.0  # CIM, the event log and Windows Update's COM object take seconds each
MAX_OUTPUT = 16 * 1024 * 1024  # windows_facts' own bound on a document
# The agent's collectors on Windows that read psutil, not the document.
NOT_IN_THE_DOCUMENT = ("cpu", "processes")
_State = diagnostics_pb2.CollectorState


def _start_of(end: datetime, took: timedelta) -> datetime:
    """When the script started by the machine's clock; its end when that clock says a time
    so early (year 1) that there is no going back from it."""
    try:
        return end - took
    except OverflowError:
        return end


async def collect_windows_over_winrm(
    shell: WinRMShell, *, timeout_s: float = TIMEOUT_S
) -> diagnostics_pb2.Snapshot:
    """collect.ps1 run on the host `shell` is open to, as a Snapshot collected by WinRM;
    RemoteError when the script gave no document at all."""
    document = script_document(SCRIPT_NAME, collection_script())
    result = await shell.run_document(document, timeout_s=timeout_s, max_output=MAX_OUTPUT)
    where = shell.target.label
    if result.stdout_truncated:
        raise RemoteError(
            RemoteErrorKind.PROTOCOL,
            f"the Windows collection on {where} printed more than {MAX_OUTPUT // 2**20} MiB",
        )
    if not result.stdout.strip():
        said = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["nothing"]
        raise RemoteError(
            RemoteErrorKind.PROTOCOL,
            f"the Windows collection on {where} printed no document (exit code "
            f"{result.exit_code}): {said[0][:300]}",
        )
    snapshot = diagnostics_pb2.Snapshot(collected_by=diagnostics_pb2.COLLECTED_BY_WINRM)
    facts = windows_facts(result.stdout)
    facts.into(snapshot)
    if facts.collected_at is not None:
        # The machine's clock, as in an agent's snapshot, so system.clock_skew reads it; the
        # script stamps its end, a snapshot its start (the check adds duration_ms back).
        started = _start_of(facts.collected_at, timedelta(milliseconds=result.duration_ms))
        snapshot.collected_at.FromDatetime(started)
    else:
        snapshot.collected_at.GetCurrentTime()
    for name in NOT_IN_THE_DOCUMENT:
        snapshot.collectors.add(
            name=name,
            state=_State.COLLECTOR_STATE_UNAVAILABLE,
            reason="not collected over WinRM: the agent reads it on the machine itself",
        )
    snapshot.duration_ms = result.duration_ms
    return snapshot
