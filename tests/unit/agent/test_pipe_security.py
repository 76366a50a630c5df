"""The Windows help pipe's names and security descriptor (agent/pipe_security.py): the rules
that keep other users and the network off the pipe, checked as text on every platform."""

from __future__ import annotations

import re
from pathlib import PureWindowsPath

import pytest

from sonde.agent.pipe_security import (
    ADMINISTRATORS_SID,
    CLIENT_ACCESS,
    CLIENT_RIGHTS,
    FILE_CREATE_PIPE_INSTANCE,
    LOCAL_SYSTEM_SID,
    SYSTEM_PIPE,
    is_pipe_name,
    pipe_name,
    pipe_sddl,
    trusted_owners,
)

SERVICE_FOLDER = PureWindowsPath(r"C:\ProgramData\Sonde\agent")
USER_SID = "S-1-5-21-1004336348-1177238915-682003330-1001"


def _entries(sddl: str) -> list[tuple[str, str, str]]:
    """(allow or deny, rights, trustee) of each entry of a DACL."""
    assert sddl.startswith("D:P(")
    return [
        (kind, rights, trustee)
        for kind, rights, trustee in re.findall(r"\(([AD]);;([^;]+);;;([^)]+)\)", sddl)
    ]


def test_the_service_folder_has_the_system_pipe_whatever_its_spelling() -> None:
    assert pipe_name(SERVICE_FOLDER, SERVICE_FOLDER) == SYSTEM_PIPE
    assert pipe_name(r"c:\programdata\SONDE\agent\\", SERVICE_FOLDER) == SYSTEM_PIPE
    assert pipe_name("C:/ProgramData/Sonde/agent", SERVICE_FOLDER) == SYSTEM_PIPE


def test_another_folder_has_a_pipe_of_its_own() -> None:
    first = pipe_name(r"D:\test\agent-1", SERVICE_FOLDER)
    second = pipe_name(r"D:\test\agent-2", SERVICE_FOLDER)
    assert first.startswith(SYSTEM_PIPE + "-")
    assert second.startswith(SYSTEM_PIPE + "-")
    assert first != second
    assert pipe_name(r"d:\TEST\agent-1", SERVICE_FOLDER) == first
    assert is_pipe_name(first)


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        (SYSTEM_PIPE, True),
        (r"\\.\PIPE\other", True),
        (r"\\.\pipe\\", False),
        (r"\\.\pipe\a\b", False),
        (r"\\server\pipe\sonde-agent-help", False),  # never a remote machine's pipe
        (r"C:\sonde.sock", False),
        ("/run/sonde-agent/help.sock", False),
    ],
)
def test_only_a_local_pipe_name_is_one(address: str, valid: bool) -> None:
    assert is_pipe_name(address) is valid


def test_the_shared_pipe_lets_interactive_users_ask_but_not_add_instances() -> None:
    entries = _entries(pipe_sddl(shared=True, agent_sid=LOCAL_SYSTEM_SID))
    assert entries[0] == ("D", "GA", "NU"), "the network logon is denied first"
    assert ("A", "GA", "SY") in entries
    assert ("A", "GA", "BA") in entries
    users = [rights for kind, rights, trustee in entries if trustee == "IU"]
    assert users == [f"0x{CLIENT_RIGHTS:08x}"]
    assert not CLIENT_RIGHTS & FILE_CREATE_PIPE_INSTANCE
    # What the client opens the pipe for is within what it is granted (GENERIC_READ maps to
    # FILE_GENERIC_READ, 0x120089).
    asked = (CLIENT_ACCESS & ~0x80000000) | 0x120089
    assert asked & ~CLIENT_RIGHTS == 0
    assert {trustee for _kind, _rights, trustee in entries} == {"NU", "SY", "BA", "IU"}


def test_an_agents_own_pipe_is_its_users_alone() -> None:
    entries = _entries(pipe_sddl(shared=False, agent_sid=USER_SID))
    assert ("A", "GA", USER_SID) in entries
    assert all(trustee != "IU" for _kind, _rights, trustee in entries)
    assert entries[0] == ("D", "GA", "NU")


@pytest.mark.parametrize("sid", ["S-1-5-21-1)(A;;GA;;;WD", "WD", "", "S-1-5-18 ", "s-1-5-18"])
def test_a_sid_that_is_not_one_never_reaches_the_descriptor(sid: str) -> None:
    with pytest.raises(ValueError, match="is not a SID"):
        pipe_sddl(shared=True, agent_sid=sid)


def test_a_client_trusts_only_an_administrators_pipe_or_its_own() -> None:
    owners = trusted_owners(USER_SID)
    assert owners == {LOCAL_SYSTEM_SID, ADMINISTRATORS_SID, USER_SID}
    assert "S-1-5-21-1004336348-1177238915-682003330-1002" not in owners
