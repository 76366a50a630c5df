"""How a PowerShell catalog script gets its parameters: a parameter file and a fixed prologue.

CreateProcess quoting followed by PowerShell's own parsing has broken every tool that passed
parameter values on a command line, so none is passed there. The runner writes the values to
a parameter file (JSON, owner-only, in the run's private folder) and starts

    powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass
        -File prologue.ps1 -ParameterFile <path> -Script <path>

where every argument is fixed or one of the run's own file paths. The prologue (PROLOGUE, one
constant text: no value is ever written into it) reads the file and calls the script with
the values splatted onto its param() block: the manifest's names in PascalCase
(service_name -> ServiceName), bool as [bool], int as [int], string and enum as [string],
and -DryRun as a [switch].

String values travel base64-encoded UTF-8 inside the JSON: ConvertFrom-Json in PowerShell 7
turns a string that looks like a date into a DateTime, which would change the value; a
base64 text has no such look, and [Convert]::FromBase64String gives the exact bytes back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

from sonde.catalog.manifest import DRY_RUN, Manifest, ParameterType, ParameterValue

PARAMETER_FILE_FORMAT = 1
DRY_RUN_NAME = "DryRun"

# Written once, never formatted: the test checks no value can reach it.
PROLOGUE = """\
# Sonde's fixed prologue: binds the run's parameter file to the catalog script's param() block.
param(
    [Parameter(Mandatory = $true)][string]$ParameterFile,
    [Parameter(Mandatory = $true)][string]$Script
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$utf8 = New-Object System.Text.UTF8Encoding($false, $true)
$document = [System.IO.File]::ReadAllText($ParameterFile, $utf8) | ConvertFrom-Json
if ($document.format -ne 1) { throw "parameter file format $($document.format) is not 1" }
$arguments = @{}
foreach ($entry in $document.parameters) {
    $name = [string]$entry.name
    switch ([string]$entry.type) {
        'string' {
            $bytes = [System.Convert]::FromBase64String([string]$entry.value)
            $arguments[$name] = $utf8.GetString($bytes)
        }
        'int' {
            $invariant = [System.Globalization.CultureInfo]::InvariantCulture
            $arguments[$name] = [int]::Parse([string]$entry.value, $invariant)
        }
        'bool' { $arguments[$name] = [bool]$entry.value }
        'switch' { $arguments[$name] = [switch][bool]$entry.value }
        default { throw "parameter $name has the unknown type $($entry.type)" }
    }
}
$global:LASTEXITCODE = 0
& $Script @arguments
exit $LASTEXITCODE
"""

COMMAND_OPTIONS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")


def pascal_case(name: str) -> str:
    """A manifest name as its PowerShell parameter (service_name -> ServiceName)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def parameter_file(manifest: Manifest, values: Mapping[str, ParameterValue]) -> bytes:
    """The parameter file of one run (UTF-8 JSON, ASCII only): every value with its type."""
    entries: list[dict[str, str | bool]] = []
    for name, value in values.items():
        if name == DRY_RUN:
            entries.append({"name": DRY_RUN_NAME, "type": "switch", "value": bool(value)})
            continue
        parameter = manifest.parameter(name)
        if parameter is None:
            raise ValueError(f"{manifest.id} has no parameter {name}")
        if parameter.type is ParameterType.BOOL:
            entries.append({"name": pascal_case(name), "type": "bool", "value": bool(value)})
        elif parameter.type is ParameterType.INT:
            entries.append({"name": pascal_case(name), "type": "int", "value": str(int(value))})
        else:
            encoded = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
            entries.append({"name": pascal_case(name), "type": "string", "value": encoded})
    document = {"format": PARAMETER_FILE_FORMAT, "parameters": entries}
    return json.dumps(document, ensure_ascii=True, indent=1).encode("ascii")


def read_parameter_file(data: bytes) -> dict[str, str | int | bool]:
    """What the prologue binds, read as the prologue reads it (for tests and diagnosis)."""
    document = json.loads(data.decode("utf-8"))
    if document.get("format") != PARAMETER_FILE_FORMAT:
        raise ValueError(f"parameter file format {document.get('format')!r} is not 1")
    bound: dict[str, str | int | bool] = {}
    for entry in document["parameters"]:
        kind, value = entry["type"], entry["value"]
        if kind == "string":
            bound[entry["name"]] = base64.b64decode(value, validate=True).decode("utf-8")
        elif kind == "int":
            bound[entry["name"]] = int(value)
        elif kind in ("bool", "switch"):
            bound[entry["name"]] = bool(value)
        else:
            raise ValueError(f"parameter {entry['name']} has the unknown type {kind}")
    return bound


def script_source(script: bytes) -> bytes:
    """The script as written to disk: with a UTF-8 byte order mark, without which Windows
    PowerShell 5.1 reads a .ps1 in the machine's ANSI code page."""
    bom = b"\xef\xbb\xbf"
    return script if script.startswith(bom) else bom + script


def powershell_command(
    executable: str, prologue: Path, parameters: Path, script: Path
) -> list[str]:
    """The command line of a run: the interpreter, fixed options, and three paths."""
    return [
        executable,
        *COMMAND_OPTIONS,
        "-File",
        str(prologue),
        "-ParameterFile",
        str(parameters),
        "-Script",
        str(script),
    ]
