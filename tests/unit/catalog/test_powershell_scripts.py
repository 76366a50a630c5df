"""The catalog's PowerShell scripts, checked on Linux with the tree-sitter PowerShell grammar:
each parses without an error, its param() block is its manifest's parameters (PascalCase names,
[bool]/[int]/[string] types, Mandatory where required, the enum's ValidateSet, the string's
pattern, the int's ValidateRange, the default) plus [switch]$DryRun, it is strict, and
nothing in it runs text as code.
What only Windows can show (the cmdlets' behaviour) is in docs/remediation.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
import tree_sitter
import tree_sitter_powershell

from sonde.catalog.folder import CatalogEntry
from sonde.catalog.manifest import Interpreter, Manifest, ParameterType, Platform
from tests.unit.catalog.test_catalog_scripts import ENTRIES

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
POWERSHELL = [e for e in ENTRIES if e.manifest.interpreter is Interpreter.POWERSHELL]
TYPES = {
    ParameterType.BOOL: "bool",
    ParameterType.INT: "int",
    ParameterType.STRING: "string",
    ParameterType.ENUM: "string",
}


@dataclass
class ScriptParameter:
    name: str
    type: str = ""
    mandatory: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    bounds: tuple[int, int] | None = None
    default: str | None = None
    attributes: list[str] = field(default_factory=list)


def parse(source: bytes) -> tree_sitter.Node:
    return PARSER.parse(source).root_node


def walk(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    nodes = [node]
    for child in node.children:
        nodes.extend(walk(child))
    return nodes


def text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode()


def unquote(literal: str) -> str:
    literal = literal.strip()
    if literal[:1] == "'" and literal[-1:] == "'":
        return literal[1:-1].replace("''", "'")
    if literal[:1] == '"' and literal[-1:] == '"':
        return literal[1:-1]
    return literal


def script_parameters(root: tree_sitter.Node) -> list[ScriptParameter]:
    """The top-level param() block's parameters, as written."""
    blocks = [child for child in root.children if child.type == "param_block"]
    assert len(blocks) == 1, "one param() block at the top of the script"
    found: list[ScriptParameter] = []
    for node in walk(blocks[0]):
        if node.type != "script_parameter":
            continue
        variable = next(c for c in node.children if c.type == "variable")
        parameter = ScriptParameter(name=text(variable).removeprefix("$"))
        for child in node.children:
            if child.type == "script_parameter_default":
                parameter.default = text(child).removeprefix("=").strip()
            if child.type != "attribute_list":
                continue
            for attribute in (c for c in child.children if c.type == "attribute"):
                written = text(attribute)
                parameter.attributes.append(written)
                literal = next((c for c in attribute.children if c.type == "type_literal"), None)
                if literal is not None:
                    parameter.type = text(literal).strip("[]").lower()
                elif re.match(r"\[Parameter\(.*Mandatory\s*=\s*\$true", written, re.I):
                    parameter.mandatory = True
                elif written.lower().startswith("[validateset("):
                    arguments = walk(attribute)
                    parameter.choices = tuple(
                        unquote(text(a)) for a in arguments if a.type == "attribute_argument"
                    )
                elif written.lower().startswith("[validaterange("):
                    low, high = re.findall(r"-?[0-9]+", written)
                    parameter.bounds = (int(low), int(high))
                elif written.lower().startswith("[validatepattern("):
                    argument = next(a for a in walk(attribute) if a.type == "attribute_argument")
                    parameter.pattern = unquote(text(argument))
        found.append(parameter)
    return found


def pascal_case(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def expected_default(manifest: Manifest, name: str) -> str | None:
    parameter = manifest.parameter(name)
    assert parameter is not None
    if parameter.default is None:
        return None
    if isinstance(parameter.default, bool):
        return "$true" if parameter.default else "$false"
    return str(parameter.default)


def test_the_catalog_has_its_windows_scripts() -> None:
    windows = [e for e in ENTRIES if e.platform is Platform.WINDOWS]
    assert len(windows) >= 15
    assert windows == POWERSHELL


@pytest.mark.parametrize("entry", POWERSHELL, ids=lambda e: e.id)
def test_a_powershell_script_parses_without_errors(entry: CatalogEntry) -> None:
    root = parse(entry.script_bytes)
    broken = [n for n in walk(root) if n.type == "ERROR" or n.is_missing]
    assert not root.has_error, [(n.start_point, text(n)[:80]) for n in broken]


@pytest.mark.parametrize("entry", POWERSHELL, ids=lambda e: e.id)
def test_its_param_block_is_its_manifest(entry: CatalogEntry) -> None:
    manifest = entry.manifest
    written = script_parameters(parse(entry.script_bytes))
    names = [p.name for p in written]
    assert names == [pascal_case(p.name) for p in manifest.parameters] + ["DryRun"]
    assert written[-1].type == "switch"
    assert written[-1].default is None
    for declared, parameter in zip(manifest.parameters, written, strict=False):
        where = f"{entry.id} ${parameter.name}"
        assert parameter.type == TYPES[declared.type], where
        assert parameter.mandatory == declared.required, where
        assert parameter.choices == declared.choices, where
        if declared.type is ParameterType.STRING:
            assert parameter.pattern == f"^{declared.pattern}$", where
        if declared.minimum is not None or declared.maximum is not None:
            assert parameter.bounds == (declared.minimum, declared.maximum), where
        else:
            assert parameter.bounds is None, where
        default = parameter.default
        if default is not None and declared.type in (ParameterType.STRING, ParameterType.ENUM):
            default = unquote(default)
        assert default == expected_default(manifest, declared.name), where


@pytest.mark.parametrize("entry", POWERSHELL, ids=lambda e: e.id)
def test_a_powershell_script_is_strict(entry: CatalogEntry) -> None:
    root = parse(entry.script_bytes)
    statements = [text(c).strip() for c in root.children if c.type != "param_block"]
    body = "\n".join(statements)
    assert "Set-StrictMode -Version Latest" in body
    assert "$ErrorActionPreference = 'Stop'" in body
    assert text(root).index("Set-StrictMode") < text(root).index("$ErrorActionPreference = ")


# Commands that run text as code, or hand a command line to another interpreter.
EVALUATING_COMMANDS = {
    "invoke-expression",
    "iex",
    "invoke-command",
    "icm",
    "cmd",
    "cmd.exe",
    "powershell",
    "powershell.exe",
    "pwsh",
    "pwsh.exe",
    "start-process",
    "add-type",
}


def evaluated(root: tree_sitter.Node) -> list[str]:
    found = []
    for node in walk(root):
        if node.type == "command_name":
            name = text(node).lower()
            if name in EVALUATING_COMMANDS and not _starts_a_fixed_program(node):
                found.append(text(node.parent) if node.parent else name)
    source = text(root)
    for pattern in (r"\[scriptblock\]::Create", r"\.InvokeScript\(", r"\$ExecutionContext"):
        found += re.findall(pattern, source, re.I)
    return found


def _starts_a_fixed_program(name: tree_sitter.Node) -> bool:
    """Start-Process -FilePath <a path built from constants>, with no argument list."""
    command = name.parent
    if command is None or text(name).lower() != "start-process":
        return False
    written = text(command)
    return (
        "-ArgumentList" not in written
        and "$env:" in written
        and "$" not in written.replace("$env:SystemRoot", "")
    )


@pytest.mark.parametrize("entry", POWERSHELL, ids=lambda e: e.id)
def test_a_powershell_script_evaluates_nothing(entry: CatalogEntry) -> None:
    assert evaluated(parse(entry.script_bytes)) == []


def test_the_powershell_check_catches_what_it_is_for() -> None:
    for line in (
        "Invoke-Expression $Message",
        'iex "Stop-Service $Name"',
        '& cmd.exe /c "del $Path"',
        "powershell -Command $Text",
        'Start-Process notepad -ArgumentList "$Message"',
        "[scriptblock]::Create($Text).Invoke()",
        "Invoke-Command -ScriptBlock ([scriptblock]::Create($Text))",
    ):
        assert evaluated(parse(line.encode())), line
    fine = "Start-Process -FilePath (Join-Path $env:SystemRoot 'explorer.exe')\nStop-Service x"
    assert evaluated(parse(fine.encode())) == []


def test_the_grammar_reports_a_broken_script() -> None:
    assert parse(b"param(\n  [int]$A = \n").has_error
    assert parse(b"if ($x) { Write-Output 'y' ").has_error


def test_the_param_block_check_reads_what_is_written() -> None:
    source = b"""[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateSet('a', 'b')]
    [string]$Choice,
    [ValidatePattern('^[0-9]+$')]
    [string]$Digits = '12',
    [ValidateRange(1, 60)]
    [int]$Wait = 5,
    [bool]$Flag = $true,
    [switch]$DryRun
)
"""
    written = script_parameters(parse(source))
    assert [(p.name, p.type, p.mandatory) for p in written] == [
        ("Choice", "string", True),
        ("Digits", "string", False),
        ("Wait", "int", False),
        ("Flag", "bool", False),
        ("DryRun", "switch", False),
    ]
    assert written[0].choices == ("a", "b")
    assert written[1].pattern == "^[0-9]+$"
    assert written[2].bounds == (1, 60)
    assert (written[1].default, written[3].default) == ("'12'", "$true")
