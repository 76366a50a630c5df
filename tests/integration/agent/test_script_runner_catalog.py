"""The real Linux catalog through the real runner: each script's dry run, as the agent will
run it, ends by itself (exit 0, or 3 saying on stderr what this machine lacks), leaves no
process behind, and the runner touches nothing outside the script's own tree: a process of
the test's that ignores SIGTERM, named to the kill-hung-process dry run, is still there."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonde.agent.remediation import run
from sonde.catalog.folder import CatalogEntry, load_catalog_folder
from sonde.catalog.manifest import Platform

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the Linux catalog")

CATALOG = Path(__file__).resolve().parents[3] / "scripts"
ENTRIES = {
    entry.id: entry for entry in load_catalog_folder(CATALOG) if entry.platform is Platform.LINUX
}


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process outside any run, ignoring SIGTERM as a hung program does."""
    process = subprocess.Popen(
        ["bash", "-c", "trap '' TERM; exec sleep 600"], stdin=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while comm(process.pid) != "sleep" and time.monotonic() < deadline:
        time.sleep(0.01)  # until bash has become sleep
    yield process
    process.kill()
    process.wait()


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def required_values(entry: CatalogEntry, pid: int) -> dict[str, str]:
    """A value for every required parameter; a new one must be added here."""
    samples = {
        "unit": "cups.service",
        "process_id": str(pid),
        "process_name": comm(pid),
    }
    values = {}
    for parameter in entry.manifest.parameters:
        if parameter.required and parameter.choices:
            values[parameter.name] = parameter.choices[0]
        elif parameter.required:
            assert parameter.name in samples, f"{entry.id}: add a sample for {parameter.name}"
            values[parameter.name] = samples[parameter.name]
    return values


def test_the_linux_catalog_is_there() -> None:
    assert len(ENTRIES) >= 10


@pytest.mark.parametrize("script_id", sorted(ENTRIES))
def test_a_catalog_dry_run_through_the_runner(
    script_id: str, bystander: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    entry = ENTRIES[script_id]
    values = entry.manifest.check_values(required_values(entry, bystander.pid), dry_run=True)
    home = tmp_path / "home"
    home.mkdir()
    work_root = tmp_path / "runs"
    work_root.mkdir()
    outcome = asyncio.run(
        run(entry.manifest, entry.script_bytes, values, work_root=work_root, home=home)
    )
    assert not outcome.timed_out
    assert outcome.exit_code in (0, 3), outcome
    if outcome.exit_code == 3:
        assert outcome.stderr.strip(), outcome  # what this machine lacks, said
    else:
        said = outcome.stdout.lower()
        assert b"dry run: would" in said or b"nothing to" in said, outcome
    assert outcome.stray_processes == 0
    assert list(work_root.iterdir()) == []
    assert list(home.iterdir()) == []
    assert bystander.poll() is None, "the run ended a process outside its tree"
