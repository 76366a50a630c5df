"""Coverage of the run, in this process and in every process the tests start.

Started here, before any test module imports sonde (tests/support/suite_coverage.py says how the
children are measured). The summary is printed at the end of every run; the gate (sonde.server.api
and sonde.server.domain at 85 % or more) is applied only when the whole suite ran: no paths given
(pytest's testpaths), no -k or -m, nothing deselected. SONDE_COVERAGE=full measures every
package in every process, SONDE_COVERAGE=off nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import suite_coverage

_ROOT = Path(__file__).resolve().parent.parent
# A pytest-xdist worker is a child of the run's main process: the coverage that the main
# process handed to its children (patch = subprocess) already measures it and every process
# its tests start, and the main process combines their data once every worker has finished.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_MODE = suite_coverage.mode(os.environ)
_measure = (
    None
    if _WORKER or _MODE == suite_coverage.OFF
    else suite_coverage.SuiteCoverage(_ROOT, full=_MODE == suite_coverage.FULL)
)
_deselected: list[pytest.Item] = []
_summary: list[str] = []


def pytest_deselected(items: list[pytest.Item]) -> None:
    _deselected.extend(items)


def _whole_suite(config: pytest.Config) -> bool:
    return (
        config.args_source == pytest.Config.ArgsSource.TESTPATHS
        and not config.option.keyword
        and not config.option.markexpr
        and not config.option.collectonly
        and not _deselected
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _measure
    if _WORKER:
        suite_coverage.save_worker()  # before the worker tells the main process it finished
        return
    if _measure is None:
        return
    files, _measure = _measure.finish(), None
    packages = suite_coverage.by_package(files)
    whole = _whole_suite(session.config)
    _summary.extend(suite_coverage.summary_lines(files, list_files=whole))
    if not whole:
        _summary.append("(a part of the suite ran: the coverage gate applies to the whole suite)")
        return
    failures = suite_coverage.gate_failures(packages)
    if failures:
        _summary.extend(["", "coverage gate FAILED:", *(f"  {line}" for line in failures)])
        if exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        _summary.append(f"coverage gate passed: {', '.join(suite_coverage.GATED_PACKAGES)}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _summary:
        return
    measured = (
        "every package, across the processes the tests started"
        if _MODE == suite_coverage.FULL
        else "the gated packages, in the tests and the servers (SONDE_COVERAGE=full: every one)"
    )
    terminalreporter.write_sep("=", f"coverage of {measured}")
    for line in _summary:
        terminalreporter.write_line(line)
