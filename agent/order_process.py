"""Each run order is checked and run in a short-lived child process, so the agent stays at
its idle footprint after a run.

What only a run needs (cryptography's Ed25519 with its OpenSSL, the manifest parser, the
runner: about 10 MiB of RSS once loaded, bench/agent_run_rss.py) lives in the child,
`python -m sonde.agent.remediation.order_child`, and leaves with it. The child does what
agent/remediation/orders.py describes, unchanged: it checks the order with the pinned keys,
the policy and the run record, records it as started before the script starts, runs it.
The agent keeps the session, the one-at-a-time slot, the outbox and the record's finish.

Frames on the child's pipes: one kind byte, a 4-byte big-endian length, the payload.

- agent -> child (stdin): ORDER (the SignedRunScript's bytes), then one byte: GO once the
  script slot is free, or CANCEL (before or during the run). End of file (the agent
  stopped, even by kill -9) is a CANCEL: the runner stops the script's tree, the record
  stays started, and the next start reports the run interrupted.
- child -> agent (stdout): VERIFIED, or REFUSED (a Result); after GO: OUTPUT
  (ScriptOutput) while it runs, then ENDED (a Result; the run was recorded as started) or
  NOT_STARTED (a Result; the record could not be written, so nothing started).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sonde.agent.run_record import RunRecord
from sonde.v1 import agent_pb2, remediation_pb2

log = logging.getLogger(__name__)

ORDER = b"S"
GO = b"g"
CANCEL = b"c"
VERIFIED = b"V"
REFUSED = b"R"
OUTPUT = b"O"
ENDED = b"E"
NOT_STARTED = b"N"

HEADER = struct.Struct(">cI")
MAX_FRAME = 8 * 1024 * 1024  # a Result holds at most 1 MiB a stream
CHILD_MODULE = "sonde.agent.remediation.order_child"
EXIT_WAIT_S = 10.0
CHECK_TIMEOUT_S = 60.0

SendOutput = Callable[[agent_pb2.ScriptOutput], Awaitable[None]]
_CLOSING: set[asyncio.Task[None]] = set()  # run processes left to end after their Result


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class ChildGone(Exception):
    """The child's stdout ended, or it wrote what is not a frame."""


async def read_frame(stream: asyncio.StreamReader) -> tuple[bytes, bytes]:
    try:
        kind, size = HEADER.unpack(await stream.readexactly(HEADER.size))
        if size > MAX_FRAME:
            raise ChildGone(f"a frame of {size} bytes")
        return kind, await stream.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ChildGone("its output ended") from None


def _failure(command_id: str, reason: str) -> agent_pb2.Result:
    failure = agent_pb2.Failure(reason=reason, kind=agent_pb2.FAILURE_KIND_FAILED)
    return agent_pb2.Result(command_id=command_id, failure=failure)


def claimed_command_id(signed: remediation_pb2.SignedRunScript) -> str:
    """The command id the order's bytes claim, unverified: which id to answer, nothing more."""
    order = remediation_pb2.RunScriptOrder()
    try:
        order.ParseFromString(signed.order)
    except Exception:  # DecodeError, or bytes that are not an order at all
        return ""
    return order.command_id


@dataclass
class OrderProcess:
    """A child that verified its order and waits for GO (or CANCEL)."""

    process: asyncio.subprocess.Process
    command_id: str
    expires_at: datetime
    state_dir: Path
    started: bool = False  # the child recorded it as started: finish() marks it finished

    async def run(self, send_output: SendOutput, cancel: asyncio.Event) -> agent_pb2.Result:
        """GO, the output relayed while it runs, and its Result; the record is marked
        finished by finish() once that Result is in the outbox."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(GO)
        await self.process.stdin.drain()
        watcher = asyncio.create_task(self._cancel_when(cancel))
        handed_off = False  # its Result came: the process is left to end by itself
        try:
            while True:
                kind, payload = await read_frame(self.process.stdout)
                if kind == OUTPUT:
                    await send_output(agent_pb2.ScriptOutput.FromString(payload))
                elif kind in (ENDED, NOT_STARTED):
                    self.started = kind == ENDED
                    # The Result goes out now; the process ends meanwhile (0.1 s or more).
                    closing = asyncio.create_task(self._close())
                    _CLOSING.add(closing)
                    closing.add_done_callback(_CLOSING.discard)
                    handed_off = True
                    return agent_pb2.Result.FromString(payload)
                else:
                    raise ChildGone(f"an unexpected frame {kind!r}")
        except ChildGone as error:
            self.started = True  # the record may say started: it is finished, never rerun
            code = await self._exit_code()
            log.warning("the run of command %s lost its process: %s", self.command_id, error)
            return _failure(
                self.command_id,
                f"the process that ran the script ended without its result (exit {code}); "
                "not run again",
            )
        finally:
            watcher.cancel()
            if not handed_off:
                await self._close()

    async def _cancel_when(self, cancel: asyncio.Event) -> None:
        await cancel.wait()
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.write(CANCEL)
            await self.process.stdin.drain()

    async def abandon(self) -> None:
        """Cancelled before it started: the child ends without running anything."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.write(CANCEL)
            await self.process.stdin.drain()
        await self._close()

    def finish(self) -> None:
        """After its Result is in the outbox (as RunOrders.finish)."""
        if self.started:
            RunRecord.in_state_dir(self.state_dir).finished(self.command_id, self.expires_at)

    async def _exit_code(self) -> int | None:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.process.wait(), EXIT_WAIT_S)
        return self.process.returncode

    async def _close(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        if await self._exit_code() is None:
            log.warning("the run process of command %s did not end: killed", self.command_id)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def check_order(
    state_dir: Path,
    agent_id: str,
    signed: remediation_pb2.SignedRunScript,
    completed: Callable[[str], bool],
) -> OrderProcess | agent_pb2.Result:
    """A child holding the verified order, waiting for GO; or the Result that refuses it.

    `completed` is the outbox's record of the commands whose result was acknowledged: the
    child checks the run record itself, the outbox stays in the agent."""
    claimed = claimed_command_id(signed)
    argv = [sys.executable, "-m", CHILD_MODULE, "--state", str(state_dir), "--agent-id", agent_id]
    if claimed and completed(claimed):
        argv.append("--completed")
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
    except OSError as error:  # no descriptors or memory left for it, Python gone
        log.warning("a run order could not be checked: %s", error)
        return _failure(claimed, f"the agent could not start the process that checks it: {error}")
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(frame(ORDER, signed.SerializeToString()))
        await process.stdin.drain()
        # Bounded: the session reads nothing else meanwhile.
        kind, payload = await asyncio.wait_for(read_frame(process.stdout), CHECK_TIMEOUT_S)
    except (ChildGone, OSError, TimeoutError) as error:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        code = await process.wait()
        what = (
            f"its process gave no answer within {CHECK_TIMEOUT_S:.0f} s"
            if isinstance(error, TimeoutError)
            else f"its process ended (exit {code})"
        )
        log.warning("a run order could not be checked: %s", what)
        return _failure(claimed, f"the agent could not check the order: {what}")
    if kind == VERIFIED:
        order = remediation_pb2.RunScriptOrder.FromString(signed.order)  # the bytes it verified
        expires_at = order.expires_at.ToDatetime(tzinfo=UTC)
        return OrderProcess(process, order.command_id, expires_at, state_dir)
    process.stdin.close()
    await process.wait()
    if kind == REFUSED:
        return agent_pb2.Result.FromString(payload)
    return _failure(claimed, f"the agent could not check the order: an unexpected frame {kind!r}")
