"""The suite's coverage: children are measured, and the gate refuses what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import suite_coverage
from tests.support.suite_coverage import FileCoverage, PackageCoverage

ROOT = Path(__file__).resolve().parents[2]
MEASURING = suite_coverage.mode(os.environ) != suite_coverage.OFF
PROBE = "import sys, sonde.agent.backoff; print('coverage' in sys.modules)"


def child_loaded_coverage(env: dict[str, str]) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip() == "True"


@pytest.mark.skipif(not MEASURING, reason=f"{suite_coverage.SWITCH}=off: nothing is measured")
def test_a_process_the_tests_start_is_measured() -> None:
    assert child_loaded_coverage(dict(os.environ))


def test_an_unmeasured_process_does_not_load_coverage() -> None:
    assert not child_loaded_coverage(suite_coverage.unmeasured(os.environ))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "gated"), ("gated", "gated"), (" Full ", "full"), ("off", "off"), ("0", "off")],
    ids=["unset", "gated", "full", "off", "zero"],
)
def test_the_switch_names_what_is_measured(value: str, expected: str) -> None:
    assert suite_coverage.mode({suite_coverage.SWITCH: value}) == expected


def test_a_switch_it_does_not_know_is_refused_not_taken_for_off() -> None:
    with pytest.raises(ValueError, match=r"SONDE_COVERAGE='of'.*gated.*full.*off"):
        suite_coverage.mode({suite_coverage.SWITCH: "of"})


def test_measuring_the_gated_packages_starts_only_the_server_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(suite_coverage.SWITCH, "gated")
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", "{}")
    given = {"COVERAGE_PROCESS_CONFIG": "{}", "HOME": "/nowhere"}
    assert suite_coverage.child_env("sonde-agent", given) == {"HOME": "/nowhere"}
    cli = suite_coverage.child_env("sonde")
    assert cli is not None
    assert "COVERAGE_PROCESS_CONFIG" not in cli
    assert cli["PATH"] == os.environ["PATH"]
    assert suite_coverage.child_env("sonde-server", given) == given
    assert suite_coverage.child_env("sonde-server") is None  # this process's own, measured


def test_measuring_everything_starts_every_program_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(suite_coverage.SWITCH, "full")
    given = {"COVERAGE_PROCESS_CONFIG": "{}"}
    assert suite_coverage.child_env("sonde-agent", given) == given
    assert suite_coverage.child_env("sonde") is None


def test_source_files_belong_to_their_import_package() -> None:
    assert suite_coverage.package_of(ROOT / "server/api/auth.py", ROOT) == "sonde.server.api"
    assert suite_coverage.package_of(ROOT / "agent/cli.py", ROOT) == "sonde.agent"
    assert suite_coverage.package_of(ROOT / "protos/sonde/wire_limits.py", ROOT) == "sonde"
    # Through the namespace's link to server/, the same package.
    linked = ROOT / "protos/sonde/server/domain/audit.py"
    assert suite_coverage.package_of(linked, ROOT) == "sonde.server.domain"


def test_packages_add_up_their_files() -> None:
    files = [
        FileCoverage("server/api/a.py", "sonde.server.api", 100, 10),
        FileCoverage("server/api/b.py", "sonde.server.api", 100, 30),
        FileCoverage("agent/c.py", "sonde.agent", 10, 10),
    ]
    assert suite_coverage.by_package(files) == [
        PackageCoverage("sonde.agent", 10, 10),
        PackageCoverage("sonde.server.api", 200, 40),
    ]
    assert suite_coverage.by_package(files)[1].percent == 80.0


def test_the_gate_names_each_package_under_it_and_each_not_measured() -> None:
    packages = [
        PackageCoverage("sonde.server.api", 1000, 151),
        PackageCoverage("sonde.agent", 1, 1),
    ]
    assert suite_coverage.gate_failures(packages) == [
        "sonde.server.api is at 84.9 %, under 85 %",
        "sonde.server.domain was not measured at all",
    ]


def test_the_gate_passes_at_85_percent() -> None:
    packages = [
        PackageCoverage("sonde.server.api", 100, 15),
        PackageCoverage("sonde.server.domain", 10, 0),
    ]
    assert suite_coverage.gate_failures(packages) == []


def test_the_summary_lists_files_under_the_gate_only_when_asked() -> None:
    files = [
        FileCoverage("server/domain/x.py", "sonde.server.domain", 10, 5),
        FileCoverage("server/domain/y.py", "sonde.server.domain", 10, 0),
    ]
    whole = suite_coverage.summary_lines(files, list_files=True)
    assert "  server/domain/x.py: 50.0 % (5 of 10 missed)" in whole
    assert not any("y.py" in line for line in whole)
    part = suite_coverage.summary_lines(files, list_files=False)
    assert not any("x.py" in line for line in part)
    assert any(line.startswith("sonde.server.domain") and "75.0 %" in line for line in part)
