"""A laptop that is off at 9:00: its diagnostics wait for it, in order, until they expire.

Real processes on loopback: `sonde diag` on an enrolled agent that is not running queues the
diagnostic; the agent connects 10 s later, runs what is due in creation order, and the result
lands on the ticket. A command past its expiry is never delivered; a cancelled one never runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from sonde.v1 import console_pb2
from tests.e2e.test_cli_commands import open_ticket, sonde_json
from tests.e2e.test_cli_commands import sonde as cli
from tests.support.deployment import Deployment, program, wait_for

OFFLINE_FOR_S = 10.0


def command(sonde_: Deployment, command_id: str) -> console_pb2.Command:
    with sonde_.console() as console:
        return console.GetCommand(console_pb2.GetCommandRequest(id=command_id), timeout=10).command


def final(sonde_: Deployment, command_id: str, timeout: float = 60.0) -> console_pb2.Command:
    open_states = (
        console_pb2.COMMAND_STATE_QUEUED,
        console_pb2.COMMAND_STATE_DELIVERED,
        console_pb2.COMMAND_STATE_RUNNING,
    )

    def ended() -> console_pb2.Command | None:
        found = command(sonde_, command_id)
        return None if found.state in open_states else found

    return wait_for(f"command {command_id} to end", ended, timeout=timeout)


def test_an_offline_agent_gets_its_queued_diagnostics_when_it_connects(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "laptop"
    agent_id = sonde.enroll_agent(state)
    ticket = open_ticket(sonde, "--agent", agent_id)

    # The technician asks while the laptop is off: queued, with its expiry and ticket.
    queued = sonde_json(sonde, "diag", agent_id[:10], "--ticket", str(ticket["id"]))
    first = queued["command"]
    assert first["state"] == "COMMAND_STATE_QUEUED"
    assert queued["agent_online"] is False
    assert first["ticket_id"] == ticket["id"]
    people = cli(sonde, "diag", agent_id[:10])
    assert people.returncode == 0, people.stderr
    assert "is offline; it runs when the agent connects" in people.stdout
    assert "expires" in people.stdout

    with sonde.console() as console:
        later = [
            console.RunDiagnostics(
                console_pb2.RunDiagnosticsRequest(agent=agent_id), timeout=10
            ).command
            for _ in range(2)
        ]
        stale = console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=agent_id, expires_s=5), timeout=10
        ).command
        dropped = console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=agent_id), timeout=10
        ).command
    cancelled = sonde_json(sonde, "commands", "cancel", dropped.id, "--reason", "fixed by phone")
    assert cancelled["command"]["state"] == "COMMAND_STATE_CANCELLED"
    listed = sonde_json(sonde, "commands", "--agent", agent_id, "--state", "queued")
    assert len(listed["commands"]) == 5  # first, the CLI's second, two later, the stale one

    time.sleep(OFFLINE_FOR_S)  # the laptop is off
    sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=10)

    ran = [final(sonde, first["id"])]
    ran += [final(sonde, c.id) for c in later]
    for done in ran:
        assert done.state == console_pb2.COMMAND_STATE_SUCCEEDED, done.reason
        assert done.snapshot_id
        assert done.deliveries == 1
    # Sent in creation order: delivery times never go backwards along the queue.
    delivered = [done.delivered_at.ToNanoseconds() for done in ran]
    assert delivered == sorted(delivered)

    expired = final(sonde, stale.id)
    assert expired.state == console_pb2.COMMAND_STATE_EXPIRED
    assert expired.deliveries == 0
    assert not expired.snapshot_id
    never = command(sonde, dropped.id)
    assert (never.state, never.deliveries, never.cancelled_by) == (
        console_pb2.COMMAND_STATE_CANCELLED,
        0,
        "admin",
    )

    with sonde.console() as console:
        timeline = console.GetTicket(
            console_pb2.GetTicketRequest(id=ticket["id"]), timeout=10
        ).timeline
    assert [e.snapshot_id for e in timeline if e.snapshot_id] == [ran[0].snapshot_id]
    shown = cli(sonde, "commands", "show", first["id"])
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout


def test_no_queue_refuses_an_offline_agent_at_once(sonde: Deployment, tmp_path: Path) -> None:
    agent_id = sonde.enroll_agent(tmp_path / "laptop")
    done = cli(sonde, "diag", agent_id, "--no-queue", "--json")
    assert done.returncode == 1, done.stdout
    assert '"UNAVAILABLE"' in done.stdout
    assert "has not connected since it enrolled" in done.stdout
    listed = sonde_json(sonde, "commands", "--agent", agent_id)
    assert listed.get("commands", []) == []


def test_an_online_agent_answers_within_the_call(sonde: Deployment, tmp_path: Path) -> None:
    state = tmp_path / "desk"
    agent_id = sonde.enroll_agent(state)
    sonde.start_agent(state)
    sonde.wait_online(agent_id)
    reply = sonde_json(sonde, "diag", agent_id)
    assert reply["command"]["state"] == "COMMAND_STATE_SUCCEEDED"
    assert reply["snapshot"]["summary"]["agent_id"] == agent_id


def test_diag_wait_on_an_offline_agent_returns_the_result_once_it_connects(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "laptop"
    agent_id = sonde.enroll_agent(state)
    waiting = subprocess.Popen(
        [*program("sonde"), "diag", agent_id, "--wait", "--timeout", "60", "--json"],
        env=sonde.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)  # the technician's call is waiting; the laptop is still off
        assert waiting.poll() is None
        sonde.start_agent(state)
        out, err = waiting.communicate(timeout=90)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err
    reply = json.loads(out)
    assert reply["agent_online"] is False  # it was offline when asked
    assert reply["command"]["state"] == "COMMAND_STATE_SUCCEEDED"
    assert reply["snapshot"]["summary"]["agent_id"] == agent_id
