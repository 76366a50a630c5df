"""What only a real Windows host shows about running a script in the logged-on user's
session (agent/remediation/user_session.py, never run on Linux): the session list Windows
gives, the user token and environment, the interactive desktop, the exit code and output
coming back through the files, the Job Object ending the tree at the timeout, and a signed
order through the agent's own RunOrders whose result names the session and its user.

Run on a Windows machine as SYSTEM (the service's account: `psexec -s`, or a scheduled task
as SYSTEM), with a user logged on at the console, naming that user:
    set SONDE_WINDOWS_AGENT_TEST=CONTOSO\\alice
    python -m pytest tests/integration/agent/test_user_session_real_windows.py
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import psutil
import pytest

from sonde.agent.catalog_key import pin_catalog_key
from sonde.agent.dispatch_key import DISPATCH_KEY
from sonde.agent.remediation.orders import RunOrders, windows_sessions
from sonde.agent.remediation.runner import RunLimits
from sonde.agent.remediation.session_choice import ChosenSession, choose_session
from sonde.catalog.manifest import Manifest, parse_manifest
from sonde.v1 import agent_pb2
from tests.integration.agent.run_orders import OrderMaker, raw, signed_entry

USER_ENV = "SONDE_WINDOWS_AGENT_TEST"

pytestmark = pytest.mark.skipif(
    sys.platform != "win32" or not os.environ.get(USER_ENV),
    reason=(
        f"needs a Windows host, run as SYSTEM with a user at the console, and {USER_ENV}="
        "DOMAIN\\user naming that user"
    ),
)

MANIFEST = b"""id = "who-am-i"
version = "1.0.0"
title = "Who runs this"
description = "Says which user, session and profile it runs in."
platforms = ["windows"]
interpreter = "powershell"
risk = "low"
timeout_s = 60
needs_admin = false
disruptive = false
reboot_required = false
idempotent = true
user_session = true
"""
SAYS_WHO = b"""param([switch]$DryRun)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Write-Output "user=$([Environment]::UserDomainName)\\$([Environment]::UserName)"
Write-Output "session=$((Get-Process -Id $PID).SessionId)"
Write-Output "profile=$env:LOCALAPPDATA"
[Console]::Error.WriteLine('on stderr')
exit 3
"""
LEAVES_A_CHILD = b"""param([switch]$DryRun)
$ping = @('-n', '120', '127.0.0.1')
$child = Start-Process -FilePath ping.exe -ArgumentList $ping -PassThru -WindowStyle Hidden
Write-Output "child=$($child.Id)"
Start-Sleep -Seconds 120
"""


def chosen() -> ChosenSession:
    sessions, console = windows_sessions()
    return choose_session(
        sessions,
        console,
        machine=socket.gethostname(),
        script_id="who-am-i",
    )


def manifest() -> Manifest:
    return parse_manifest(MANIFEST)


def test_the_console_users_session_is_found() -> None:
    sessions, _ = windows_sessions()
    assert any(s.session_id == 0 for s in sessions)
    session = chosen()
    assert session.connection == "console"
    assert session.session.user.lower() == os.environ[USER_ENV].lower()


async def test_a_script_runs_as_the_user_in_their_session_and_its_exit_code_comes_back(
    tmp_path: Path,
) -> None:
    from sonde.agent.remediation.user_session_run import run_in_user_session

    session = chosen()
    outcome = await run_in_user_session(
        manifest(), SAYS_WHO, {"dry_run": False}, session, work_root=tmp_path
    )
    lines = dict(line.split("=", 1) for line in outcome.stdout.decode().splitlines())
    assert outcome.exit_code == 3
    assert lines["user"].lower() == os.environ[USER_ENV].lower()
    assert int(lines["session"]) == session.session.session_id
    assert "systemprofile" not in lines["profile"].lower()  # the user's, not SYSTEM's
    assert outcome.stderr.strip() == b"on stderr"
    assert not list(tmp_path.iterdir())  # the run's folder is gone


async def test_the_timeout_ends_the_script_and_the_child_it_started(tmp_path: Path) -> None:
    from sonde.agent.remediation.user_session_run import run_in_user_session

    outcome = await run_in_user_session(
        manifest(),
        LEAVES_A_CHILD,
        {"dry_run": False},
        chosen(),
        limits=RunLimits(timeout_s=5),
        work_root=tmp_path,
    )
    assert outcome.timed_out
    child = int(outcome.stdout.decode().split("child=", 1)[1].split()[0])
    assert not psutil.pid_exists(child)


async def test_a_signed_order_runs_through_the_agents_own_checks_in_the_users_session(
    tmp_path: Path,
) -> None:
    """The whole agent side: RunOrders checks a really signed order, chooses the session,
    runs the script there, and the result names the session and its user."""
    maker = OrderMaker(agent_id="a" * 64)
    state = tmp_path / "state"
    state.mkdir()
    pin_catalog_key(state, raw(maker.catalog_key), replace=False)
    DISPATCH_KEY.pin(state, raw(maker.dispatch_key), replace=False)
    order = maker.order(signed_entry(maker.catalog_key, MANIFEST, SAYS_WHO))
    runs = RunOrders(state, maker.agent_id, completed=lambda _: False)
    verified = runs.check(maker.sign(order))
    sent: list[agent_pb2.ScriptOutput] = []

    async def send(output: agent_pb2.ScriptOutput) -> None:
        sent.append(output)

    result = await runs.execute(verified, send, asyncio.Event())
    ran = result.script_run
    assert ran.exit_code == 3
    assert ran.session.user.lower() == os.environ[USER_ENV].lower()
    assert ran.session.connection == "console"
    assert b"user=" in b"".join(chunk.data for chunk in sent)


def _tries_what_it_must_not(handle: int) -> bytes:
    """A script that tries to write through a handle of the agent's process it must not have
    inherited, to its own output file by its path, and a new file into its run's folder."""
    return (
        """param([switch]$DryRun)
function Try-It([string]$What, [scriptblock]$Do) {
    try { & $Do; Write-Output "$What=yes" } catch { Write-Output "$What=no" }
}
Try-It 'inherited' {
    $safe = New-Object Microsoft.Win32.SafeHandles.SafeFileHandle([IntPtr]HANDLE, $false)
    $stream = New-Object System.IO.FileStream($safe, [System.IO.FileAccess]::Write)
    $stream.Write([byte[]](0x4c), 0, 1)
    $stream.Flush()
}
Try-It 'output_by_path' {
    [System.IO.File]::AppendAllText((Join-Path $PWD 'stdout.txt'), 'forged')
}
Try-It 'new_file' { [System.IO.File]::WriteAllText((Join-Path $PWD 'result.txt'), 'x') }
""".replace("HANDLE", str(handle))
    ).encode()


async def test_the_user_inherits_only_its_output_and_cannot_write_the_runs_files(
    tmp_path: Path,
) -> None:
    """Another inheritable handle the agent holds at the start (a second run's output being
    handed over) is not the user's; the output files and the folder are not writable by
    path, so the user forges nothing beyond what their own script prints."""
    if sys.platform != "win32":  # the module is skipped there already; for mypy
        pytest.skip("Windows only")
    import msvcrt

    from sonde.agent.remediation.user_session_run import run_in_user_session

    sentinel = tmp_path / "another-runs-stdout.txt"
    with sentinel.open("wb") as held:
        handle = msvcrt.get_osfhandle(held.fileno())
        os.set_handle_inheritable(handle, True)
        work = tmp_path / "work"
        work.mkdir()
        outcome = await run_in_user_session(
            manifest(), _tries_what_it_must_not(handle), {"dry_run": False}, chosen(),
            work_root=work,
        )  # fmt: skip
    said = dict(line.split("=", 1) for line in outcome.stdout.decode().split())
    assert said == {"inherited": "no", "output_by_path": "no", "new_file": "no"}, outcome
    assert sentinel.read_bytes() == b""
    assert b"forged" not in outcome.stdout
