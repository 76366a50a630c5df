"""The busiest processes appear under a raised CPU or memory finding, and only then."""

from __future__ import annotations

from sonde.server.console.render_processes import TOP_PROCESSES, top_processes
from sonde.v1 import diagnostics_pb2
from tests.unit.console.test_console_machines import rendered


def _snapshot() -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    for n in range(10):
        snapshot.processes.top_by_cpu.add(
            pid=100 + n, name=f"cpu-hog-{n}", username="jane", cpu_percent=90.0 - n
        )
        snapshot.processes.top_by_memory.add(
            pid=200 + n, name=f"mem-hog-{n}", rss_bytes=(8 - n % 8) << 30, memory_percent=40.0 - n
        )
    return snapshot


def _finding(check: str, severity: diagnostics_pb2.Severity.ValueType) -> diagnostics_pb2.Finding:
    return diagnostics_pb2.Finding(check=check, severity=severity, summary="...")


def test_a_cpu_finding_shows_the_top_five_by_cpu_only() -> None:
    tables = top_processes(
        [_finding("cpu.saturation", diagnostics_pb2.SEVERITY_WARNING)], _snapshot()
    )
    shown = rendered(*tables)
    assert f"Top {TOP_PROCESSES} processes by CPU" in shown
    assert [f"cpu-hog-{n}" in shown for n in range(6)] == [True] * 5 + [False]
    assert "90 %" in shown
    assert "jane" in shown
    assert "mem-hog" not in shown


def test_a_memory_finding_shows_the_top_five_by_memory_with_sizes() -> None:
    tables = top_processes(
        [_finding("memory.pressure", diagnostics_pb2.SEVERITY_CRITICAL)], _snapshot()
    )
    shown = rendered(*tables)
    assert "processes by memory" in shown
    assert "8.0 GiB (40 %)" in shown
    assert "mem-hog-5" not in shown
    assert "cpu-hog" not in shown


def test_nothing_under_findings_that_passed_or_are_about_something_else() -> None:
    passed = [
        _finding("cpu.saturation", diagnostics_pb2.SEVERITY_OK),
        _finding("memory.pressure", diagnostics_pb2.SEVERITY_OK),
        _finding("disk.space", diagnostics_pb2.SEVERITY_CRITICAL),
    ]
    assert top_processes(passed, _snapshot()) == []
    raised = [_finding("cpu.saturation", diagnostics_pb2.SEVERITY_CRITICAL)]
    assert top_processes(raised, diagnostics_pb2.Snapshot()) == []  # no processes collected
