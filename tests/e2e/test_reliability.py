"""Crashes: a server killed mid-diagnostic loses no acknowledged snapshot; agents come back."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import grpc

from sonde.v1 import console_pb2
from tests.support.deployment import Deployment, wait_for


def stored_snapshots(sonde: Deployment) -> set[str]:
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        return {row[0] for row in db.execute("SELECT command_id FROM snapshots")}


def test_server_killed_during_a_diagnostic(sonde: Deployment, tmp_path: Path) -> None:
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

    # A second diagnostic is in flight when the server dies.
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
    wait_for(
        "the second diagnostic to reach the server",
        lambda: "collect" in _commands(sonde) and len(_commands(sonde)) >= 2,
        timeout=10,
        interval=0.01,
    )
    # Collect leaves the server within a millisecond of the command row; the agent then needs
    # at least its 100 ms CPU sampling window. Killing 30 ms later lands inside the collection.
    time.sleep(0.03)
    sonde.kill_server()
    caller.join(30)
    assert outcome
    assert outcome[0] in {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}

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
    wait_for("the in-flight snapshot", lambda: len(stored_snapshots(sonde)) == 2, timeout=15)


def _commands(sonde: Deployment) -> list[str]:
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        return [row[0] for row in db.execute("SELECT kind FROM commands")]
