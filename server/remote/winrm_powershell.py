"""The two fixed PowerShell programs the WinRM transport starts, and the documents they read.

WinRS starts one command line, through cmd.exe, capped at 8191 characters; a value written
into it is parsed twice (cmd, then PowerShell). So no value is: every command the server runs
over WinRM is one of two constant scripts, sent as `powershell.exe -EncodedCommand` (UTF-16LE
base64 of text that is never formatted), and what varies travels on stdin as data.

- LAUNCHER reads one JSON run document from stdin: the files to write into a fresh private
  folder (a catalog run's prologue, parameter file and script), the environment, the argument
  list (each item a text or the name of one of those files) and the command's own stdin. It
  runs `& $program @arguments` and exits with its exit code, then removes the folder.
- RECEIVER takes an upload: a JSON header line (the path, the expected SHA-256), then one
  base64 line per chunk, then an empty line. It writes a partial file, hashes what it wrote,
  and moves it into place owner-only only when the hash is the one expected; it prints the
  hash and length it saw as JSON, which the server compares with its own.

Every text in a document is base64 of UTF-8, as in the agent's parameter file: PowerShell's
ConvertFrom-Json would otherwise turn a date-like string into a DateTime.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DOCUMENT_FORMAT = 1
EXECUTABLE = "powershell.exe"
OPTIONS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
CMD_LINE_LIMIT = 8191  # cmd.exe's, which WinRS starts the command line through
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

# Written once, never formatted: a test checks both stay under cmd's limit once encoded.
LAUNCHER = """\
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$utf8 = New-Object System.Text.UTF8Encoding($false, $true)
[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false)
function Text([string]$value) { $utf8.GetString([System.Convert]::FromBase64String($value)) }
$document = [Console]::In.ReadToEnd() | ConvertFrom-Json
if ($document.format -ne 1) { throw "run document format $($document.format) is not 1" }
$folder = Join-Path ([System.IO.Path]::GetTempPath()) ('sonde-' + [guid]::NewGuid().ToString('N'))
$me = [System.Security.Principal.WindowsIdentity]::GetCurrent().User
$acl = New-Object System.Security.AccessControl.DirectorySecurity
$acl.SetAccessRuleProtection($true, $false)
$rule = New-Object System.Security.AccessControl.FileSystemAccessRule(
    $me, 'FullControl', 'ContainerInherit,ObjectInherit', 'None', 'Allow')
$acl.AddAccessRule($rule)
$null = [System.IO.Directory]::CreateDirectory($folder, $acl)
$code = 255
try {
    foreach ($file in $document.files) {
        $name = Text $file.name
        if ($name -notmatch '^[A-Za-z0-9][A-Za-z0-9._-]*$') { throw "file name $name refused" }
        $bytes = [System.Convert]::FromBase64String([string]$file.data)
        [System.IO.File]::WriteAllBytes((Join-Path $folder $name), $bytes)
    }
    foreach ($variable in $document.environment) {
        [System.Environment]::SetEnvironmentVariable(
            (Text $variable.name), (Text $variable.value), 'Process')
    }
    $argv = @(foreach ($item in $document.argv) {
        $value = Text $item.value
        if ($item.kind -eq 'file') { Join-Path $folder $value } else { $value }
    })
    $arguments = @($argv | Select-Object -Skip 1)
    $stdin = Text $document.stdin
    $global:LASTEXITCODE = 0
    if ($stdin.Length -gt 0) { $stdin | & $argv[0] @arguments } else { & $argv[0] @arguments }
    $code = $LASTEXITCODE
} finally {
    Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction SilentlyContinue
}
exit $code
"""

RECEIVER = """\
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$utf8 = New-Object System.Text.UTF8Encoding($false, $true)
$header = [Console]::In.ReadLine() | ConvertFrom-Json
if ($header.format -ne 1) { throw "upload header format $($header.format) is not 1" }
$path = $utf8.GetString([System.Convert]::FromBase64String([string]$header.path))
$partial = $path + '.sonde-partial'
$sha = [System.Security.Cryptography.SHA256]::Create()
$stream = [System.IO.File]::Open($partial, 'Create', 'Write', 'None')
$length = 0
try {
    while ($true) {
        $line = [Console]::In.ReadLine()
        if ($null -eq $line -or $line.Length -eq 0) { break }
        $bytes = [System.Convert]::FromBase64String($line)
        $null = $sha.TransformBlock($bytes, 0, $bytes.Length, $null, 0)
        $stream.Write($bytes, 0, $bytes.Length)
        $length += $bytes.Length
    }
    $null = $sha.TransformFinalBlock([byte[]]@(), 0, 0)
} finally {
    $stream.Dispose()
}
$digest = -join ($sha.Hash | ForEach-Object { $_.ToString('x2') })
$placed = $digest -eq [string]$header.sha256
if ($placed) {
    $acl = Get-Acl -LiteralPath $partial
    $acl.SetAccessRuleProtection($true, $false)
    $me = [System.Security.Principal.WindowsIdentity]::GetCurrent().User
    $acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule(
        $me, 'FullControl', 'Allow')))
    Set-Acl -LiteralPath $partial -AclObject $acl
    Move-Item -LiteralPath $partial -Destination $path -Force
} else {
    Remove-Item -LiteralPath $partial -Force
}
$answer = @{ format = 1; sha256 = $digest; length = $length; placed = $placed }
[Console]::Out.Write(($answer | ConvertTo-Json -Compress))
if (-not $placed) { exit 3 }
"""


@dataclass(frozen=True)
class RunFile:
    """A file the launcher writes into the run's private folder before it starts argv."""

    name: str
    data: bytes


@dataclass(frozen=True)
class FileArgument:
    """An argument that is the full path of one of the run's files, known only remotely."""

    name: str


Argument = str | FileArgument


def encoded_command(script: str) -> str:
    """The WinRS command line that starts a fixed script: nothing in it comes from a caller."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return " ".join((EXECUTABLE, *OPTIONS, "-EncodedCommand", encoded))


def _text(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def run_document(
    argv: Sequence[Argument],
    *,
    files: Sequence[RunFile] = (),
    environment: Mapping[str, str] | None = None,
    stdin: bytes = b"",
) -> bytes:
    """LAUNCHER's stdin: one JSON line (ASCII), every text base64 of its UTF-8."""
    if not argv:
        raise ValueError("a command needs at least its program")
    for file in files:
        if not FILE_NAME.fullmatch(file.name):
            raise ValueError(f"a run's file name must match {FILE_NAME.pattern}: {file.name!r}")
    names = {file.name for file in files}
    items: list[dict[str, str]] = []
    for argument in argv:
        if isinstance(argument, FileArgument):
            if argument.name not in names:
                raise ValueError(f"the argument names the file {argument.name}, not in the run")
            items.append({"kind": "file", "value": _text(argument.name)})
        else:
            items.append({"kind": "text", "value": _text(argument)})
    document = {
        "format": DOCUMENT_FORMAT,
        "files": [
            {"name": _text(f.name), "data": base64.b64encode(f.data).decode("ascii")} for f in files
        ],
        "environment": [
            {"name": _text(name), "value": _text(value)}
            for name, value in (environment or {}).items()
        ],
        "argv": items,
        "stdin": _text(stdin.decode("utf-8")),
    }
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def script_document(name: str, script: bytes, arguments: Sequence[str] = ()) -> bytes:
    """A fixed script of Sonde's (the Windows collection) run with -File from the run's
    folder, its arguments as data; with a UTF-8 byte order mark, without which Windows
    PowerShell 5.1 reads a .ps1 in the machine's ANSI code page."""
    bom = b"\xef\xbb\xbf"
    file = RunFile(name, script if script.startswith(bom) else bom + script)
    argv: list[Argument] = [EXECUTABLE, *OPTIONS, "-File", FileArgument(name), *arguments]
    return run_document(argv, files=[file])


def upload_header(remote_path: str, sha256: str) -> bytes:
    """RECEIVER's first line: where the file goes and the hash it must have."""
    header = {"format": DOCUMENT_FORMAT, "path": _text(remote_path), "sha256": sha256}
    return json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\r\n"


@dataclass(frozen=True)
class UploadAnswer:
    sha256: str
    length: int
    placed: bool


def read_upload_answer(stdout: bytes) -> UploadAnswer:
    """RECEIVER's last line; ValueError when it is not the JSON object it prints."""
    document = json.loads(stdout.decode("utf-8").strip().splitlines()[-1])
    if not isinstance(document, dict) or document.get("format") != DOCUMENT_FORMAT:
        raise ValueError("not the receiver's answer")
    sha256, length, placed = document.get("sha256"), document.get("length"), document.get("placed")
    if not isinstance(sha256, str) or not isinstance(length, int) or not isinstance(placed, bool):
        raise ValueError("the receiver's answer lacks its hash, length or outcome")
    return UploadAnswer(sha256=sha256, length=length, placed=placed)
