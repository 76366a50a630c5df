"""A script's stdout and stderr: kept up to a cap, counted beyond it, streamed in chunks.

Memory stays bounded whatever the script prints: a capture keeps at most `cap` bytes and only
counts the rest. What is kept is also streamed, while the script runs, to the caller's
on_output in chunks of at most `chunk_bytes`, at most one chunk per stream every
`chunk_interval_s` (the rest is sent at once when the script has ended), so a script that
floods its output neither grows the agent nor floods the server with messages.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)


class OutputStream(Enum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True)
class OutputChunk:
    """`data` is the stream's bytes from `offset` on; chunks of a stream arrive in order."""

    stream: OutputStream
    offset: int
    data: bytes


# A plain function or a coroutine function; an async one is awaited before the next chunk.
OutputCallback = Callable[[OutputChunk], Awaitable[None] | None]


class OutputCapture:
    """One stream's bytes: the first `cap` kept, every byte counted."""

    def __init__(self, stream: OutputStream, cap: int) -> None:
        self.stream = stream
        self.cap = cap
        self.kept = bytearray()
        self.size = 0  # every byte the script wrote, kept or not
        self.sent = 0  # how much of `kept` on_output has had

    def take(self, data: bytes) -> None:
        self.size += len(data)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    @property
    def truncated(self) -> bool:
        return self.size > len(self.kept)

    @property
    def unsent(self) -> int:
        return len(self.kept) - self.sent

    def next_chunk(self, chunk_bytes: int) -> OutputChunk:
        end = min(len(self.kept), self.sent + chunk_bytes)
        chunk = OutputChunk(self.stream, self.sent, bytes(self.kept[self.sent : end]))
        self.sent = end
        return chunk


async def stream_output(
    captures: Sequence[OutputCapture],
    on_output: OutputCallback,
    *,
    chunk_bytes: int,
    chunk_interval_s: float,
    more: asyncio.Event,
    ended: asyncio.Event,
) -> None:
    """Send what the captures keep to on_output until `ended` is set and all is sent.

    `more` is set whenever a capture took data (and when the script ended). An on_output
    that raises stops the streaming, not the run: the outcome still holds the output.
    """
    while True:
        more.clear()
        sent = False
        for capture in captures:
            if capture.unsent:
                result = on_output(capture.next_chunk(chunk_bytes))
                if inspect.isawaitable(result):
                    await result
                sent = True
        if ended.is_set():
            if not any(capture.unsent for capture in captures):
                return
        elif sent:
            await asyncio.sleep(chunk_interval_s)
        else:
            await more.wait()


async def stream_output_safely(
    captures: Sequence[OutputCapture],
    on_output: OutputCallback,
    *,
    chunk_bytes: int,
    chunk_interval_s: float,
    more: asyncio.Event,
    ended: asyncio.Event,
) -> None:
    try:
        await stream_output(
            captures,
            on_output,
            chunk_bytes=chunk_bytes,
            chunk_interval_s=chunk_interval_s,
            more=more,
            ended=ended,
        )
    except Exception:
        log.exception("a script's output could not be streamed; the run goes on")
