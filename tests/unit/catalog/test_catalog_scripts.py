"""The real catalog in scripts/: every manifest valid and paired with its script, the Linux
scripts clean under shellcheck, no script that evaluates text as code, and every finding a
script claims to fix or to verify is a check the agent has."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sonde.agent.checks import CHECKS
from sonde.catalog.folder import CatalogEntry, load_catalog_folder
from sonde.catalog.manifest import Interpreter, Platform, Risk

CATALOG = Path(__file__).resolve().parents[3] / "scripts"
ENTRIES = load_catalog_folder(CATALOG)
BY_ID = {entry.id: entry for entry in ENTRIES}
SHELL = [e for e in ENTRIES if e.manifest.interpreter in (Interpreter.BASH, Interpreter.SH)]
POWERSHELL = [e for e in ENTRIES if e.manifest.interpreter is Interpreter.POWERSHELL]


def test_every_manifest_is_valid_and_paired_with_its_script() -> None:
    files = sorted(p for p in CATALOG.rglob("*") if p.is_file() and p.parent != CATALOG)
    paired = sorted([e.manifest_path for e in ENTRIES] + [e.script_path for e in ENTRIES])
    assert files == paired
    windows = [e for e in ENTRIES if e.platform is Platform.WINDOWS]
    linux = [e for e in ENTRIES if e.platform is Platform.LINUX]
    assert len(linux) >= 10
    assert all(e.manifest.interpreter is Interpreter.POWERSHELL for e in windows)
    assert all(e.manifest.interpreter in (Interpreter.BASH, Interpreter.SH) for e in linux)


def test_every_fix_and_verify_names_a_check_the_agent_has() -> None:
    checks = {check_id for check_id, _ in CHECKS}
    for entry in ENTRIES:
        unknown = set(entry.manifest.fixes + entry.manifest.verify) - checks
        assert not unknown, f"{entry.id} names {unknown}, which no check produces"
        # What a script claims to fix is collected again afterwards, so the ticket can say.
        assert set(entry.manifest.fixes) <= set(entry.manifest.verify), entry.id


def test_risk_is_honest_for_what_users_notice() -> None:
    for entry in ENTRIES:
        manifest = entry.manifest
        if manifest.reboot_required:
            assert manifest.risk is Risk.HIGH, entry.id
        if manifest.disruptive:
            assert manifest.risk is not Risk.LOW, entry.id
    assert BY_ID["flush-dns-cache-linux"].manifest.risk is Risk.LOW
    assert BY_ID["reboot-with-notice-linux"].manifest.risk is Risk.HIGH


@pytest.mark.parametrize("entry", SHELL, ids=lambda e: e.id)
def test_a_shell_script_is_strict(entry: CatalogEntry) -> None:
    text = entry.script_bytes.decode()
    if entry.manifest.interpreter is Interpreter.BASH:
        assert text.startswith("#!/bin/bash\n")
        assert "\nset -euo pipefail\n" in text
    else:
        assert text.startswith("#!/bin/sh\n")
        assert "\nset -eu\n" in text


@pytest.mark.parametrize("entry", SHELL, ids=lambda e: e.id)
def test_a_shell_script_passes_shellcheck(entry: CatalogEntry) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck; .ci/run does)")
    shell = "bash" if entry.manifest.interpreter is Interpreter.BASH else "sh"
    completed = subprocess.run(
        [shellcheck, "--severity=style", f"--shell={shell}", str(entry.script_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout


# Text run as code: a parameter reaching one of these would be evaluated.
SHELL_EVALUATES = re.compile(
    r"\beval\b|\b(?:ba|da|z|k)?sh\s+-c\b|\bsource\b|(?:^|[;&|]\s*)\.\s+\S|\bexec\s+\"?\$"
)


@pytest.mark.parametrize("entry", SHELL, ids=lambda e: e.id)
def test_a_shell_script_evaluates_nothing(entry: CatalogEntry) -> None:
    code = [line for line in entry.script_bytes.decode().splitlines() if not line.startswith("#")]
    found = [line for line in code if SHELL_EVALUATES.search(line)]
    assert not found
    # Parameters are read once into variables, always quoted where they are expanded.
    unquoted = [line for line in code if re.search(r"(?<![\"{])\$\{?SONDE_PARAM_", line)]
    assert not unquoted


def test_the_shell_check_catches_what_it_is_for() -> None:
    for line in ('eval "$x"', 'bash -c "$SONDE_PARAM_X"', 'sh -c "$1"', '. "$f"', "source x"):
        assert SHELL_EVALUATES.search(line), line
    for line in ('echo "evaluated"', 'systemctl restart -- "$unit"', "find . -type f"):
        assert not SHELL_EVALUATES.search(line), line


def test_the_docs_list_every_script_with_its_risk() -> None:
    page = (CATALOG.parent / "docs" / "remediation.md").read_text()
    listed = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (low|medium|high)\b", page, re.M))
    assert listed == {e.id: e.manifest.risk.value for e in ENTRIES}
