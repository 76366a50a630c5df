"""Running a catalog script on this machine (issue 7, execution): see runner.py.

The agent's RunScript command calls `run` once the envelope, the catalog signature, the
policy and the values have been checked; docs/remediation.md says what the run is and is not
protected from.
"""

from sonde.agent.remediation.output import OutputCallback, OutputChunk, OutputStream
from sonde.agent.remediation.runner import RunLimits, RunOutcome, ScriptCannotRun, run

__all__ = [
    "OutputCallback",
    "OutputChunk",
    "OutputStream",
    "RunLimits",
    "RunOutcome",
    "ScriptCannotRun",
    "run",
]
