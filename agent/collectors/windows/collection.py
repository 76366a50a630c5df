"""The agent's run of collect.ps1: one PowerShell for all the Windows-only collectors of a
snapshot, its document parsed by document.windows_facts, as the server's WinRM path does.

The script takes seconds (CIM, the event log, Windows Update's COM object), more than a
collector's usual limit, so these collectors have their own (registry.py, own_limit). One
run serves the collectors of one snapshot, which start together: a document is reused for
FRESH_S only, so that a fix's verification never reads facts from before the fix. At most
one run at a time; one that outlives a collector's limit is left to finish for the next.
"""

from __future__ import annotations

import subprocess
import threading
import time
from importlib import resources

from google.protobuf.message import Message

from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.windows.document import FIELD_SECTIONS, WindowsFacts, windows_facts

FRESH_S = 5.0
SCRIPT_TIMEOUT_S = 60.0
_lock = threading.Lock()
_latest: tuple[float, WindowsFacts] | None = None
_running: threading.Event | None = None


def _unavailable(reason: str) -> WindowsFacts:
    return WindowsFacts(unavailable=dict.fromkeys(FIELD_SECTIONS, reason))


def _run_script() -> WindowsFacts:
    script = resources.files(__package__).joinpath("collect.ps1")
    with resources.as_file(script) as path:
        argv = ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass"]
        try:
            done = subprocess.run(
                [*argv, "-File", str(path)],
                capture_output=True,
                timeout=SCRIPT_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as error:
            return _unavailable(f"powershell.exe could not run the collection: {error}")
    if done.returncode != 0 and not done.stdout.strip():
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return _unavailable(
            f"the collection script failed (exit {done.returncode}): {said[0][:200]}"
        )
    return windows_facts(done.stdout)


def _refresh(finished: threading.Event) -> None:
    global _latest, _running  # one collection per agent process
    facts = _run_script()
    with _lock:
        _latest, _running = (time.monotonic(), facts), None
    finished.set()


def latest() -> WindowsFacts:
    """A document younger than FRESH_S, or the one a run (started now, or already running)
    gives; the runner's time limit bounds the wait."""
    global _running  # noqa: PLW0603 - one collection per agent process
    with _lock:
        if _latest is not None and time.monotonic() - _latest[0] < FRESH_S:
            return _latest[1]
        if _running is None:
            _running = threading.Event()
            threading.Thread(
                target=_refresh, args=(_running,), name="windows-collection", daemon=True
            ).start()
        finished = _running
    finished.wait(SCRIPT_TIMEOUT_S + 5)
    with _lock:
        if _latest is None:
            raise CollectorUnavailable("the Windows collection script gave no answer")
        return _latest[1]


def collect_field(field: str) -> Message:
    """One Snapshot field's facts from the latest collection, or why it has none."""
    facts = latest()
    if field in facts.facts:
        return facts.facts[field]
    raise CollectorUnavailable(facts.unavailable.get(field, "the collection did not give it"))
