"""Running a catalog Linux script as the agent does: its parameters as SONDE_PARAM_* variables
and SONDE_DRY_RUN, a closed stdin, a small fixed environment, nothing spliced into a command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sonde.catalog.folder import CatalogEntry, load_catalog_folder
from sonde.catalog.manifest import DRY_RUN, ParameterValue, Platform

REPOSITORY = Path(__file__).resolve().parents[3]
CATALOG = REPOSITORY / "scripts"


def linux_entries() -> list[CatalogEntry]:
    return [e for e in load_catalog_folder(CATALOG) if e.platform is Platform.LINUX]


def parameter_environment(values: Mapping[str, ParameterValue]) -> dict[str, str]:
    """The shared convention: SONDE_PARAM_<NAME> (bool "1"/"0", int decimal), SONDE_DRY_RUN."""
    environment: dict[str, str] = {}
    for name, value in values.items():
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        key = "SONDE_DRY_RUN" if name == DRY_RUN else f"SONDE_PARAM_{name.upper()}"
        environment[key] = text
    return environment


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    stdout: str
    stderr: str


def run_script(
    entry: CatalogEntry,
    given: Mapping[str, str],
    *,
    dry_run: bool,
    home: Path,
    tmpdir: Path | None,
    timeout_s: float = 60,
) -> ScriptResult:
    """`entry`'s script with `given` checked against its manifest first, as the agent does."""
    values = entry.manifest.check_values(given, dry_run=dry_run)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **parameter_environment(values),
    }
    if tmpdir is not None:
        environment["TMPDIR"] = str(tmpdir)
    completed = subprocess.run(
        [entry.manifest.interpreter.value, str(entry.script_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=environment,
        timeout=timeout_s,
        check=False,
    )
    return ScriptResult(
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )
