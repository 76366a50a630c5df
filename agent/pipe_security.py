"""The local help pipe's names and security rules on Windows (agent/win32_pipes.py applies
them): plain values, tested on every platform.

- The service's pipe is SYSTEM_PIPE; an agent of another state folder (a second agent, a
  test's) has a pipe named after its folder, open to its own user only.
- The pipe's security descriptor (pipe_sddl) is protected (no inherited entries), denies the
  network logon, gives LocalSystem, the Administrators and the agent's own user full control,
  and, on the shared pipe, lets every interactive user (at the console or over Remote
  Desktop) read and write it: CLIENT_RIGHTS, without FILE_CREATE_PIPE_INSTANCE, so no user
  can add an instance of their own to the agent's pipe.
- A client trusts a pipe only when it belongs to LocalSystem, the Administrators or the user
  themself (trusted_owners): a pipe that another user created first, to read what people
  ask, belongs to that user.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath, PureWindowsPath

SYSTEM_PIPE = r"\\.\pipe\sonde-agent-help"
PIPE_PREFIX = "\\\\.\\pipe\\"

LOCAL_SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
# FILE_GENERIC_READ (0x120089) | FILE_WRITE_DATA (0x2) | FILE_WRITE_ATTRIBUTES (0x100):
# read, write and set the pipe's mode. Not FILE_APPEND_DATA (0x4): on a pipe it is
# FILE_CREATE_PIPE_INSTANCE.
CLIENT_RIGHTS = 0x0012018B
FILE_CREATE_PIPE_INSTANCE = 0x4
# What a client opens the pipe for: GENERIC_READ | FILE_WRITE_DATA, within CLIENT_RIGHTS.
CLIENT_ACCESS = 0x80000000 | 0x2
_SID = re.compile(r"S-1(-[0-9]{1,10}){1,15}")


def _folder_key(folder: PurePath | str) -> str:
    return str(PureWindowsPath(folder)).rstrip("\\").lower()


def pipe_name(state_dir: PurePath | str, system_state_dir: PurePath | str) -> str:
    """The pipe the agent of `state_dir` serves."""
    key = _folder_key(state_dir)
    if key == _folder_key(system_state_dir):
        return SYSTEM_PIPE
    return f"{SYSTEM_PIPE}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def is_pipe_name(address: str) -> bool:
    name = address[len(PIPE_PREFIX) :]
    return address.lower().startswith(PIPE_PREFIX) and bool(name) and "\\" not in name


def pipe_sddl(shared: bool, agent_sid: str) -> str:
    """The security descriptor, in SDDL, that every instance of the pipe is created with."""
    if not _SID.fullmatch(agent_sid):
        raise ValueError(f"{agent_sid[:40]!r} is not a SID")
    entries = ["(D;;GA;;;NU)", "(A;;GA;;;SY)", "(A;;GA;;;BA)"]
    if agent_sid not in (LOCAL_SYSTEM_SID, ADMINISTRATORS_SID):
        entries.append(f"(A;;GA;;;{agent_sid})")
    if shared:
        entries.append(f"(A;;0x{CLIENT_RIGHTS:08x};;;IU)")
    return "D:P" + "".join(entries)


def trusted_owners(own_sid: str) -> frozenset[str]:
    """The owners a client trusts the pipe of: only an administrator or the user can be one."""
    return frozenset({LOCAL_SYSTEM_SID, ADMINISTRATORS_SID, own_sid})
