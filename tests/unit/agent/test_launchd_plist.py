"""packaging/launchd/org.sonde.agent.plist, read with plistlib: a daemon label, the agent's
`run` on the macOS root state folder the agent itself defaults to, started at load and again
after a failure, a stop timeout, owner-only files, log paths, the PATH the macOS collectors
need; and its arguments taken by the real `sonde-agent`, which on a folder that is not
enrolled exits non-zero (so launchd's KeepAlive starts it again) saying why."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sonde.agent.paths import MACOS_SYSTEM_STATE_DIR

PLIST = Path(__file__).resolve().parents[3] / "packaging" / "launchd" / "org.sonde.agent.plist"
EXIT_NOT_ENROLLED = 3


@pytest.fixture(scope="module")
def daemon() -> dict[str, Any]:
    with PLIST.open("rb") as handle:
        loaded = plistlib.load(handle)
    assert isinstance(loaded, dict)
    return loaded


def test_it_is_an_xml_property_list_named_after_its_label(daemon: dict[str, Any]) -> None:
    assert PLIST.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist')
    assert daemon["Label"] == "org.sonde.agent" == PLIST.stem
    assert set(daemon) == {
        "Label",
        "ProgramArguments",
        "UserName",
        "RunAtLoad",
        "KeepAlive",
        "ThrottleInterval",
        "ExitTimeOut",
        "Umask",
        "ProcessType",
        "EnvironmentVariables",
        "StandardOutPath",
        "StandardErrorPath",
    }


def test_it_runs_the_agent_as_root_on_the_state_folder_the_agent_defaults_to(
    daemon: dict[str, Any],
) -> None:
    program, *arguments = daemon["ProgramArguments"]
    assert program == "/Library/Application Support/Sonde/venv/bin/sonde-agent"
    assert arguments == ["run", "--state", str(MACOS_SYSTEM_STATE_DIR)]
    assert daemon["UserName"] == "root"


def test_root_runs_nothing_from_the_folders_homebrew_gives_a_user(
    daemon: dict[str, Any],
) -> None:
    """/usr/local (Intel) and /opt/homebrew (Apple silicon) belong to the user who installed
    Homebrew: a program, or a venv's interpreter, there is theirs to change, and root would
    run their code. The daemon's program is in a folder only root writes."""
    program = Path(daemon["ProgramArguments"][0])
    assert program.is_absolute()
    for users_folder in (Path("/usr/local"), Path("/opt/homebrew")):
        assert not program.is_relative_to(users_folder), program
    assert program.is_relative_to(MACOS_SYSTEM_STATE_DIR.parent), program


def test_it_starts_at_load_and_again_after_a_failure_not_after_a_clean_stop(
    daemon: dict[str, Any],
) -> None:
    assert daemon["RunAtLoad"] is True
    assert daemon["KeepAlive"] == {"SuccessfulExit": False}
    assert daemon["ThrottleInterval"] >= 10  # a revoked agent is not restarted in a loop
    assert 0 < daemon["ExitTimeOut"] <= 30


def test_files_are_owner_only_and_logs_and_path_are_set(daemon: dict[str, Any]) -> None:
    assert daemon["Umask"] == 0o077
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert daemon[key] == "/Library/Logs/sonde-agent.log"
    path = daemon["EnvironmentVariables"]["PATH"].split(":")
    assert {"/usr/bin", "/usr/sbin"} <= set(path)  # pmset, fdesetup; system_profiler, ioreg
    assert set(daemon["EnvironmentVariables"]) == {"PATH"}


def test_the_real_agent_takes_its_arguments_and_fails_loudly_when_not_enrolled(
    daemon: dict[str, Any], tmp_path: Path
) -> None:
    agent = shutil.which("sonde-agent", path=str(Path(sys.executable).parent))
    assert agent is not None
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    _, *arguments = daemon["ProgramArguments"]
    arguments[arguments.index("--state") + 1] = str(state)
    done = subprocess.run(
        [agent, *arguments], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_NOT_ENROLLED
    assert "this agent is not enrolled" in done.stderr
    assert "sonde-agent enroll TOKEN" in done.stderr
