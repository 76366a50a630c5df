"""The data folder's lock, in one process: flock and msvcrt locks conflict between two open
files of the same process too, so a second acquire stands in for a second server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sonde.server.folder_lock import LOCK_FILE, DataFolderInUse, FolderLock


def test_a_second_acquire_is_refused_naming_the_folder_and_the_holder(tmp_path: Path) -> None:
    with FolderLock.acquire(tmp_path), pytest.raises(DataFolderInUse) as refused:
        FolderLock.acquire(tmp_path)
    assert refused.value.folder == tmp_path
    assert refused.value.holder_pid == os.getpid()
    assert f"the data folder {tmp_path} is in use by another sonde-server (pid {os.getpid()})" in (
        str(refused.value)
    )


def test_the_lock_is_free_again_once_released_and_the_file_stays(tmp_path: Path) -> None:
    FolderLock.acquire(tmp_path).release()
    with FolderLock.acquire(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert (tmp_path / LOCK_FILE).exists()


def test_a_holder_whose_pid_is_not_recorded_is_still_refused(tmp_path: Path) -> None:
    with FolderLock.acquire(tmp_path):
        (tmp_path / LOCK_FILE).write_text("")  # as between another server's lock and its write
        with pytest.raises(DataFolderInUse, match="a process whose pid is not recorded"):
            FolderLock.acquire(tmp_path)


@pytest.mark.skipif(sys.platform == "win32", reason="O_NOFOLLOW is POSIX")
def test_a_link_planted_at_the_lock_is_not_truncated_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"a file of someone else's\n")
    (tmp_path / LOCK_FILE).symlink_to(victim)
    with pytest.raises(OSError, match="symbolic links"):
        FolderLock.acquire(tmp_path)
    assert victim.read_bytes() == b"a file of someone else's\n"
