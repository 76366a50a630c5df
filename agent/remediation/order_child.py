"""The child process that checks one run order and runs it (agent/order_process.py).

    python -m sonde.agent.remediation.order_child --state DIR --agent-id ID [--completed]

It reads the order from stdin, checks it with RunOrders.check (the pinned keys, the
policy, the run record; --completed: the agent's outbox already holds this command's
acknowledged result) and answers VERIFIED or REFUSED. After GO it runs the order with
RunOrders.execute, streaming OUTPUT frames, and ends with ENDED (or NOT_STARTED when the
run record could not be written). CANCEL, or the end of stdin, stops the script.
Its log lines go to stderr, which is the agent's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import BinaryIO

from sonde.agent.order_process import (
    ENDED,
    GO,
    HEADER,
    MAX_FRAME,
    NOT_STARTED,
    ORDER,
    OUTPUT,
    REFUSED,
    VERIFIED,
    claimed_command_id,
    frame,
)
from sonde.agent.remediation.orders import RunOrders, refused
from sonde.catalog.envelope import OrderRefused, VerifiedOrder
from sonde.v1 import agent_pb2, remediation_pb2

EXIT_BAD_INPUT = 2
STDIN = 0


def _read_exactly(size: int) -> bytes:
    """From stdin's descriptor, unbuffered: no read-ahead swallows a later CANCEL, and the
    thread that waits for one holds no lock the interpreter needs at exit."""
    data = b""
    while len(data) < size:
        chunk = os.read(STDIN, size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _read_order() -> remediation_pb2.SignedRunScript | None:
    header = _read_exactly(HEADER.size)
    if len(header) != HEADER.size:
        return None
    kind, size = HEADER.unpack(header)
    if kind != ORDER or size > MAX_FRAME:
        return None
    payload = _read_exactly(size)
    if len(payload) != size:
        return None
    return remediation_pb2.SignedRunScript.FromString(payload)


def _write(stdout: BinaryIO, kind: bytes, payload: bytes = b"") -> None:
    stdout.write(frame(kind, payload))
    stdout.flush()


async def _run(orders: RunOrders, verified: VerifiedOrder, stdout: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    cancel = asyncio.Event()

    def watch_stdin() -> None:
        _read_exactly(1)  # CANCEL, or the end of file: the agent is gone
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run ended
            loop.call_soon_threadsafe(cancel.set)

    threading.Thread(target=watch_stdin, name="cancel", daemon=True).start()

    async def send_output(output: agent_pb2.ScriptOutput) -> None:
        _write(stdout, OUTPUT, output.SerializeToString())

    command_id = verified.order.command_id
    try:
        result = await orders.execute(verified, send_output, cancel)
    except OSError as error:  # the run record could not be written: nothing started
        reason = f"the run could not be recorded before it started, so it did not: {error}"
        failure = agent_pb2.Failure(reason=reason, kind=agent_pb2.FAILURE_KIND_FAILED)
        result = agent_pb2.Result(command_id=command_id, failure=failure)
        _write(stdout, NOT_STARTED, result.SerializeToString())
        return
    _write(stdout, ENDED, result.SerializeToString())


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)
    logging.basicConfig(
        level=os.environ.get("SONDE_AGENT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    parser = argparse.ArgumentParser(description="check and run one run order (agent only)")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--completed", action="store_true")
    args = parser.parse_args(argv)
    stdout = sys.stdout.buffer
    signed = _read_order()
    if signed is None:
        return EXIT_BAD_INPUT
    claimed = claimed_command_id(signed)
    orders = RunOrders(
        args.state,
        args.agent_id,
        completed=lambda command_id: args.completed and command_id == claimed,
    )
    try:
        verified = orders.check(signed)
    except OrderRefused as refusal:
        answer = refused(refusal.command_id, refusal.refusal, refusal.message)
        _write(stdout, REFUSED, answer.SerializeToString())
        return 0
    _write(stdout, VERIFIED)
    if _read_exactly(1) != GO:  # CANCEL or the end of file: nothing starts
        return 0
    asyncio.run(_run(orders, verified, stdout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
