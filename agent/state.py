"""The agent's state folder: what enrollment wrote, written safely, and checked before use."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from sonde.agent.paths import CA_FILE, CERT_FILE, KEY_FILE, SECRET_DIRS, SECRET_FILES, STATE_FILE
from sonde.identity import is_agent_id
from sonde.private_files import Folder, unsafe_entries

# Re-exported (mypy's explicit form): the outbox and the tests write through these names.
from sonde.private_files import fsync_dir as fsync_dir  # noqa: PLC0414
from sonde.private_files import write_private_file as write_private_file  # noqa: PLC0414

# What `run` checks in the state folder: the outbox is owner-only through and through.
STATE_LAYOUT = Folder(
    noun="state folder",
    secret_files=frozenset(SECRET_FILES),
    subfolders={name: Folder(secret=True) for name in SECRET_DIRS},
)


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


def check_permissions(state_dir: Path) -> None:
    """Refuse a state folder that someone other than the agent's user could read or change.

    Every problem is named, one line each. POSIX only: on Windows, ACLs are the installer's
    job, so this only logs a note.
    """
    try:
        problems = unsafe_entries(state_dir, STATE_LAYOUT, program="agent")
    except FileNotFoundError:
        raise NotEnrolled(
            f"this agent is not enrolled: the state folder {state_dir} does not exist "
            "(run `sonde-agent enroll TOKEN` first)"
        ) from None
    if problems:
        raise UnsafePermissions("\n".join(f"refusing to start: {line}" for line in problems))


def enrollment_problems(state_dir: Path) -> list[str]:
    """What makes the state folder unsafe to enroll into: a link, another user's, unsafe
    entries; not its own mode, which enrollment sets. [] when it does not exist yet."""
    try:
        return unsafe_entries(state_dir, STATE_LAYOUT, program="agent", root_mode=False)
    except FileNotFoundError:
        return []
