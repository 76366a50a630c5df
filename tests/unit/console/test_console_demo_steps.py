"""The demo's bookkeeping: each step timed and recorded, the first failure named, logs shown."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from sonde.server.console.demo import _report_failure, exports
from sonde.server.console.demo_run import DemoRun, Step, StepFailed, program, tail
from sonde.server.console.output import Output


def test_steps_are_recorded_and_a_failure_names_its_step(tmp_path: Path) -> None:
    seen: list[Step] = []
    run = DemoRun(folder=tmp_path, progress=seen.append)
    assert run.step("create the server", lambda: 42) == 42

    def refuse() -> None:
        raise StepFailed("exit status 1: port in use")

    with pytest.raises(StepFailed, match=r"^start sonde-server: exit status 1: port in use$"):
        run.step("start sonde-server", refuse)
    assert [(step.name, step.ok) for step in seen] == [
        ("create the server", True),
        ("start sonde-server", False),
    ]
    assert seen[1].detail == "exit status 1: port in use"
    assert all(step.seconds >= 0 for step in seen)


def test_a_failure_prints_the_log_tails_and_json_names_the_step(tmp_path: Path) -> None:
    run = DemoRun(folder=tmp_path, progress=lambda step: None)
    lines = [f"line {n}" for n in range(30)] + ["fatal: \x1b[31mdatabase locked"]
    run.log_path("server").write_text("\n".join(lines))
    run.steps.append(Step("start sonde-server", False, 1.5, "exited with status 1"))
    stdout, stderr = io.StringIO(), io.StringIO()
    out = Output(json_mode=True, stdout=stdout, stderr=stderr, width=200)
    _report_failure(out, run, "start sonde-server: exited with status 1")
    report = json.loads(stdout.getvalue())
    assert report["error"] == {
        "code": "ABORTED",
        "message": "demo step failed: start sonde-server: exited with status 1",
    }
    assert report["steps"][0]["name"] == "start sonde-server"
    log = stderr.getvalue()
    assert "line 29" in log
    assert "line 10" not in log  # only the tail
    assert "\\x1b[31mdatabase locked" in log  # log text is printed inert too


def test_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert tail(tmp_path / "absent.log") == []


def test_programs_are_the_installed_scripts_or_the_module(tmp_path: Path) -> None:
    command = program("sonde-server", "sonde.server.cli")
    script = Path(sys.executable).parent / "sonde-server"
    if script.exists():
        assert command == [str(script)]
    else:
        assert command[:2] == [sys.executable, "-c"]
    fallback = program("no-such-script", "sonde.server.cli")
    assert fallback == [
        sys.executable,
        "-c",
        "import sys; from sonde.server.cli import main; sys.exit(main())",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell exports")
def test_exports_are_shell_quoted(tmp_path: Path) -> None:
    run = DemoRun(folder=tmp_path, progress=lambda step: None)
    run.console_address = "127.0.0.1:4321"
    run.admin_token = "tok'en"
    run.ca_file = tmp_path / "with space" / "ca.crt"
    assert exports(run) == [
        "export SONDE_SERVER=127.0.0.1:4321",
        "export SONDE_TOKEN='tok'\"'\"'en'",
        f"export SONDE_CA='{tmp_path}/with space/ca.crt'",
    ]
