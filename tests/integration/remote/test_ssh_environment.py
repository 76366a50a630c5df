"""Environment values over SSH stay off the host's command lines (ssh_environment.py): a
value is in no /proc/PID/cmdline while the command runs, arrives byte for byte, and the
bootstrap refuses a block it cannot read. Against the real sshd."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from sonde.server.remote.host_keys import TrustedHostKey
from sonde.server.remote.ssh import SshShell, remote_command
from sonde.server.remote.ssh_environment import ENV_BOOTSTRAP, environment_block
from tests.support.sshd import Sshd


def _command_lines() -> list[bytes]:
    found: list[bytes] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes())
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return found


async def test_a_value_is_on_no_command_line_while_the_command_runs(
    sshd: Sshd, trusted: list[TrustedHostKey], tmp_path: Path
) -> None:
    marker = f"sonde-secret-{secrets.token_hex(8)}"
    started = tmp_path / "started"
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        running = asyncio.create_task(
            shell.run(
                [
                    "sh",
                    "-c",
                    'touch "$1"; sleep 1.5; printf %s "$SONDE_PARAM_TOKEN"',
                    "sh",
                    str(started),
                ],
                environment={"SONDE_PARAM_TOKEN": marker},
            )
        )
        seen: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 10
        while not started.exists():
            assert asyncio.get_running_loop().time() < deadline, "the command never started"
            await asyncio.sleep(0.05)
        for _ in range(5):  # while it sleeps: every process's argv, sshd's children included
            seen += _command_lines()
            await asyncio.sleep(0.1)
        result = await running
    finally:
        await shell.close()
    assert result.exit_code == 0
    assert result.stdout.decode() == marker  # it did reach the command
    assert any(b"sleep 1.5" in line for line in seen)  # the scan does see the command
    assert not [line for line in seen if marker.encode() in line]


async def test_values_arrive_byte_for_byte_and_the_environment_can_be_only_them(
    sshd: Sshd, trusted: list[TrustedHostKey], tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    hostile = f"$(touch {canary}) `touch {canary}` ' \" ;|&*\\\n\n=x= \t end\n"
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        echoed = await shell.run(
            ["sh", "-c", 'printf %s "$A"; cat'],
            stdin=b"the rest of stdin\n",
            environment={"A": hostile, "EMPTY": ""},
        )
        only = await shell.run(
            ["/usr/bin/env"], environment={"ONLY": "1", "PATH": "/bin"}, clean_environment=True
        )
    finally:
        await shell.close()
    assert echoed.stdout.decode() == hostile + "the rest of stdin\n"
    assert not canary.exists()
    shown = sorted(only.stdout.decode().splitlines())
    # PWD is the shell's own (sh exports it at start, as bash does for a script on the agent).
    assert [line for line in shown if not line.startswith("PWD=")] == ["ONLY=1", "PATH=/bin"]


async def test_the_bootstrap_refuses_a_block_it_cannot_read(
    sshd: Sshd, trusted: list[TrustedHostKey]
) -> None:
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        bad_name = await shell.run(["sh", "-c", ENV_BOOTSTRAP, "x", "true"], stdin=b"1A=eA==\n")
        not_base64 = await shell.run(["sh", "-c", ENV_BOOTSTRAP, "x", "true"], stdin=b"A=***\n")
        no_block = await shell.run(["sh", "-c", ENV_BOOTSTRAP, "x", "true"])
    finally:
        await shell.close()
    assert bad_name.exit_code == 125
    assert b"not one" in bad_name.stderr
    assert not_base64.exit_code == 125
    assert b"A is not base64" in not_base64.stderr
    assert no_block.exit_code == 125
    assert b"no environment block" in no_block.stderr


def test_names_and_values_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="environment variable name"):
        environment_block({"A;touch /tmp/x": "1"})
    with pytest.raises(ValueError, match="NUL"):
        environment_block({"A": "x\0y"})
    line = remote_command(["printf", "%s"], {"A": "visible?"})
    assert "visible?" not in line
