"""Each run order is checked and run in its own short-lived process (agent/order_process.py),
against the stand-in server: after a run the agent itself holds no cryptography and no
runner (its idle footprint, bench/agent_run_rss.py) and no run process is left; kill -9 of
the agent mid-run stops the script (the run's process sees its stdin end); kill -9 of the
run's process ends the run failed, once, and the same order sent again is refused."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from sonde.v1 import agent_pb2, remediation_pb2
from tests.integration.agent.fake_server import FakeServer, StartAgent, eventually
from tests.integration.agent.run_orders import OrderMaker, own_script, run_message
from tests.integration.agent.test_agent_run_orders import (
    assert_refused,
    empty_outbox,
    keyed_state,
    one_result,
    online,
    result_for,
)

__all__ = ["keyed_state"]  # the fixture, used by name

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")

CHILD_MODULE = "sonde.agent.remediation.order_child"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


def run_processes(agent_pid: int) -> list[int]:
    """The agent's children that are a run's process."""
    found = []
    for pid in children_of(agent_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if CHILD_MODULE.encode() in command:
            found.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


async def test_after_a_run_the_agent_holds_no_cryptography_and_no_run_process(
    fake_server: FakeServer, keyed_state: tuple[Path, OrderMaker], start_agent: StartAgent
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)
    pid = agent.process.pid
    for number in range(3):
        entry = own_script(maker.catalog_key, f"fix-{number}", f'echo "fix {number}"')
        order = maker.order(entry)
        fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
        result = await one_result(fake_server, agent, order.command_id)
        assert result.script_run.stdout == f"fix {number}\n".encode(), result
    await eventually(lambda: not run_processes(pid), 10.0, "the run processes to end")
    # The run's process verified it (cryptography) and ran it: none of it stays here.
    assert "cryptography" not in mapped_files(pid)
    await eventually(lambda: empty_outbox(state), 10.0, "the acks to empty the outbox")
    assert "Fatal Python error" not in agent.log()
    assert "Traceback" not in agent.log()


async def test_kill_9_of_the_agent_mid_run_stops_the_script(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)
    script_pid = tmp_path / "script.pid"
    body = f'echo "$$" > "{script_pid}"\nsleep 60'
    entry = own_script(maker.catalog_key, "long-fix", body)
    fake_server.agents.to_agent.put_nowait(run_message(maker.sign(maker.order(entry))))
    await eventually(lambda: script_pid.exists() and script_pid.read_text().strip() != "", 20.0,
                     agent.log())  # fmt: skip
    script = int(script_pid.read_text())
    assert alive(script)
    await agent.stop(signal.SIGKILL)
    # Its run process reads the end of its stdin as a CANCEL: the runner stops the tree.
    await eventually(lambda: not alive(script), 10.0, "the script to be stopped")


async def test_kill_9_of_the_run_process_ends_the_run_failed_once_and_never_reruns_it(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)
    starts, stop = tmp_path / "starts", tmp_path / "stop"
    body = (
        f'echo "$$" >> "{starts}"\n'
        f'for _ in $(seq 1200); do [ -e "{stop}" ] && exit 0; sleep 0.05; done'
    )
    entry = own_script(maker.catalog_key, "long-fix", body)
    signed = maker.sign(maker.order(entry))
    command_id = remediation_pb2.RunScriptOrder.FromString(signed.order).command_id
    fake_server.agents.to_agent.put_nowait(run_message(signed))
    try:
        await eventually(starts.exists, 20.0, f"the script to start\n{agent.log()}")
        (child,) = run_processes(agent.process.pid)
        os.kill(child, signal.SIGKILL)
        result = await one_result(fake_server, agent, command_id)
        assert result.WhichOneof("outcome") == "failure", result
        assert result.failure.kind == agent_pb2.FAILURE_KIND_FAILED
        assert "ended without its result" in result.failure.reason
        assert "not run again" in result.failure.reason
        await eventually(lambda: empty_outbox(state), 10.0, "the ack to empty the outbox")
        fake_server.agents.to_agent.put_nowait(run_message(signed))
        await eventually(lambda: len(result_for(fake_server, command_id)) == 2, 20.0, agent.log())
        assert_refused(result_for(fake_server, command_id)[1], "replayed")
        assert len(starts.read_text().split()) == 1
        # The agent goes on: the next order runs.
        entry = own_script(maker.catalog_key, "next-fix", 'echo "next"')
        order = maker.order(entry)
        fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
        after = await one_result(fake_server, agent, order.command_id)
        assert after.script_run.stdout == b"next\n", after
    finally:
        stop.touch()  # the script, orphaned with its run process, ends by itself
