"""`--version` on the programs: the release they are, from one place (sonde.__version__, the
version pyproject.toml gives the distribution)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import sonde

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_and_the_distribution_agree() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert sonde.__version__ == declared == version("sonde-helpdesk")


@pytest.mark.parametrize("program", ["sonde", "sonde-agent", "sonde-server"])
def test_each_program_says_its_version(program: str) -> None:
    executable = Path(sys.executable).parent / program
    done = subprocess.run(
        [str(executable), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{program} {sonde.__version__} (sonde-helpdesk)"
