"""collect.ps1, the Windows collection the agent runs and the server sends over WinRM, checked
on Linux with the tree-sitter PowerShell grammar: it parses, it is strict, it takes no
parameters, it runs no text as code, it only reads (every command is a getter or one of its
own functions), it reads no BitLocker key, and it writes every section the parser reads.
What only a real Windows shows (the cmdlets' output) is in docs/agent.md."""

from __future__ import annotations

import re
from pathlib import Path

from sonde.agent.collectors.windows.document import FIELD_SECTIONS, SCHEMA, collection_script
from tests.unit.catalog.test_powershell_scripts import evaluated, parse, text, walk

SCRIPT = Path(__file__).resolve().parents[3] / "agent" / "collectors" / "windows" / "collect.ps1"
# Commands that only read, and the script's own functions.
READING = re.compile(
    r"^(Get-\w+|Select-Object|Sort-Object|Group-Object|Where-Object|ForEach-Object|Out-String"
    r"|ConvertTo-Json|New-Object|Set-StrictMode|Add-Section|Read-Key|Get-ServiceRow"
    r"|ConvertTo-Utc|netsh\.exe|w32tm\.exe)$",
    re.IGNORECASE,
)


def commands(source: bytes) -> list[str]:
    return [text(n) for n in walk(parse(source)) if n.type == "command_name"]


def test_the_shipped_script_is_the_repository_s() -> None:
    assert collection_script() == SCRIPT.read_bytes()


def test_it_parses_and_is_strict() -> None:
    root = parse(SCRIPT.read_bytes())
    assert not root.has_error
    assert not [c for c in root.children if c.type == "param_block"]  # nothing is spliced in
    source = text(root)
    assert source.index("Set-StrictMode -Version Latest") < source.index(
        "$ErrorActionPreference = 'Stop'"
    )


def test_it_runs_no_text_as_code() -> None:
    source = SCRIPT.read_bytes()
    assert evaluated(parse(source)) == []
    assert not re.search(rb"Invoke-Expression|\biex\b|Invoke-Command", source, re.IGNORECASE)


def test_it_only_reads() -> None:
    used = commands(SCRIPT.read_bytes())
    assert "Get-MpComputerStatus" in used  # the walk sees the commands
    assert [name for name in used if not READING.match(name)] == []
    # netsh and w32tm only ever query.
    source = SCRIPT.read_text(encoding="utf-8")
    assert re.findall(r"& (?:netsh|w32tm)\.exe [^|)]*", source) == [
        "& netsh.exe winhttp show proxy ",
        "& w32tm.exe /query /status /verbose ",
        "& netsh.exe wlan show interfaces ",
    ]


def test_the_read_only_check_catches_what_it_is_for() -> None:
    for line in (b"Remove-Item C:\\x", b"Set-MpPreference -DisableRealtimeMonitoring $true"):
        assert [n for n in commands(line) if not READING.match(n)], line


def test_it_reads_no_bitlocker_key() -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    assert "KeyProtectorType" in source
    for secret in (
        "RecoveryPassword",
        "KeyProtectorId",
        "manage-bde",
        "BackupToAAD",
        ".KeyProtector)",
        "RecoveryKey",
    ):
        assert secret not in source, secret


def test_it_writes_every_section_the_parser_reads_in_the_schema_it_expects() -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    written = set(re.findall(r"^Add-Section '(\w+)'", source, re.MULTILINE))
    assert written == {name for needs in FIELD_SECTIONS.values() for name in needs}
    assert f"schema = '{SCHEMA}'" in source
