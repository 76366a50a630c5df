"""The agent's wait for a self-service run's end (agent/self_service.py): a result that came
before the wait, one that comes during it, none in time, and what the user is told."""

from __future__ import annotations

import asyncio

from sonde.agent.self_service import KEPT_ENDS, TAIL_LINES, RunEnds, ended_answer
from sonde.v1 import agent_pb2


def ran(command_id: str, exit_code: int = 0, stdout: bytes = b"ok\n") -> agent_pb2.Result:
    return agent_pb2.Result(
        command_id=command_id,
        script_run=agent_pb2.ScriptRun(exit_code=exit_code, stdout=stdout),
    )


async def test_an_end_before_the_wait_during_it_or_never() -> None:
    ends = RunEnds()
    ends.ended(ran("early"))
    assert (await ends.wait("early", 0.01)) == ran("early")

    waiting = asyncio.create_task(ends.wait("later", 5))
    await asyncio.sleep(0)
    ends.ended(ran("later", 3))
    result = await waiting
    assert result is not None
    assert result.script_run.exit_code == 3

    assert await ends.wait("never", 0.01) is None
    ends.ended(agent_pb2.Result(command_id="a-snapshot"))  # a collection: not a run's end
    assert await ends.wait("a-snapshot", 0.01) is None


async def test_only_the_latest_ends_are_kept() -> None:
    ends = RunEnds()
    for n in range(KEPT_ENDS + 1):
        ends.ended(ran(f"c{n}"))
    assert await ends.wait("c0", 0.01) is None
    assert await ends.wait(f"c{KEPT_ENDS}", 0.01) is not None


def test_the_answer_says_the_state_the_exit_code_and_an_inert_tail() -> None:
    lines = b"".join(f"line {n}\n".encode() for n in range(30))
    answer = ended_answer(ran("c1", 0, lines + b"\x1b[2Jdone\n"))
    assert (answer.ended, answer.state, answer.exit_code) == (True, "succeeded", 0)
    assert answer.output_tail.splitlines()[-1] == "[2Jdone"
    assert len(answer.output_tail.splitlines()) == TAIL_LINES
    assert ended_answer(ran("c2", 2)).state == "failed"
    refused = agent_pb2.Result(
        command_id="c3",
        failure=agent_pb2.Failure(reason="policy denies it", kind=agent_pb2.FAILURE_KIND_REFUSED),
    )
    shown = ended_answer(refused)
    assert (shown.state, shown.exit_code, shown.output_tail) == ("refused", -1, "policy denies it")
