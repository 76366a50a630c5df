"""An honest agent whose outbox holds results the server will not take: real sonde-server and
sonde-agent processes on 127.0.0.1. Each is acknowledged on the first session, the outbox
empties, and the agent does not reconnect in a loop resending them."""

from __future__ import annotations

from pathlib import Path

from sonde.agent.journal import Outbox
from sonde.v1 import agent_pb2, console_pb2
from tests.support.deployment import Deployment, wait_for


def test_results_the_server_will_not_take_leave_the_outbox_on_the_first_session(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "laptop"
    agent_id = sonde.enroll_agent(state)
    first_run = sonde.start_agent(state)
    sonde.wait_online(agent_id)
    with sonde.console() as console:
        done = console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=agent_id, timeout_s=60), timeout=70
        ).command
    assert done.state == console_pb2.COMMAND_STATE_SUCCEEDED
    assert first_run.stop() == 0

    # What an outbox can hold after a crash or a lost ack: a result resent after its command
    # ended, one the server never heard of, and a snapshot its checks cannot read.
    resent = agent_pb2.Result(
        command_id=done.id, failure=agent_pb2.Failure(reason="resent after a lost ack")
    )
    unknown = agent_pb2.Result(command_id="0" * 32, failure=agent_pb2.Failure(reason="x"))
    unreadable = agent_pb2.Result(command_id="1" * 32)
    unreadable.snapshot.collected_at.seconds = 2**62  # past year 9999
    with Outbox.in_state_dir(state) as outbox:
        for result in (resent, unknown, unreadable):
            outbox.put(result.command_id, result.SerializeToString())
        assert outbox.count() == 3
    log_before = first_run.log()

    second_run = sonde.start_agent(state)
    wait_for(
        "the outbox to empty",
        lambda: not list((state / "outbox").glob("*.result")),
        timeout=20,
    )
    sonde.wait_online(agent_id)
    assert second_run.alive()
    second_log = second_run.log()[len(log_before) :]
    assert second_log.count("online:") == 1, second_log
    assert "disconnected" not in second_log
    assert sonde.server is not None
    assert "error while reading its stream" not in sonde.server.log()
    with sonde.console() as console:
        after = console.GetCommand(console_pb2.GetCommandRequest(id=done.id), timeout=10).command
    assert (after.state, after.snapshot_id) == (done.state, done.snapshot_id)
