"""`sonde demo --once`: the real programs in a temporary folder, then everything cleaned up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.deployment import program, run, wait_for


@pytest.mark.slow
def test_demo_once_json_has_agent_findings_and_the_ticket_with_its_diagnostic(
    tmp_path: Path,
) -> None:
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path)  # the demo's folder lands here, so we can see it is deleted
    done = run("sonde", "demo", "--once", "--json", env=env, timeout=240)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout)

    agent = result["agent"]
    assert agent["online"] is True
    assert agent["id"]
    assert result["findings"]
    assert all(f["severity"] != "SEVERITY_UNSPECIFIED" for f in result["findings"])

    ticket = result["ticket"]
    assert ticket["title"] == "Demo: user reports the PC is slow"
    assert ticket["agent_id"] == agent["id"]
    diagnostics = [
        event for event in ticket["timeline"] if event["kind"] == "TICKET_EVENT_KIND_DIAGNOSTIC"
    ]
    assert [event["snapshot_id"] for event in diagnostics] == [result["snapshot_id"]]

    # The closed loop: the shipped catalog's cleanup ran for the ticket and was verified.
    fix = result["fix"]
    assert fix["script_id"] == "clear-temp-files-linux", fix
    assert fix["command"]["state"] == "COMMAND_STATE_SUCCEEDED", fix
    assert fix["verification"]["checks"][0]["check"] == "disk.space", fix
    kinds = [event["kind"] for event in ticket["timeline"]]
    for kind in ("SCRIPT_RUN", "RUN_ENDED", "VERIFIED"):
        assert f"TICKET_EVENT_KIND_{kind}" in kinds, kinds

    steps = result["steps"]
    assert len(steps) == 13
    assert all(step["ok"] for step in steps)
    assert "✓" in done.stderr  # progress went to stderr, stdout is the one JSON document
    assert list(tmp_path.glob("sonde-demo-*")) == []


@pytest.mark.slow
def test_demo_runs_until_interrupted_then_stops_and_deletes_its_folder(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    output = tmp_path / "demo.out"
    with output.open("wb") as sink:
        demo = subprocess.Popen(
            [*program("sonde"), "demo"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        wait_for(
            "the demo to print what to try next",
            lambda: "sonde ticket list" in output.read_text() or demo.poll() is not None,
            timeout=180,
        )
        assert demo.poll() is None, output.read_text()
        folders = list((tmp_path / "tmp").glob("sonde-demo-*"))
        assert len(folders) == 1
        listening = json.loads((folders[0] / "server" / "listening.json").read_text())
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, output.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    assert list((tmp_path / "tmp").glob("sonde-demo-*")) == []
    # The server stopped too: nothing answers on its console port any more.
    host, port = listening["console_address"].rsplit(":", 1)
    with socket.socket() as probe:
        assert probe.connect_ex((host, int(port))) != 0
