"""A real `sonde-agent run` holds its mTLS stream and answers a full Collect without
OpenSSL or SQLite in its process (gRPC brings its own TLS; see agent.cli.keep_openssl_out)."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from sonde.v1 import agent_pb2, diagnostics_pb2
from tests.integration.agent.fake_server import (
    FakeServer,
    StartAgent,
    eventually,
    run_agent_command,
)
from tests.support import suite_coverage

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")

# Python's _ssl and _hashlib link these; _sqlite3 links libsqlite3.
KEPT_OUT = ("libssl", "libcrypto", "libsqlite3", "/_ssl.", "/_hashlib.", "/_sqlite3.")


def _mapped(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    paths = {line.split()[-1] for line in maps.splitlines() if ".so" in line}
    return sorted(p for p in paths if any(kept in p for kept in KEPT_OUT))


async def test_full_collect_over_mtls_with_openssl_and_sqlite_kept_out(
    fake_server: FakeServer,
    enrolled_state: Path,
    start_agent: StartAgent,
    agent_command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Coverage would map SQLite and OpenSSL into the agent it measures: this one runs unmeasured.
    for variable in suite_coverage.PROCESS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    agents = fake_server.agents
    agent = await start_agent("run", "--state", str(enrolled_state))
    await eventually(lambda: len(agents.heartbeats) >= 1, 5.0, f"a heartbeat\n{agent.log()}")
    pid = agent.process.pid
    assert _mapped(pid) == []
    assert agents.hellos[0].collectors == [
        "system", "cpu", "memory", "disks", "battery",
        "network", "processes", "services", "software", "updates",
    ]  # fmt: skip

    message = agent_pb2.ServerMessage()
    message.collect.command_id = "full"
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
    message.collect.expires_at.FromDatetime(expires)
    agents.to_agent.put_nowait(message)  # no collector named: all of them
    await eventually(lambda: len(agents.results) == 1, 60.0, f"a result\n{agent.log()}")
    snapshot = agents.results[0].snapshot
    assert [report.name for report in snapshot.collectors] == list(agents.hellos[0].collectors)
    failed = [
        (report.name, report.reason)
        for report in snapshot.collectors
        if report.state
        not in (diagnostics_pb2.COLLECTOR_STATE_OK, diagnostics_pb2.COLLECTOR_STATE_UNAVAILABLE)
    ]
    assert failed == []
    assert _mapped(pid) == [], "the collectors brought OpenSSL or SQLite in"

    # Collector by collector, the same outcome as `sonde-agent collect` (OpenSSL allowed).
    local_report = await _collect_json(agent_command, tmp_path)
    local = {c["name"]: c["state"] for c in local_report["snapshot"]["collectors"]}
    remote = {
        report.name: diagnostics_pb2.CollectorState.Name(report.state)
        for report in snapshot.collectors
    }
    assert remote == local
    assert agent.process.returncode is None
    assert await agent.stop() == 0


async def _collect_json(agent_command: list[str], tmp_path: Path) -> dict[str, Any]:
    code, out, err = await run_agent_command(
        agent_command, "collect", "--json", "--state", str(tmp_path / "no-state")
    )
    assert code == 0, err
    report = json.loads(out)
    assert isinstance(report, dict)
    return report
