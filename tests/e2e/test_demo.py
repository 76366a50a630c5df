"""`sonde demo --once`: the real programs in a temporary folder, then everything cleaned up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.deployment import run


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

    steps = result["steps"]
    assert len(steps) == 9
    assert all(step["ok"] for step in steps)
    assert "✓" in done.stderr  # progress went to stderr, stdout is the one JSON document
    assert list(tmp_path.glob("sonde-demo-*")) == []
