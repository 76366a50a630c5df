"""A stream's capture keeps at most its cap and counts the rest; streaming sends what is kept
in order, in chunks of bounded size, and everything kept by the time the script has ended."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from sonde.agent.remediation.output import (
    OutputCapture,
    OutputChunk,
    OutputStream,
    stream_output,
)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=300), max_size=30),
    cap=st.integers(0, 2000),
)
def test_the_capture_keeps_the_first_cap_bytes_and_counts_all(
    pieces: list[bytes], cap: int
) -> None:
    capture = OutputCapture(OutputStream.STDOUT, cap)
    for piece in pieces:
        capture.take(piece)
    everything = b"".join(pieces)
    assert bytes(capture.kept) == everything[:cap]
    assert capture.size == len(everything)
    assert capture.truncated == (len(everything) > cap)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.binary(min_size=1, max_size=500), min_size=1, max_size=20),
    chunk_bytes=st.integers(1, 200),
)
def test_streaming_sends_what_is_kept_in_bounded_ordered_chunks(
    pieces: list[bytes], chunk_bytes: int
) -> None:
    async def scenario() -> list[OutputChunk]:
        stdout = OutputCapture(OutputStream.STDOUT, 4000)
        stderr = OutputCapture(OutputStream.STDERR, 100)
        more, ended = asyncio.Event(), asyncio.Event()
        received: list[OutputChunk] = []

        async def on_output(chunk: OutputChunk) -> None:
            received.append(chunk)

        task = asyncio.create_task(
            stream_output(
                (stdout, stderr),
                on_output,
                chunk_bytes=chunk_bytes,
                chunk_interval_s=0,
                more=more,
                ended=ended,
            )
        )
        for piece in pieces:
            stdout.take(piece)
            stderr.take(piece)
            more.set()
            await asyncio.sleep(0)
        ended.set()
        more.set()
        await asyncio.wait_for(task, 30)
        return received

    received = asyncio.run(scenario())
    everything = b"".join(pieces)
    for stream, cap in ((OutputStream.STDOUT, 4000), (OutputStream.STDERR, 100)):
        chunks = [chunk for chunk in received if chunk.stream is stream]
        assert all(0 < len(chunk.data) <= chunk_bytes for chunk in chunks)
        offsets = [chunk.offset for chunk in chunks]
        assert offsets == sorted(offsets)
        assert b"".join(chunk.data for chunk in chunks) == everything[:cap]


def test_a_failing_receiver_stops_the_streaming_not_the_caller() -> None:
    from sonde.agent.remediation.output import stream_output_safely

    async def scenario() -> int:
        capture = OutputCapture(OutputStream.STDOUT, 100)
        capture.take(b"x" * 50)
        more, ended = asyncio.Event(), asyncio.Event()
        calls = 0

        def on_output(chunk: OutputChunk) -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError("the stream to the server is gone")

        ended.set()
        await stream_output_safely(
            [capture], on_output, chunk_bytes=10, chunk_interval_s=0, more=more, ended=ended
        )
        return calls

    assert asyncio.run(scenario()) == 1
