"""A script's whole process tree ends with its run: at the timeout, on cancel, when the run's
task is cancelled, and when the script exits leaving children behind. Real bash scripts, real
processes; a child is found by the test's marker in its command line or environment."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest

from sonde.agent.remediation import OutputChunk, RunLimits, run
from tests.unit.agent.remediation.manifests import manifest, string_parameter

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX process groups")

TIMEOUT_S = 2
ENTRY = manifest(
    "forks-sleepers",
    timeout_s=TIMEOUT_S,
    parameters=string_parameter("marker", "[a-z0-9-]+", required=True),
)
# Four sleepers: a plain child, one in its own session (setsid), an orphan in its own
# session (its parent exits at once: a daemon's double fork), and one that ignores SIGTERM.
FORKS = b"""\
m="$SONDE_PARAM_MARKER"
(exec -a "$m-child" sleep 300) &
setsid bash -c 'exec -a "$0-setsid" sleep 300' "$m" &
(setsid bash -c 'exec -a "$0-orphan" sleep 300' "$m" &)
bash -c 'trap "" TERM; exec -a "$0-ignores-term" sleep 300' "$m" &
sleep 0.5
echo started
"""


def marked(marker: str) -> list[psutil.Process]:
    """Live processes (zombies have ended) carrying `marker`."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            in_command = any(marker in part for part in process.info["cmdline"] or [])
            if in_command or process.environ().get("SONDE_PARAM_MARKER") == marker:
                found.append(process)
        except psutil.Error:
            continue
    return found


def none_left_after(marker: str, seconds: float) -> list[psutil.Process]:
    """What still carries the marker `seconds` from now (a process has time to come back)."""
    time.sleep(seconds)
    return marked(marker)


class Watcher:
    """on_output: counts the marked processes once the script says its children started."""

    def __init__(self, marker: str, then: asyncio.Event | None = None) -> None:
        self.marker = marker
        self.children_seen = 0
        self.then = then

    def __call__(self, chunk: OutputChunk) -> None:
        if b"started" in chunk.data and not self.children_seen:
            self.children_seen = len(marked(self.marker))
            if self.then is not None:
                self.then.set()


@pytest.mark.slow
def test_a_forking_script_times_out_and_leaves_no_child(tmp_path: Path) -> None:
    marker = f"sonde-tree-{os.getpid()}-timeout"
    watcher = Watcher(marker)
    script = FORKS + b"sleep 300\n"
    began = time.monotonic()
    outcome = asyncio.run(
        run(ENTRY, script, ENTRY.check_values({"marker": marker}), on_output=watcher)
    )
    elapsed = time.monotonic() - began
    assert watcher.children_seen >= 5  # four sleepers and the script's own sleep
    assert outcome.timed_out
    assert not outcome.cancelled
    assert outcome.exit_code is not None
    assert outcome.exit_code < 0  # ended by a signal
    assert elapsed < TIMEOUT_S + 2
    assert outcome.stray_processes >= 4
    assert marked(marker) == []
    assert none_left_after(marker, 5) == []


def test_children_left_by_a_script_that_exits_are_stopped(tmp_path: Path) -> None:
    marker = f"sonde-tree-{os.getpid()}-exits"
    outcome = asyncio.run(run(ENTRY, FORKS + b"exit 0\n", ENTRY.check_values({"marker": marker})))
    assert outcome.exit_code == 0
    assert not outcome.timed_out
    assert outcome.stray_processes >= 4
    assert marked(marker) == []
    assert outcome.stdout == b"started\n"


def test_cancel_stops_the_tree(tmp_path: Path) -> None:
    marker = f"sonde-tree-{os.getpid()}-cancel"
    long = manifest("cancel-me", timeout_s=600, parameters=string_parameter("marker"))

    async def scenario() -> tuple[Watcher, bool, bool]:
        cancel = asyncio.Event()
        watcher = Watcher(marker, then=cancel)
        outcome = await run(
            long,
            FORKS + b"sleep 300\n",
            long.check_values({"marker": marker}),
            on_output=watcher,
            cancel=cancel,
        )
        return watcher, outcome.cancelled, outcome.timed_out

    watcher, cancelled, timed_out = asyncio.run(scenario())
    assert watcher.children_seen >= 5
    assert cancelled
    assert not timed_out
    assert marked(marker) == []


def test_a_cancelled_run_task_kills_the_tree_and_removes_its_folder(tmp_path: Path) -> None:
    marker = f"sonde-tree-{os.getpid()}-task"
    long = manifest("task-cancelled", timeout_s=600, parameters=string_parameter("marker"))
    work_root = tmp_path / "runs"
    work_root.mkdir()

    async def scenario() -> Watcher:
        started = asyncio.Event()
        watcher = Watcher(marker, then=started)
        task = asyncio.create_task(
            run(
                long,
                FORKS + b"sleep 300\n",
                long.check_values({"marker": marker}),
                on_output=watcher,
                work_root=work_root,
            )
        )
        await asyncio.wait_for(started.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return watcher

    watcher = asyncio.run(scenario())
    assert watcher.children_seen >= 5
    deadline = time.monotonic() + 10  # SIGKILL, then the kernel's own time
    while marked(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked(marker) == []
    assert list(work_root.iterdir()) == []


def test_a_script_that_reads_stdin_gets_end_of_file() -> None:
    entry = manifest("reads-stdin", timeout_s=60)
    script = b'cat; read -r line; echo "read status $?"\n'
    outcome = asyncio.run(run(entry, script, entry.check_values({}), limits=RunLimits()))
    assert not outcome.timed_out
    assert outcome.exit_code == 0
    assert outcome.stdout == b"read status 1\n"


def test_stopping_one_run_leaves_another_run_alone() -> None:
    """Two runs at once: the one that times out is stopped with its tree; the other, whose
    own sleeper outlives the first's end, finishes as it would have."""
    marker = f"sonde-tree-{os.getpid()}-neighbour"
    patient = manifest("patient-neighbour", timeout_s=60)
    neighbour = b'sleep 6 & wait; echo "neighbour finished"\n'  # outlives the other's end

    async def scenario() -> tuple[bool, int | None, bytes]:
        stopped, finished = await asyncio.gather(
            run(ENTRY, FORKS + b"sleep 300\n", ENTRY.check_values({"marker": marker})),
            run(patient, neighbour, patient.check_values({})),
        )
        return stopped.timed_out, finished.exit_code, finished.stdout

    timed_out, exit_code, stdout = asyncio.run(scenario())
    assert timed_out
    assert (exit_code, stdout) == (0, b"neighbour finished\n")
    assert marked(marker) == []
