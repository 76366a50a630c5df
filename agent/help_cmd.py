"""`sonde-agent help TEXT`: the workstation's user asks the helpdesk for help.

Run as the ordinary user: it connects to the running agent's local socket
(agent/help_socket.py; a named pipe on Windows, agent/help_pipe.py), which collects a fresh
snapshot, sends the request to the server and answers with the ticket's number. The agent,
not this program, tells the server who asked.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from sonde.agent import exit_codes
from sonde.agent.help_socket import DescriptionRefused, checked_description, frame
from sonde.agent.local_channel import AnswerFrames, connect, local_address
from sonde.v1 import agent_pb2

# The agent collects (a few seconds), then waits up to 30 s for the server.
ANSWER_TIMEOUT_S = 90.0
CONNECT_TIMEOUT_S = 10.0


def exchange(address: str, ask: agent_pb2.LocalHelpAsk) -> agent_pb2.LocalHelpAnswer:
    """One ask to the running agent and its one answer (`sonde-agent help`, `rate`)."""
    with contextlib.closing(connect(address, CONNECT_TIMEOUT_S)) as connection:
        connection.send(frame(ask))
        answer = AnswerFrames(connection).next(time.monotonic() + ANSWER_TIMEOUT_S)
    if answer is None:
        raise ConnectionError("the agent closed the connection without a complete answer")
    return answer


def _fail(message: str, as_json: bool, code: int = exit_codes.ERROR) -> int:
    if as_json:
        print(json.dumps({"ticket_id": None, "error": message}))
    else:
        print(f"sonde-agent: {message}", file=sys.stderr)
    return code


def ask_for_help(text: str, state_dir: Path | None, given: str | None, as_json: bool) -> int:
    try:
        description = checked_description(text)
    except DescriptionRefused as refused:
        return _fail(f"not sent: {refused}", as_json, exit_codes.USAGE)
    path = local_address(state_dir, given)
    try:
        answer = exchange(path, agent_pb2.LocalHelpAsk(description=description))
    except (FileNotFoundError, ConnectionRefusedError):
        return _fail(
            f"the Sonde agent is not running on this computer (nothing listens on {path}): "
            "your request was not sent; call the helpdesk",
            as_json,
        )
    except PermissionError:
        return _fail(f"not allowed to reach the Sonde agent at {path}: call the helpdesk", as_json)
    except TimeoutError:
        return _fail(
            f"the Sonde agent did not answer within {ANSWER_TIMEOUT_S:g} s: your request may "
            "not have been received; call the helpdesk",
            as_json,
        )
    except (OSError, ValueError) as error:  # ValueError: protobuf's DecodeError
        return _fail(f"could not ask the Sonde agent at {path}: {error}", as_json)
    if not answer.ticket_id:
        return _fail(answer.error or "the agent gave no answer", as_json)
    if as_json:
        print(json.dumps({"ticket_id": answer.ticket_id, "hostname": answer.hostname}))
    else:
        print(f"Ticket #{answer.ticket_id} opened: a technician will contact you")
    return exit_codes.OK
