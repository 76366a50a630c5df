"""One running server per data folder: an exclusive OS lock on DIR/server.lock.

`sonde-server run` takes the lock before it reads or writes anything else in the folder
(before the migration too) and holds it until the process ends; the OS drops it when the
process dies, so a crash or kill -9 leaves no stale lock to clean up. The file keeps the
holder's pid so that a refused second server can say who holds it; the file itself is
never removed (removing a lock file races with the next process opening it).
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import IO

LOCK_FILE = "server.lock"
# Windows locks byte ranges and forbids reading a locked byte: lock one far past the pid.
_WINDOWS_LOCKED_BYTE = 1 << 30
# What flock and msvcrt.locking fail with when another process holds the lock; anything
# else (a read-only folder, NFS without locks) is a different problem and says so itself.
_HELD_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK})


class DataFolderInUse(Exception):
    """Another process holds the data folder's lock."""

    def __init__(self, folder: Path, holder_pid: int | None) -> None:
        self.folder = folder
        self.holder_pid = holder_pid
        holder = f"pid {holder_pid}" if holder_pid else "a process whose pid is not recorded"
        super().__init__(
            f"the data folder {folder} is in use by another sonde-server ({holder}); "
            "stop it first, or give this server its own data folder"
        )


class FolderLock:
    """Held while the object lives (or until release()); acquire with FolderLock.acquire."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle

    @classmethod
    def acquire(cls, folder: Path) -> FolderLock:
        """Take the lock without waiting; DataFolderInUse when another process has it."""
        path = folder / LOCK_FILE
        # A link planted at the lock's name is refused (ELOOP), not truncated through.
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags, 0o600)
        handle = os.fdopen(fd, "r+b", buffering=0)
        try:
            _lock(handle)
        except OSError as error:
            holder = _read_pid(handle)
            handle.close()
            if error.errno not in _HELD_ERRNOS:
                raise
            raise DataFolderInUse(folder, holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode("ascii"))
        return cls(handle)

    def release(self) -> None:
        """Drop the lock (the process's exit does the same)."""
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _read_pid(handle: IO[bytes]) -> int | None:
    try:
        handle.seek(0)
        text = handle.read(32).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


if sys.platform == "win32":
    import msvcrt

    def _lock(handle: IO[bytes]) -> None:
        handle.seek(_WINDOWS_LOCKED_BYTE)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
