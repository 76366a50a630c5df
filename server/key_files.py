"""The server's secret key files in pki/ (audit.key, credentials.key): a fixed number of
random bytes, owner-only, never in the database.

Reading refuses a link, anything but a regular file, a file others may read or write, and a
file of the wrong length, each saying which file and what to do; making one never follows a
link and never overwrites (O_EXCL), and is fsynced with its folder before it is used.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from sonde.server.errors import Conflict


class KeyFileProblem(Conflict):
    """A key file cannot be used: says which file and what to do."""


@dataclass(frozen=True)
class KeyFile:
    """One key file's words and error type: `the` and `one` name it in messages ("the audit
    key", "an audit key"); `restore` says how to get it back when its length is wrong."""

    the: str
    one: str
    restore: str
    problem: type[KeyFileProblem]
    size: int = 32


def read_key_file(path: Path, kind: KeyFile) -> bytes | None:
    """The key's bytes in `path`, or None when there is no such file."""
    problem, what, size = kind.problem, kind.the, kind.size
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise problem(f"{path}: cannot read {what} ({error.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise problem(f"{path}: {what} is not a regular file")
        if info.st_mode & 0o077:
            raise problem(
                f"{path}: {what} is readable or writable by others "
                f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 600 {path}"
            )
        secret = file.read(size + 1)
    if len(secret) != size:
        raise problem(
            f"{path}: {kind.one} is {size} bytes, this file has {len(secret)}; {kind.restore}"
        )
    return secret


def create_key_file(path: Path, kind: KeyFile) -> bytes:
    """New random bytes in `path`, which must not exist (no file or link is followed)."""
    secret = secrets.token_bytes(kind.size)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise kind.problem(f"{path} exists already: not overwriting {kind.one}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(secret)
        file.flush()
        os.fsync(file.fileno())
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return secret
