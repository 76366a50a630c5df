"""The running agent's side of `sonde-agent fix`: the runs' ends it waits for, and the answers.

The server decides what the user may run (server/domain/self_service.py); the run it queues
is an ordinary signed order, checked (dispatch and catalog signatures, the local policy) and
run like any other. The agent only waits for its end to tell the user how it went.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from sonde.v1 import agent_pb2

# Writes one more answer frame to the waiting `sonde-agent fix` (the run queued).
FixProgress = Callable[[agent_pb2.LocalHelpAnswer], Awaitable[None]]
# How long `sonde-agent fix` waits for the run to end once it is queued.
FIX_WAIT_S = 300.0
# Results kept for a waiter that asks after the run ended (a fast script ends before the
# server's reply reaches the agent).
KEPT_ENDS = 32
TAIL_LINES = 10
TAIL_CHARS = 2000


class RunEnds:
    """The results of the runs that ended lately, and the waiters for those still running."""

    def __init__(self) -> None:
        self._ended: OrderedDict[str, agent_pb2.Result] = OrderedDict()
        self._waiting: dict[str, asyncio.Future[agent_pb2.Result]] = {}

    def ended(self, result: agent_pb2.Result) -> None:
        if not (result.HasField("script_run") or result.HasField("failure")):
            return
        self._ended[result.command_id] = result
        while len(self._ended) > KEPT_ENDS:
            self._ended.popitem(last=False)
        waiting = self._waiting.pop(result.command_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(result)

    async def wait(self, command_id: str, timeout_s: float) -> agent_pb2.Result | None:
        """Its result, or None when it did not end within `timeout_s`."""
        if command_id in self._ended:
            return self._ended[command_id]
        waiting = self._waiting.setdefault(command_id, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except TimeoutError:
            return None
        finally:
            if command_id in self._waiting and self._waiting[command_id] is waiting:
                if not waiting.done():
                    waiting.cancel()
                self._waiting.pop(command_id, None)


def _tail(*streams: bytes) -> str:
    text = "\n".join(s.decode("utf-8", "replace").rstrip("\n") for s in streams if s)
    kept = "".join(c for c in text if c in "\n\t" or (c.isprintable() and c != "\x7f"))
    return "\n".join(kept.splitlines()[-TAIL_LINES:])[-TAIL_CHARS:]


def ended_answer(result: agent_pb2.Result) -> agent_pb2.LocalFixAnswer:
    """How the run ended, for the user: its state, exit code and the tail of its output."""
    answer = agent_pb2.LocalFixAnswer(command_id=result.command_id, ended=True, exit_code=-1)
    if result.HasField("failure"):
        kind = result.failure.kind
        answer.state = {
            agent_pb2.FAILURE_KIND_REFUSED: "refused",
            agent_pb2.FAILURE_KIND_EXPIRED: "expired",
            agent_pb2.FAILURE_KIND_CANCELLED: "cancelled",
            agent_pb2.FAILURE_KIND_TIMED_OUT: "timed out",
        }.get(kind, "failed")
        answer.output_tail = _tail(result.failure.reason.encode())
        return answer
    run = result.script_run
    answer.exit_code = run.exit_code
    if run.timed_out:
        answer.state = "timed out"
    elif run.cancelled:
        answer.state = "cancelled"
    else:
        answer.state = "succeeded" if run.exit_code == 0 else "failed"
    answer.output_tail = _tail(run.stdout, run.stderr)
    return answer
