"""Owner-only files and folders, one set of rules for the agent and the server.

Writing: a private file is whole before it has its name. It is written under a random
temporary name in its own folder, created with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 from
the first byte, fsynced, renamed onto the final name (a rename replaces a link there instead
of following it), and the folder is fsynced. A name planted in advance, file or symbolic link,
is never opened: the temporary name cannot be guessed, and O_EXCL refuses one that exists.

Checking: unsafe_entries lists what someone other than the program's user could read or
change in its folder, one line per problem, each naming the path, its mode or owner and the
command that fixes it. The checks are POSIX only: on Windows the folder's ACL is the
installer's job, so they log a note and find nothing.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Temporary files are named ".NAME.tmp-RANDOM"; a crash can leave one, which its folder's
# owner may remove (the agent's outbox does on start).
TEMPORARY_MARK = ".tmp-"
_CREATE_NEW = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)  # POSIX; O_EXCL alone already refuses a link on Windows
    | getattr(os, "O_BINARY", 0)
)


def write_private_file(path: Path, data: bytes) -> None:
    """Write `path` atomically, mode 0600 from the first byte, following no planted name."""
    # os.urandom(8).hex() is secrets.token_hex(8), without importing secrets (and hmac,
    # random) into the long-running agent.
    tmp = path.with_name(f".{path.name}{TEMPORARY_MARK}{os.urandom(8).hex()}")
    fd = os.open(tmp, _CREATE_NEW, 0o600)  # outside the try: if it fails, nothing is ours
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or removal in the folder durable (POSIX; a no-op on Windows)."""
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Folder:
    """What a folder holds: the files only its owner may read, the subfolders checked inside.

    Every entry is checked, a stranger too: it must be a plain file or folder, not a link,
    owned by the program's user and writable by no one else. A subfolder not named here is
    checked itself but not entered, unless its parent is secret.
    """

    noun: str = ""  # how messages call it ("state folder"); a subfolder's default: its parent's
    secret_files: frozenset[str] = frozenset()
    subfolders: Mapping[str, Folder] = field(default_factory=dict)
    # The folder is owner-only (0700), and so is everything in it (files 0600).
    secret: bool = False


def unsafe_entries(
    root: Path, layout: Folder, *, program: str, root_mode: bool = True
) -> list[str]:
    """Every problem in `root` and in what it holds, one line each; [] when all is safe.

    `program` names whose user must own it all ("agent": "not by the agent's user").
    FileNotFoundError when `root` does not exist. `root_mode=False` leaves the folder's own
    mode out, for a command that creates the folder and sets its mode itself.
    """
    if sys.platform == "win32":
        log.info("permission check of %s skipped on Windows: its ACL is the installer's", root)
        return []
    info = os.lstat(root)
    if stat.S_ISLNK(info.st_mode):
        return [
            f"{root} is a symbolic link; the {layout.noun} must be a real folder "
            f"(give its real path, {os.path.realpath(root)}, instead)"
        ]
    if not stat.S_ISDIR(info.st_mode):
        return [f"{root} is not a folder; the {layout.noun} must be one"]
    found = _owner_problems(root, info, program)
    if root_mode:
        found += _mode_problems(root, info, secret=layout.secret, noun=layout.noun)
    return found + _entry_problems(root, layout, layout.noun, program)


def unsafe_file(path: Path, *, secret: bool, program: str) -> list[str]:
    """The problems of one file kept outside the program's folder; [] when safe or missing."""
    if sys.platform == "win32":
        return []
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return []
    return _problems(path, info, secret=secret, noun="folder", program=program)


def _entry_problems(folder: Path, layout: Folder, noun: str, program: str) -> list[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        return [f"{folder} cannot be listed: {error.strerror}"]
    found: list[str] = []
    for entry in entries:
        path = Path(entry.path)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # removed meanwhile (a SQLite WAL at its last close)
        inner = layout.subfolders.get(entry.name) or (
            Folder(secret=True) if layout.secret else None
        )
        secret = layout.secret or entry.name in layout.secret_files or bool(inner and inner.secret)
        inner_noun = (inner.noun if inner else "") or noun
        found += _problems(path, info, secret=secret, noun=inner_noun, program=program)
        if inner is not None and stat.S_ISDIR(info.st_mode):
            found += _entry_problems(path, inner, inner_noun, program)
    return found


def _problems(
    path: Path, info: os.stat_result, *, secret: bool, noun: str, program: str
) -> list[str]:
    if stat.S_ISLNK(info.st_mode):
        return [f"{path} is a symbolic link; it must be a plain file or folder (remove it)"]
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return [f"{path} is neither a file nor a folder (remove it)"]
    return _owner_problems(path, info, program) + _mode_problems(
        path, info, secret=secret, noun=noun
    )


def _owner_problems(path: Path, info: os.stat_result, program: str) -> list[str]:
    uid = os.geteuid()
    if info.st_uid == uid:
        return []
    return [
        f"{path} is owned by uid {info.st_uid}, not by the {program}'s user (uid {uid}); "
        f"run: chown {uid} {path}"
    ]


def _mode_problems(path: Path, info: os.stat_result, *, secret: bool, noun: str) -> list[str]:
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        if mode & 0o022:
            return [
                f"{path} has mode {mode:04o}: the {noun} is writable by group or others; "
                f"run: chmod 700 {path}"
            ]
        if secret and mode & 0o055:
            return [
                f"{path} has mode {mode:04o}: it is readable by group or others; "
                f"run: chmod 700 {path}"
            ]
        return []
    if mode & 0o022:
        fixed = mode & (0o700 if secret else 0o755)
        return [
            f"{path} has mode {mode:04o}: it is writable by group or others; "
            f"run: chmod {fixed:o} {path}"
        ]
    if secret and mode & 0o044:
        return [
            f"{path} has mode {mode:04o}: it is readable by group or others; run: chmod 600 {path}"
        ]
    return []
