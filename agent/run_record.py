"""The agent's record of the run orders whose script started (state_dir/runs/), and what the
next start makes of a run that never finished.

Kept out of agent/remediation/ (whose package loads the runner) on purpose: `sonde-agent run`
reads it at every start, and the idle agent loads neither cryptography, OpenSSL nor shutil
(tests/unit/agent/test_agent_run_footprint.py).

runs/<the command id in hex>.run holds JSON: command_id, expires_at (ISO 8601), state
(started or finished). Written atomically and fsynced (sonde.private_files) BEFORE the script
starts, so a crash leaves the record as it was before or after, never half of it.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from sonde.agent.journal import Outbox, is_command_id
from sonde.agent.paths import RUNS_DIR
from sonde.private_files import TEMPORARY_MARK, write_private_file
from sonde.v1 import agent_pb2

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the agent stopped during the run; not run again"
RECORD_SUFFIX = ".run"
# The file name is the id in hex: 2 characters a byte, under the usual 255 for a name.
MAX_RECORDED_ID = 120
RUN_FOLDER_PREFIX = "sonde-run-"  # the runner's private folders (agent/remediation/runner.py)
_STARTED = "started"
_FINISHED = "finished"


class RunRecord:
    """The commands whose script started here, one small file each, kept until expiry."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, exist_ok=True)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> RunRecord:
        return cls(state_dir / RUNS_DIR)

    def _path(self, command_id: str) -> Path:
        return self.folder / f"{command_id.encode('utf-8').hex()}{RECORD_SUFFIX}"

    def _write(self, command_id: str, expires_at: datetime, state: str) -> None:
        if len(command_id.encode("utf-8")) > MAX_RECORDED_ID:
            raise ValueError(f"a recorded command id is at most {MAX_RECORDED_ID} bytes")
        entry = {"command_id": command_id, "expires_at": expires_at.isoformat(), "state": state}
        write_private_file(self._path(command_id), json.dumps(entry).encode("utf-8"))

    def knows(self, command_id: str) -> bool:
        return (
            len(command_id.encode("utf-8")) <= MAX_RECORDED_ID and self._path(command_id).exists()
        )

    def started(self, command_id: str, expires_at: datetime) -> None:
        """On disk before the script starts: a crash after this never runs it again."""
        self._write(command_id, expires_at, _STARTED)

    def finished(self, command_id: str, expires_at: datetime) -> None:
        self._write(command_id, expires_at, _FINISHED)

    def unfinished(self, now: datetime) -> list[tuple[str, datetime]]:
        """Commands started and never finished; drops the finished records whose order has
        expired, and what a crash left half-written."""
        found: list[tuple[str, datetime]] = []
        for entry in os.scandir(self.folder):
            path = Path(entry.path)
            if TEMPORARY_MARK in entry.name:
                path.unlink(missing_ok=True)
                continue
            if not entry.name.endswith(RECORD_SUFFIX):
                continue
            try:
                data = json.loads(path.read_bytes())
                command_id = str(data["command_id"])
                expires_at = datetime.fromisoformat(str(data["expires_at"]))
                state = str(data["state"])
            except (OSError, ValueError, KeyError, TypeError) as error:
                # Kept, not removed: its command is still refused as replayed (knows()).
                log.warning("run record: ignoring %s, which cannot be read: %s", path, error)
                continue
            if state == _STARTED:
                found.append((command_id, expires_at))
            elif expires_at <= now:
                # The order can no longer be valid: nothing left to refuse as a replay.
                path.unlink(missing_ok=True)
        return found


def recover_interrupted(state_dir: Path, outbox: Outbox) -> list[agent_pb2.Result]:
    """At start: each run the agent stopped during, reported interrupted (through the outbox)
    and marked finished; never run again. Leftover private run folders are removed."""
    leftovers = list(state_dir.glob(f"{RUN_FOLDER_PREFIX}*"))
    if leftovers:
        import shutil  # only after a kill: the idle agent does without it

        for leftover in leftovers:
            shutil.rmtree(leftover, ignore_errors=True)
    record = RunRecord.in_state_dir(state_dir)
    results: list[agent_pb2.Result] = []
    for command_id, expires_at in record.unfinished(datetime.now(UTC)):
        if outbox.get(command_id) is None and not outbox.is_completed(command_id):
            failure = agent_pb2.Failure(reason=INTERRUPTED, kind=agent_pb2.FAILURE_KIND_FAILED)
            result = agent_pb2.Result(command_id=command_id, failure=failure)
            if is_command_id(command_id):
                outbox.put(command_id, result.SerializeToString())
            results.append(result)
            log.warning("run of command %s: %s", command_id, INTERRUPTED)
        # Else its result was kept just before the crash: only the mark was missing.
        record.finished(command_id, expires_at)
    return results
