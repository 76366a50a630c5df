"""Every Linux catalog script run for real: its dry run changes nothing and says what it would
do, and its effect is checked where this machine allows (temporary files and caches in a home
and TMPDIR the test makes, a hung process the test starts). Units need systemd as PID 1's
service manager: where it does not run (this CI's containers), the scripts that need it must
say so and exit 3, and that is what is checked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonde.catalog.folder import CatalogEntry
from tests.integration.catalog.linux_scripts import linux_entries, run_script

SYSTEMD_RUNS = Path("/run/systemd/system").is_dir()
OLD = time.time() - 30 * 86400
ENTRIES = {entry.id: entry for entry in linux_entries()}
# Scripts that cannot do anything without a running systemd (exit 3 then).
NEEDS_SYSTEMD = {"restart-network-service", "restart-cups", "restart-failed-unit"}


@pytest.fixture
def workstation(tmp_path: Path) -> tuple[Path, Path]:
    """A home with an old and a new cache file and a TMPDIR with old and new temp files."""
    home, tmpdir = tmp_path / "home", tmp_path / "tmp"
    (home / ".cache" / "thumbnails").mkdir(parents=True)
    (tmpdir / "old-folder" / "deeper").mkdir(parents=True)
    files = {
        home / ".cache" / "thumbnails" / "old.png": True,
        home / ".cache" / "new.bin": False,
        home / "Documents-old.txt": True,  # outside .cache: never touched
        tmpdir / "old.tmp": True,
        tmpdir / "old-folder" / "deeper" / "old.log": True,
        tmpdir / "new.tmp": False,
    }
    for path, old in files.items():
        path.write_bytes(b"x" * 1000)
        if old:
            os.utime(path, (OLD, OLD))
    os.utime(tmpdir / "old-folder" / "deeper", (OLD, OLD))
    os.utime(tmpdir / "old-folder", (OLD, OLD))
    return home, tmpdir


def tree(*roots: Path) -> dict[str, tuple[int, float]]:
    return {
        str(path): (path.lstat().st_size, path.lstat().st_mtime)
        for root in roots
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the test's own that ignores SIGTERM, as a hung program does."""
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while "SigIgn" not in _ignored(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def _ignored(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
    return "SigIgn" if int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)) else ""


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def example_values(entry: CatalogEntry, sleeper_pid: int) -> dict[str, str]:
    """A value for every required parameter (the others take their defaults)."""
    examples = {
        "service": "network-manager",
        "unit": "cups.service",
        "process_id": str(sleeper_pid),
        "process_name": comm(sleeper_pid),
    }
    return {p.name: examples[p.name] for p in entry.manifest.parameters if p.required}


def test_the_catalog_has_its_linux_scripts() -> None:
    assert len(ENTRIES) >= 10


@pytest.mark.parametrize("script_id", sorted(ENTRIES))
def test_a_dry_run_changes_nothing_and_says_what_it_would_do(
    script_id: str,
    workstation: tuple[Path, Path],
    sleeper: subprocess.Popen[bytes],
) -> None:
    entry = ENTRIES[script_id]
    home, tmpdir = workstation
    before = tree(home, tmpdir)
    given = example_values(entry, sleeper.pid)

    result = run_script(entry, given, dry_run=True, home=home, tmpdir=tmpdir)

    assert tree(home, tmpdir) == before
    assert sleeper.poll() is None, "a dry run ended the process"
    if script_id in NEEDS_SYSTEMD and not SYSTEMD_RUNS:
        assert result.exit_code == 3, result
        assert "systemd is not running" in result.stderr
        return
    if result.exit_code == 3:  # what it fixes is not on this machine: it must say what
        assert result.stderr.strip(), result
        return
    assert result.exit_code == 0, result
    said = result.stdout.lower()
    assert "dry run: would" in said or "nothing to" in said, result


@pytest.mark.parametrize("script_id", sorted(ENTRIES))
def test_without_dry_run_set_a_script_refuses_to_guess(script_id: str, tmp_path: Path) -> None:
    completed = subprocess.run(
        ["bash", str(ENTRIES[script_id].script_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    assert b"refused: SONDE_DRY_RUN must be 1 or 0" in completed.stderr


def test_clear_temp_files_removes_only_old_files(workstation: tuple[Path, Path]) -> None:
    home, tmpdir = workstation
    outside = home / "outside-target.txt"
    outside.write_text("kept")
    os.utime(outside, (OLD, OLD))
    (tmpdir / "link-out").symlink_to(outside)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmpdir / "old.sock"))
    os.utime(tmpdir / "old.sock", (OLD, OLD))
    entry = ENTRIES["clear-temp-files-linux"]

    result = run_script(entry, {}, dry_run=False, home=home, tmpdir=tmpdir)
    listener.close()

    assert result.exit_code == 0, result
    assert sorted(p.name for p in tmpdir.rglob("*")) == ["link-out", "new.tmp", "old.sock"]
    assert outside.read_text() == "kept"
    assert (home / "Documents-old.txt").exists()
    assert not (home / ".cache" / "thumbnails" / "old.png").exists()
    assert (home / ".cache" / "new.bin").exists()
    assert "freed 3000 bytes in 3 files" in result.stdout

    again = run_script(entry, {}, dry_run=False, home=home, tmpdir=tmpdir)
    assert again.exit_code == 0
    assert "freed 0 bytes in 0 files" in again.stdout


def test_clear_temp_files_leaves_caches_when_told_and_honours_the_age(
    workstation: tuple[Path, Path],
) -> None:
    home, tmpdir = workstation
    entry = ENTRIES["clear-temp-files-linux"]
    given = {"include_caches": "false", "older_than_days": "60"}
    result = run_script(entry, given, dry_run=False, home=home, tmpdir=tmpdir)
    assert result.exit_code == 0, result
    assert (tmpdir / "old.tmp").exists()  # 30 days old, not 60
    result = run_script(entry, {"include_caches": "false"}, dry_run=False, home=home, tmpdir=tmpdir)
    assert not (tmpdir / "old.tmp").exists()
    assert (home / ".cache" / "thumbnails" / "old.png").exists()


def test_clear_temp_files_refuses_the_root_folder(tmp_path: Path) -> None:
    result = run_script(
        ENTRIES["clear-temp-files-linux"], {}, dry_run=True, home=tmp_path, tmpdir=Path("/")
    )
    assert result.exit_code == 2
    assert "refused: / is the root folder" in result.stderr


def test_kill_hung_process_forces_one_that_ignores_sigterm(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    given = {"process_id": str(sleeper.pid), "process_name": comm(sleeper.pid), "grace_s": "1"}
    result = run_script(
        ENTRIES["kill-hung-process-linux"], given, dry_run=False, home=tmp_path, tmpdir=None
    )
    assert result.exit_code == 0, result
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    assert f"ended process {sleeper.pid}" in result.stdout
    assert "SIGKILL after 1 s" in result.stdout

    gone = run_script(
        ENTRIES["kill-hung-process-linux"], given, dry_run=False, home=tmp_path, tmpdir=None
    )
    assert gone.exit_code == 0
    assert "is not running: nothing to do" in gone.stdout


def test_kill_hung_process_ends_a_polite_one_with_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        given = {"process_id": str(process.pid), "process_name": "sleep"}
        result = run_script(
            ENTRIES["kill-hung-process-linux"], given, dry_run=False, home=tmp_path, tmpdir=None
        )
        assert result.exit_code == 0, result
        assert process.wait(timeout=10) == -signal.SIGTERM
        assert "with SIGTERM" in result.stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_kill_hung_process_refuses_an_id_that_is_another_program(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    given = {"process_id": str(sleeper.pid), "process_name": "firefox", "grace_s": "1"}
    result = run_script(
        ENTRIES["kill-hung-process-linux"], given, dry_run=False, home=tmp_path, tmpdir=None
    )
    assert result.exit_code == 2
    assert f"refused: process {sleeper.pid} is {comm(sleeper.pid)}, not firefox" in result.stderr
    assert sleeper.poll() is None


def test_kill_hung_process_refuses_the_program_that_runs_it(tmp_path: Path) -> None:
    given = {"process_id": str(os.getpid()), "process_name": comm(os.getpid())}
    result = run_script(
        ENTRIES["kill-hung-process-linux"], given, dry_run=False, home=tmp_path, tmpdir=None
    )
    assert result.exit_code == 2
    assert "runs this script" in result.stderr


def test_a_reboot_notice_arrives_byte_for_byte_in_the_dry_run(tmp_path: Path) -> None:
    message = "Restart at 12:30; save work (it's 'urgent')! /tmp/$(touch x)"
    entry = ENTRIES["reboot-with-notice-linux"]
    with pytest.raises(ValueError, match="does not match its pattern"):
        run_script(entry, {"message": message}, dry_run=True, home=tmp_path, tmpdir=None)
    message = "Restart at 12:30; save work (it's urgent)! Back in 5/10 min"
    result = run_script(
        entry, {"message": message, "delay_minutes": "15"}, dry_run=True, home=tmp_path, tmpdir=None
    )
    assert result.exit_code == 0, result
    assert result.stdout == (
        f"dry run: would restart this computer in 15 minutes, telling users: {message}\n"
    )


@pytest.mark.skipif(SYSTEMD_RUNS, reason="systemd runs here: the unit scripts act for real")
@pytest.mark.parametrize("script_id", sorted(NEEDS_SYSTEMD))
def test_without_systemd_the_unit_scripts_say_so_and_do_nothing(
    script_id: str, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    entry = ENTRIES[script_id]
    result = run_script(
        entry, example_values(entry, sleeper.pid), dry_run=False, home=tmp_path, tmpdir=None
    )
    assert result.exit_code == 3
    assert "systemd is not running on this machine" in result.stderr
