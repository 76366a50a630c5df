"""The agent's state folder: what enrollment wrote, written safely, and checked before use."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from sonde.agent.paths import CA_FILE, CERT_FILE, KEY_FILE, SECRET_DIRS, SECRET_FILES, STATE_FILE
from sonde.identity import is_agent_id

log = logging.getLogger(__name__)


class NotEnrolled(Exception):
    """The state folder holds no (complete) enrollment."""


class UnsafePermissions(Exception):
    """A state file or the folder could be read or changed by someone else."""


@dataclass(frozen=True)
class AgentState:
    """What agent.json records about this agent's enrollment."""

    agent_id: str
    agent_addresses: tuple[str, ...]  # the server's agent listeners, tried in this order
    console_address: str
    server_name: str
    enrolled_at: str

    @property
    def agent_address(self) -> str:
        """The first address: the one probed by `collect` and reported by `enroll`."""
        return self.agent_addresses[0]


def is_host_port(text: str) -> bool:
    """HOST:PORT with a port from 1 to 65535; an IPv6 host in brackets."""
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536)


@dataclass(frozen=True)
class Credentials:
    """The PEM files the agent presents and pins on its mTLS stream."""

    private_key_pem: bytes
    certificate_pem: bytes
    ca_certificate_pem: bytes


def ensure_state_dir(state_dir: Path) -> None:
    """Create the state folder owner-only (0700); tighten it if it already exists."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":
        os.chmod(state_dir, 0o700)


def write_private_file(path: Path, data: bytes) -> None:
    """Write atomically (temporary file, fsync, rename) with mode 0600 from the first byte."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if sys.platform != "win32":
            os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply when tmp already existed
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


def is_enrolled(state_dir: Path) -> bool:
    return any((state_dir / name).exists() for name in (STATE_FILE, KEY_FILE, CERT_FILE))


def save_state(state_dir: Path, state: AgentState) -> None:
    text = json.dumps(asdict(state), indent=2, sort_keys=True) + "\n"
    write_private_file(state_dir / STATE_FILE, text.encode("utf-8"))


def load_state(state_dir: Path) -> AgentState:
    """Read agent.json; NotEnrolled says what is missing or malformed."""
    path = state_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotEnrolled(
            f"this agent is not enrolled: {path} does not exist "
            "(run `sonde-agent enroll TOKEN` first)"
        ) from None
    except (OSError, ValueError) as error:
        raise NotEnrolled(f"cannot read {path}: {error}") from None
    fields = ("agent_id", "console_address", "server_name", "enrolled_at")
    if not isinstance(raw, dict) or any(not isinstance(raw.get(f), str) for f in fields):
        raise NotEnrolled(f"{path} is malformed: it needs the string fields {', '.join(fields)}")
    addresses = raw.get("agent_addresses")
    if addresses is None and isinstance(raw.get("agent_address"), str):
        addresses = [raw["agent_address"]]  # written before the list
    if (
        not isinstance(addresses, list)
        or not addresses
        or not all(isinstance(a, str) and is_host_port(a) for a in addresses)
    ):
        raise NotEnrolled(
            f"{path} is malformed: agent_addresses must be a list of one or more "
            '"HOST:PORT" strings'
        )
    state = AgentState(agent_addresses=tuple(addresses), **{f: raw[f] for f in fields})
    if not is_agent_id(state.agent_id):
        raise NotEnrolled(f"{path} is malformed: {state.agent_id!r} is not an agent id")
    return state


def load_credentials(state_dir: Path) -> Credentials:
    """Read the key, certificate and pinned CA; NotEnrolled names the missing file."""
    contents: list[bytes] = []
    for name in (KEY_FILE, CERT_FILE, CA_FILE):
        path = state_dir / name
        try:
            contents.append(path.read_bytes())
        except FileNotFoundError:
            raise NotEnrolled(
                f"the enrollment is incomplete: {path} is missing (enroll again with --force)"
            ) from None
    return Credentials(*contents)


def _problem(path: Path, info: os.stat_result, secret: bool, owner: int) -> str | None:
    mode = stat.S_IMODE(info.st_mode)
    is_dir = stat.S_ISDIR(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link; state files must be plain files (remove it)"
    if info.st_uid != owner:
        return (
            f"{path} is owned by uid {info.st_uid}, not by the agent's user (uid {owner}); "
            f"run: chown {owner} {path}"
        )
    if is_dir:
        if mode & 0o022:
            return (
                f"{path} has mode {mode:04o}: the state folder is writable by group or others; "
                f"run: chmod 700 {path}"
            )
        if secret and mode & 0o055:
            return (
                f"{path} has mode {mode:04o}: it is readable by group or others; "
                f"run: chmod 700 {path}"
            )
        return None
    if mode & 0o022:
        fixed = mode & (0o700 if secret else 0o755)
        return (
            f"{path} has mode {mode:04o}: it is writable by group or others; "
            f"run: chmod {fixed:o} {path}"
        )
    if secret and mode & 0o044:
        return (
            f"{path} has mode {mode:04o}: it is readable by group or others; run: chmod 600 {path}"
        )
    return None


def check_permissions(state_dir: Path) -> None:
    """Refuse a state folder that someone other than the agent's user could read or change.

    POSIX only: on Windows, ACLs are the installer's job, so this only logs a note.
    """
    if sys.platform == "win32":
        log.info("permission check skipped on Windows: the installer sets the folder's ACL")
        return
    owner = os.geteuid()
    try:
        folder_info = os.lstat(state_dir)
    except FileNotFoundError:
        raise NotEnrolled(
            f"this agent is not enrolled: the state folder {state_dir} does not exist "
            "(run `sonde-agent enroll TOKEN` first)"
        ) from None
    problem = _problem(state_dir, folder_info, secret=False, owner=owner)
    if problem:
        raise UnsafePermissions(f"refusing to start: {problem}")
    _check_entries(state_dir, owner, all_secret=False)


def _check_entries(folder: Path, owner: int, *, all_secret: bool) -> None:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        info = os.lstat(path)
        secret = all_secret or entry.name in SECRET_FILES or entry.name in SECRET_DIRS
        problem = _problem(path, info, secret=secret, owner=owner)
        if problem:
            raise UnsafePermissions(f"refusing to start: {problem}")
        if stat.S_ISDIR(info.st_mode) and (all_secret or entry.name in SECRET_DIRS):
            # The outbox's files hold results (what this machine did): owner-only too.
            _check_entries(path, owner, all_secret=True)
