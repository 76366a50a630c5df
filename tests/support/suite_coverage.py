"""Coverage of one test run, across every process the tests start.

tests/conftest.py starts it before anything of sonde is imported. `patch = ["subprocess"]`
([tool.coverage.run] in pyproject.toml) hands the configuration to every Python process the
tests start (servers, agents, the CLI) through COVERAGE_PROCESS_CONFIG and the .pth file that
coverage installs, so each writes its own data file into this run's temporary folder (two runs
in one working tree never mix). At the end they are combined, the paths of an installed copy
are mapped back to the source ([tool.coverage.paths]), a summary per package is printed, and a
run of the whole suite fails when a gated package is under GATE_PERCENT.

What is measured (SONDE_COVERAGE):
- unset or `gated`: the gated packages, in the processes that run them: the pytest processes and
  the servers. The programs that run none of their code (agents, the CLI, sonde-catalog) start
  unmeasured (child_env): coverage's tracer and its start in every short-lived CLI process cost
  a run about half again its CPU, and that is most of the measuring's cost (docs/testing.md).
- `full`: every package of sonde in every process, as pyproject.toml configures it.
- `off`: nothing (a faster run while developing).
SONDE_COVERAGE_DATA=FILE keeps the combined data there, for `coverage report -m --data-file=FILE`
or `coverage html`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import coverage

# The server's API and domain packages: the behaviour the end-to-end tests exercise.
GATED_PACKAGES = ("sonde.server.api", "sonde.server.domain")
GATE_PERCENT = 85.0
SWITCH = "SONDE_COVERAGE"
OFF, GATED, FULL = "off", "gated", "full"
# The programs that run gated code; the others are not measured when only that is.
MEASURED_PROGRAMS = frozenset({"sonde-server"})
KEEP_DATA = "SONDE_COVERAGE_DATA"
# What coverage reads at a Python process's start: a process started without them is not measured.
PROCESS_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


def mode(env: Mapping[str, str]) -> str:
    """What SWITCH asks for: OFF, GATED (the default) or FULL; a value it does not know is
    refused, so a typo never turns measuring off or the gate away unseen."""
    value = env.get(SWITCH, "").strip().lower()
    if value in {"", GATED}:
        return GATED
    if value in {OFF, "0", "no"}:
        return OFF
    if value == FULL:
        return FULL
    raise ValueError(f"{SWITCH}={value!r}: say {GATED} (the default), {FULL} or {OFF}")


def child_env(program: str, env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The environment to start Sonde's `program` with (None: this process's own). Measuring
    only the gated packages, a program that runs none of their code starts unmeasured."""
    if mode(os.environ) != GATED or program in MEASURED_PROGRAMS:
        return None if env is None else dict(env)
    return unmeasured(os.environ if env is None else env)


def unmeasured(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without coverage's variables: for a child whose loaded modules a test inspects."""
    return {name: value for name, value in env.items() if name not in PROCESS_VARIABLES}


@contextlib.contextmanager
def unmeasured_children() -> Iterator[None]:
    """Children started inside are not measured (for a process whose memory or speed a test
    measures: coverage's tracing adds to both)."""
    saved = {name: os.environ.pop(name) for name in PROCESS_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def save_worker() -> None:
    """Write a pytest-xdist worker's data now, while the main process waits for it (its exit
    handler would write it only after the main process has combined the run's data)."""
    measuring = coverage.Coverage.current()
    if measuring is not None:
        measuring.stop()
        measuring.save()


def _percent(statements: int, missing: int) -> float:
    return 100.0 if statements == 0 else 100.0 * (1 - missing / statements)


@dataclass(frozen=True)
class PackageCoverage:
    package: str
    statements: int
    missing: int

    @property
    def percent(self) -> float:
        return _percent(self.statements, self.missing)


@dataclass(frozen=True)
class FileCoverage:
    path: str
    package: str
    statements: int
    missing: int

    @property
    def percent(self) -> float:
        return _percent(self.statements, self.missing)


def package_of(path: Path, root: Path) -> str:
    """The import package a measured source file belongs to (agent/x.py -> sonde.agent)."""
    relative = path.resolve().relative_to(root.resolve())
    parts = list(relative.parent.parts)
    # protos/sonde is the namespace's root; agent/ and server/ are linked into it.
    return ".".join(parts[1:] if parts[:1] == ["protos"] else ["sonde", *parts])


class SuiteCoverage:
    """One run's measurement: started at import of tests/conftest.py, finished at session end."""

    def __init__(self, root: Path, *, full: bool = False) -> None:
        """`full`: every package pyproject.toml names; else the gated packages only."""
        self.root = root
        self.folder = Path(tempfile.mkdtemp(prefix="sonde-coverage-"))
        # The source chosen here is in the configuration handed to the children too.
        self._measure = coverage.Coverage(
            data_file=str(self.folder / "coverage"),
            data_suffix=True,
            config_file=str(root / "pyproject.toml"),
            source_pkgs=None if full else list(GATED_PACKAGES),
        )
        self._measure.start()

    def finish(self) -> list[FileCoverage]:
        """Stop, combine this process's data with every child's, and say how each file fared."""
        self._measure.stop()
        self._measure.save()
        combined = coverage.Coverage(
            data_file=str(self.folder / "coverage"), config_file=str(self.root / "pyproject.toml")
        )
        # [tool.coverage.paths] names the source folders relative to the repository's root.
        here = Path.cwd()
        os.chdir(self.root)
        try:
            combined.combine([str(self.folder)], keep=False)
            combined.save()
            kept = os.environ.get(KEEP_DATA)
            if kept:
                shutil.copyfile(self.folder / "coverage", kept)
            files = []
            for measured in sorted(combined.get_data().measured_files()):
                path = Path(measured)
                if not path.is_relative_to(self.root):
                    continue  # another copy that [tool.coverage.paths] does not map
                _, statements, _, missing, _ = combined.analysis2(measured)
                files.append(
                    FileCoverage(
                        str(path.relative_to(self.root)),
                        package_of(path, self.root),
                        len(statements),
                        len(missing),
                    )
                )
            return files
        finally:
            os.chdir(here)
            shutil.rmtree(self.folder, ignore_errors=True)


def by_package(files: list[FileCoverage]) -> list[PackageCoverage]:
    totals: dict[str, tuple[int, int]] = {}
    for file in files:
        statements, missing = totals.get(file.package, (0, 0))
        totals[file.package] = (statements + file.statements, missing + file.missing)
    return [PackageCoverage(name, *totals[name]) for name in sorted(totals)]


def gate_failures(packages: list[PackageCoverage]) -> list[str]:
    """What the gate refuses, one sentence each; empty when every gated package passes."""
    found = {package.package: package for package in packages}
    failures = []
    for name in GATED_PACKAGES:
        package = found.get(name)
        if package is None:
            failures.append(f"{name} was not measured at all")
        elif package.percent < GATE_PERCENT:
            failures.append(f"{name} is at {package.percent:.1f} %, under {GATE_PERCENT:.0f} %")
    return failures


def summary_lines(files: list[FileCoverage], *, list_files: bool) -> list[str]:
    """The package table; with `list_files`, each file of a gated package under the gate."""
    packages = [p for p in by_package(files) if p.statements]
    if not packages:
        return ["nothing of sonde ran"]
    width = max((len(p.package) for p in packages), default=10)
    lines = [f"{'package':<{width}}  statements  missed   cover"]
    for package in packages:
        gated = " (gated)" if package.package in GATED_PACKAGES else ""
        lines.append(
            f"{package.package:<{width}}  {package.statements:>10}  {package.missing:>6}  "
            f"{package.percent:5.1f} %{gated}"
        )
    total_statements = sum(p.statements for p in packages)
    total_missing = sum(p.missing for p in packages)
    total = PackageCoverage("total", total_statements, total_missing)
    lines.append(
        f"{'total':<{width}}  {total.statements:>10}  {total.missing:>6}  {total.percent:5.1f} %"
    )
    under = [f for f in files if f.package in GATED_PACKAGES and f.percent < GATE_PERCENT]
    if under and list_files:
        lines += ["", f"files of gated packages under {GATE_PERCENT:.0f} %:"]
        lines += [f"  {f.path}: {f.percent:.1f} % ({f.missing} of {f.statements} missed)"
                  for f in sorted(under, key=lambda f: f.percent)]  # fmt: skip
    return lines
