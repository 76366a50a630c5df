"""A run's live output as the server reads it from a machine it reached itself.

The SSH worker thread hands over each piece of output as it arrives (`put`, thread-safe); one
task appends them to the run's live output (RunResults.append_output, as an agent's chunks
are), in order per stream, coalescing what came meanwhile and writing at most once every 50 ms,
so `sonde runs show --follow` shows a long script's output while it runs.
"""

from __future__ import annotations

import asyncio

from sonde.server.domain.run_results import RunResults
from sonde.v1 import agent_pb2

WRITE_INTERVAL_S = 0.05  # the agent's own pace for output chunks
_STREAMS = {"stdout": agent_pb2.SCRIPT_STREAM_STDOUT, "stderr": agent_pb2.SCRIPT_STREAM_STDERR}


class LiveOutput:
    def __init__(self, runs: RunResults, agent_id: str, command_id: str) -> None:
        self._runs = runs
        self._agent_id = agent_id
        self._command_id = command_id
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._offsets = dict.fromkeys(_STREAMS, 0)
        self._task = asyncio.create_task(self._drain())

    def put(self, stream: str, data: bytes) -> None:
        """From any thread: `data` came on `stream` ("stdout" or "stderr")."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (stream, data))

    async def close(self) -> None:
        """Write what is left, then stop."""
        self._queue.put_nowait(None)
        await self._task

    async def _drain(self) -> None:
        ended = False
        while not ended:
            first = await self._queue.get()
            pending = {name: bytearray() for name in _STREAMS}
            item: tuple[str, bytes] | None = first
            while True:
                if item is None:
                    ended = True
                    break
                pending[item[0]] += item[1]
                if self._queue.empty():
                    break
                item = self._queue.get_nowait()
            for name, data in pending.items():
                if data:
                    await self._append(name, bytes(data))
            if not ended:
                await asyncio.sleep(WRITE_INTERVAL_S)

    async def _append(self, stream: str, data: bytes) -> None:
        chunk = agent_pb2.ScriptOutput(
            command_id=self._command_id,
            stream=_STREAMS[stream],
            offset=self._offsets[stream],
            data=data,
        )
        self._offsets[stream] += len(data)
        await self._runs.append_output(self._agent_id, chunk)
