"""Crashes: a server killed mid-diagnostic loses no acknowledged snapshot; agents come back."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import grpc
import pytest

from sonde.agent import diagnostic_hold
from sonde.v1 import console_pb2
from tests.support.deployment import Deployment, wait_for


def stored_snapshots(sonde: Deployment) -> set[str]:
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        return {row[0] for row in db.execute("SELECT command_id FROM snapshots")}


def test_server_killed_during_a_diagnostic(
    sonde: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    monkeypatch.setenv(diagnostic_hold.HOLD_VARIABLE, str(hold))
    state = tmp_path / "agent"
    agent_id = sonde.enroll_agent(state)
    agent = sonde.start_agent(state)
    sonde.wait_online(agent_id)
    with sonde.console() as console:
        first = console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=agent_id), timeout=60
        )
    acknowledged = stored_snapshots(sonde)
    assert len(acknowledged) == 1

    # A second diagnostic is in flight when the server dies: the agent holds it at its start.
    (hold / diagnostic_hold.HOLD_FILE).touch()
    outcome: list[grpc.StatusCode] = []

    def second_diagnostic() -> None:
        try:
            with sonde.console() as console:
                console.RunDiagnostics(
                    console_pb2.RunDiagnosticsRequest(agent=agent_id), timeout=60
                )
            outcome.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            outcome.append(error.code())

    caller = threading.Thread(target=second_diagnostic)
    caller.start()
    in_flight = wait_for(
        "the second diagnostic to reach the server", lambda: _second_command(sonde), timeout=10
    )
    wait_for(
        "the agent to start the second diagnostic",
        lambda: Path(diagnostic_hold.started_marker(str(hold), in_flight)).exists(),
        timeout=20,
    )
    sonde.kill_server()
    caller.join(30)
    # The kill landed inside the window: the call was cut off and nothing new was stored.
    assert outcome == [grpc.StatusCode.UNAVAILABLE]
    assert stored_snapshots(sonde) == acknowledged
    (hold / diagnostic_hold.HOLD_FILE).unlink()  # the agent collects, with no server to take it

    sonde.start_server(same_ports=True)
    # The agent reconnects by itself (backoff), and resends what was not acknowledged.
    sonde.wait_online(agent_id, timeout=20)
    assert agent.alive()
    assert acknowledged <= stored_snapshots(sonde)
    with sonde.console() as console:
        again = console.GetSnapshot(
            console_pb2.GetSnapshotRequest(id=first.snapshot.summary.id), timeout=10
        )
    assert again.snapshot.snapshot == first.snapshot.snapshot
    # The in-flight diagnostic is stored once the agent has resent it.
    wait_for("the in-flight snapshot", lambda: in_flight in stored_snapshots(sonde), timeout=30)


def _second_command(sonde: Deployment) -> str | None:
    """The id of the second diagnostic's command, once its row is written."""
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        rows = db.execute(
            "SELECT id FROM commands WHERE kind = 'collect' ORDER BY rowid"
        ).fetchall()
    return str(rows[1][0]) if len(rows) >= 2 else None
