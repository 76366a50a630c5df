"""`sonde-agent collect`: works with no server and no enrollment; measures the server
named in agent.json once enrolled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.agent.fake_server import FakeServer, run_agent_command


def _probes(snapshot: dict[str, Any], purpose: str) -> list[dict[str, Any]]:
    probes: list[dict[str, Any]] = snapshot.get("network", {}).get("probes", [])
    return [probe for probe in probes if probe.get("purpose") == purpose]


async def test_collect_without_enrollment_or_server(
    agent_command: list[str], tmp_path: Path
) -> None:
    state = tmp_path / "never-enrolled"
    code, out, err = await run_agent_command(
        agent_command, "collect", "--json", "--state", str(state)
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["snapshot"]["system"]["hostname"]
    assert _probes(report["snapshot"], "server") == []
    assert not state.exists()  # collecting does not create a state folder


async def test_collect_when_enrolled_probes_the_server_from_agent_json(
    fake_server: FakeServer, enrolled_state: Path, agent_command: list[str]
) -> None:
    code, out, err = await run_agent_command(
        agent_command, "collect", "--json", "--state", str(enrolled_state)
    )
    assert code == 0, err
    (probe,) = _probes(json.loads(out)["snapshot"], "server")
    assert f"{probe['host']}:{probe['port']}" == fake_server.agent_address
    assert "error" not in probe  # the stand-in server is listening
