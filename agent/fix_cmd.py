"""`sonde-agent fix [SCRIPT_ID] [--ticket N]`: the workstation's user runs a self-service fix.

Run as the ordinary user, over the running agent's local socket (agent/help_socket.py; a
named pipe on Windows): with
no script id it lists the catalog scripts the server lets this machine's user run; with one,
the server queues an ordinary signed run of it on a ticket, and this waits (FIX_WAIT_S at
most, a live line on a terminal) for the agent's answer saying how it ended.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from sonde.agent import exit_codes
from sonde.agent.help_cmd import CONNECT_TIMEOUT_S
from sonde.agent.help_socket import frame
from sonde.agent.local_channel import AnswerFrames, connect, local_address
from sonde.agent.self_service import FIX_WAIT_S
from sonde.v1 import agent_pb2

# The server answers within 30 s; the run ends within FIX_WAIT_S or the agent says it did not.
LIST_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = FIX_WAIT_S + 60.0


def _fail(message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": message}))
    else:
        print(f"sonde-agent: {message}", file=sys.stderr)
    return exit_codes.ERROR


def _listed(answer: agent_pb2.LocalHelpAnswer, as_json: bool) -> int:
    scripts = list(answer.fix.scripts)
    if as_json:
        shown = [{"id": s.id, "version": s.version, "title": s.title} for s in scripts]
        print(json.dumps({"scripts": shown}))
        return exit_codes.OK
    if not scripts:
        print("No fixes can be run from this computer; ask for help: sonde-agent help TEXT")
        return exit_codes.OK
    width = max(len(s.id) for s in scripts)
    for script in scripts:
        print(f"{script.id:<{width}}  {script.title}")
    print("\nRun one: sonde-agent fix SCRIPT_ID (it is logged on a helpdesk ticket)")
    return exit_codes.OK


def _ended(answer: agent_pb2.LocalHelpAnswer, script_id: str, as_json: bool) -> int:
    fix = answer.fix
    if as_json:
        print(
            json.dumps(
                {
                    "script": script_id,
                    "ticket_id": answer.ticket_id,
                    "command_id": fix.command_id,
                    "ended": fix.ended,
                    "state": fix.state if fix.ended else "running",
                    "exit_code": fix.exit_code if fix.ended else None,
                    "output_tail": fix.output_tail,
                }
            )
        )
    elif not fix.ended:
        print(f"{script_id}: {fix.output_tail}")
    else:
        print(f"{script_id} {fix.state} (exit code {fix.exit_code}), on ticket #{answer.ticket_id}")
        if fix.output_tail:
            print("\n".join(f"  {line}" for line in fix.output_tail.splitlines()))
    ok = fix.ended and fix.state == "succeeded"
    return exit_codes.OK if ok else exit_codes.ERROR


def _exchange(
    path: str, ask: agent_pb2.LocalFixAsk, script_id: str, as_json: bool
) -> tuple[agent_pb2.LocalHelpAnswer | None, agent_pb2.LocalHelpAnswer | None]:
    """The first answer and, for a run, the last."""
    live = not as_json and sys.stderr.isatty()
    started = time.monotonic()
    with contextlib.closing(connect(path, CONNECT_TIMEOUT_S)) as client:
        client.send(frame(agent_pb2.LocalHelpAsk(fix=ask)))
        frames = AnswerFrames(client)
        first = frames.next(started + (RUN_TIMEOUT_S if script_id else LIST_TIMEOUT_S))
        if first is None or not script_id or first.error or first.fix.ended:
            return first, None
        title = first.fix.script_title or script_id
        if not as_json:
            print(f"Running {title} on ticket #{first.ticket_id} ...", flush=True)

        def tick() -> None:
            if live:
                waited = int(time.monotonic() - started)
                print(f"\r  waiting for it to end: {waited} s", end="", file=sys.stderr, flush=True)

        try:
            last = frames.next(started + RUN_TIMEOUT_S, tick)
        finally:
            if live:
                print("\r\x1b[K", end="", file=sys.stderr, flush=True)
        return first, last


def self_service_fix(
    script_id: str | None,
    ticket_id: int | None,
    state_dir: Path | None,
    given: str | None,
    as_json: bool,
) -> int:
    if ticket_id is not None and ticket_id <= 0:
        return _fail("--ticket takes a ticket number, like 42", as_json)
    script = (script_id or "").strip()
    ask = agent_pb2.LocalFixAsk(script_id=script, ticket_id=ticket_id or 0)
    path = local_address(state_dir, given)
    try:
        first, last = _exchange(path, ask, script, as_json)
    except (FileNotFoundError, ConnectionRefusedError):
        return _fail(
            f"the Sonde agent is not running on this computer (nothing listens on {path}): "
            "nothing was run; call the helpdesk",
            as_json,
        )
    except PermissionError:
        return _fail(f"not allowed to reach the Sonde agent at {path}: call the helpdesk", as_json)
    except TimeoutError:
        return _fail(
            "the Sonde agent stopped answering: if a fix was started, its ticket shows how it "
            "ended",
            as_json,
        )
    except (OSError, ValueError) as error:  # ValueError: protobuf's DecodeError
        return _fail(f"could not ask the Sonde agent at {path}: {error}", as_json)
    if script and first is not None and last is None and not first.error and not first.fix.ended:
        return _fail(
            f"the agent closed the connection before {script} ended: ticket "
            f"#{first.ticket_id} shows how it ends",
            as_json,
        )
    answer = last or first
    if answer is None:
        return _fail("the agent closed the connection without an answer", as_json)
    if answer.error:
        return _fail(answer.error, as_json)
    if not script:
        return _listed(answer, as_json)
    return _ended(answer, script, as_json)
