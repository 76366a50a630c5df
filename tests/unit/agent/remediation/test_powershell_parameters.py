"""The Windows path, as far as Linux can show it: the parameter file carries every hostile
value byte for byte, the prologue is one fixed text that no value reaches, and the command
line holds the interpreter, fixed options and the run's own paths, never a value.

What only Windows can show (docs/remediation.md): that powershell.exe binds the file to the
param() block as the prologue says, and that the Job Object ends the tree.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonde.agent.remediation import powershell
from sonde.agent.remediation.runner import prepare_run
from sonde.catalog.manifest import ParameterValue
from tests.unit.agent.remediation.manifests import manifest, string_parameter
from tests.unit.agent.remediation.test_parameter_injection import ATTACKS

ENTRY = manifest(
    "restart-allowed-service",
    interpreter="powershell",
    platforms=("windows",),
    parameters=string_parameter("service_name", required=True)
    + string_parameter("display_text")
    + """
[[parameters]]
name = "wait_seconds"
type = "int"
minimum = -5
maximum = 3600
description = "how long to wait"

[[parameters]]
name = "clear_jobs"
type = "bool"
description = "clear the queue too"

[[parameters]]
name = "scope"
type = "enum"
choices = ["user", "machine"]
description = "whose"
""",
)

hostile = st.one_of(
    st.sampled_from(ATTACKS),
    st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=60),
    st.sampled_from(["2024-01-02T03:04:05Z", "01/02/2024", "\\/Date(0)\\/", "True", "1e3"]),
)
MANY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@MANY
@given(
    name=hostile,
    text=hostile,
    wait=st.integers(-5, 3600),
    clear=st.booleans(),
    scope=st.sampled_from(["user", "machine"]),
    dry_run=st.booleans(),
)
def test_the_parameter_file_round_trips_every_value(
    name: str, text: str, wait: int, clear: bool, scope: str, dry_run: bool
) -> None:
    given_values = {
        "service_name": name,
        "display_text": text,
        "wait_seconds": str(wait),
        "clear_jobs": str(clear),
        "scope": scope,
    }
    values = ENTRY.check_values(given_values, dry_run=dry_run)
    data = powershell.parameter_file(ENTRY, values)
    data.decode("ascii")  # JSON escapes: no byte the reader's encoding could change
    bound = powershell.read_parameter_file(data)
    assert bound == {
        "ServiceName": name,
        "DisplayText": text,
        "WaitSeconds": wait,
        "ClearJobs": clear,
        "Scope": scope,
        "DryRun": dry_run,
    }
    # The exact bytes, as the prologue decodes them: base64 of UTF-8.
    entries = {e["name"]: e for e in json.loads(data)["parameters"]}
    assert base64.b64decode(entries["ServiceName"]["value"]) == name.encode("utf-8")
    assert entries["DryRun"]["type"] == "switch"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=hostile, text=hostile)
def test_no_value_reaches_the_prologue_or_the_command_line(
    name: str, text: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("run")
    values = ENTRY.check_values({"service_name": name, "display_text": text})
    script = b"param([string]$ServiceName, [string]$DisplayText, [switch]$DryRun)\n"
    argv, environment = prepare_run(
        folder, ENTRY, script, values, ["powershell.exe"], mark="m", home=folder
    )
    run_files = {
        str(folder / "prologue.ps1"),
        str(folder / "parameters.json"),
        str(folder / "restart-allowed-service.ps1"),
    }
    assert argv == [
        "powershell.exe",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-File",
        str(folder / "prologue.ps1"),
        "-ParameterFile",
        str(folder / "parameters.json"),
        "-Script",
        str(folder / "restart-allowed-service.ps1"),
    ]
    assert set(argv[6::2]) == run_files
    assert (folder / "prologue.ps1").read_text("ascii") == powershell.PROLOGUE
    assert not any(key.startswith("SONDE_PARAM_") for key in environment)
    assert powershell.read_parameter_file((folder / "parameters.json").read_bytes()) == {
        "ServiceName": name,
        "DisplayText": text,
        "DryRun": False,
    }
    for path in run_files:
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600


def test_the_prologue_is_fixed_text_that_parses() -> None:
    assert powershell.PROLOGUE.isascii()
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    assert not parser.parse(powershell.PROLOGUE.encode()).root_node.has_error
    assert parser.parse(b"param(\n[string]$a = ").root_node.has_error  # it does find errors
    assert "& $Script @arguments" in powershell.PROLOGUE  # the values are splatted, not parsed


@pytest.mark.parametrize(
    ("name", "pascal"),
    [
        ("service_name", "ServiceName"),
        ("days", "Days"),
        ("max_age_days", "MaxAgeDays"),
        ("x", "X"),
        ("ipv6_only", "Ipv6Only"),
    ],
)
def test_names_are_pascal_case(name: str, pascal: str) -> None:
    assert powershell.pascal_case(name) == pascal


def test_the_script_gets_one_utf8_byte_order_mark() -> None:
    source = "Write-Output 'Grüße'\n".encode()
    once = powershell.script_source(source)
    assert once == b"\xef\xbb\xbf" + source
    assert powershell.script_source(once) == once


def test_a_value_for_no_parameter_is_refused() -> None:
    values: dict[str, ParameterValue] = {"service_name": "x", "dry_run": False, "other": "y"}
    with pytest.raises(ValueError, match="has no parameter other"):
        powershell.parameter_file(ENTRY, values)


def test_a_changed_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format 2 is not 1"):
        powershell.read_parameter_file(b'{"format": 2, "parameters": []}')
