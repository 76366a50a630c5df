"""`sonde-agent rate [TICKET [RATING]] [--comment TEXT]`: the workstation's user rates the
answer to their requests (docs/web.md, "Satisfaction").

Run as the ordinary user, over the running agent's local socket (agent/help_socket.py; a named
pipe on Windows). With no ticket it lists the user's resolved requests from this computer that
wait for a rating and, on a terminal, asks for each in turn (Enter: not now); with a ticket and
a rating it sends that one. The agent, not this program, tells the server who is rating.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from sonde.agent import exit_codes
from sonde.agent.help_cmd import ANSWER_TIMEOUT_S, exchange
from sonde.agent.help_socket import MAX_COMMENT_CHARS
from sonde.agent.local_channel import local_address
from sonde.v1 import agent_pb2

SCALE = "from 1 (bad) to 5 (very good)"
Prompt = Callable[[str], str]


class RatingRefused(Exception):
    """The agent or the server refused: the message says why, for the user."""


class Usage(ValueError):
    """The command line asks for something that cannot be sent."""


def _exchange(address: str, ask: agent_pb2.LocalRateAsk) -> agent_pb2.LocalHelpAnswer:
    answer = exchange(address, agent_pb2.LocalHelpAsk(rate=ask))
    if answer.error:
        raise RatingRefused(answer.error)
    return answer


def checked_rating(text: str) -> int:
    if text.strip() not in {"1", "2", "3", "4", "5"}:
        raise Usage(f"a rating is a number {SCALE}, not {text.strip()!r}")
    return int(text)


def checked_comment(text: str) -> str:
    """The comment without control characters (newlines kept), trimmed, or Usage."""
    kept = "".join(c for c in text if c == "\n" or (c.isprintable() and c != "\x7f")).strip()
    if len(kept) > MAX_COMMENT_CHARS:
        raise Usage(f"the comment is {len(kept)} characters; at most {MAX_COMMENT_CHARS} are sent")
    return kept


def _when(asked: agent_pb2.RatingAsked) -> str:
    if not asked.HasField("resolved_at"):
        return ""
    resolved = asked.resolved_at.ToDatetime().replace(tzinfo=None)
    return f" (resolved {resolved:%Y-%m-%d %H:%M} UTC)"


def _shown(asked: agent_pb2.RatingAsked) -> str:
    lines = [f"#{asked.ticket_id}  {asked.title}{_when(asked)}"]
    if asked.resolution:
        first = asked.resolution.strip().splitlines()[0]
        lines.append(f"     Resolution: {first}")
    return "\n".join(lines)


def _as_json(asked: agent_pb2.RatingAsked) -> dict[str, object]:
    resolved = None
    if asked.HasField("resolved_at"):
        resolved = asked.resolved_at.ToDatetime().isoformat() + "Z"
    return {
        "ticket_id": asked.ticket_id,
        "title": asked.title,
        "resolved_at": resolved,
        "resolution": asked.resolution,
    }


class RatingSession:
    """One user's `sonde-agent rate`, its output and its prompts."""

    def __init__(self, address: str, as_json: bool, prompt: Prompt | None) -> None:
        self._address = address
        self._as_json = as_json
        self._prompt = prompt  # None: not on a terminal, nothing is asked

    def rate(self, ticket_id: int, rating: int | None, comment: str) -> int:
        if rating is None:
            if self._prompt is None:
                raise Usage(f"give the rating too, {SCALE}: sonde-agent rate {ticket_id} 4")
            rating = self._ask_rating(f"How satisfied are you with ticket #{ticket_id}")
            if rating is None:
                print("Not rated: you can rate it later with sonde-agent rate")
                return exit_codes.OK
            comment = comment or self._ask_comment()
        self._send(ticket_id, rating, comment)
        return exit_codes.OK

    def waiting(self) -> int:
        answer = _exchange(self._address, agent_pb2.LocalRateAsk())
        asked = list(answer.rate.asked)
        if self._as_json:
            print(json.dumps({"waiting": [_as_json(a) for a in asked]}))
            return exit_codes.OK
        if not asked:
            print("None of your requests from this computer waits for a rating: thank you")
            return exit_codes.OK
        if self._prompt is None:
            print("Your resolved requests from this computer wait for your rating:")
            for one in asked:
                print(_shown(one))
            print(f"\nRate one, {SCALE}: sonde-agent rate TICKET RATING [--comment TEXT]")
            return exit_codes.OK
        for one in asked:
            print(_shown(one))
            rating = self._ask_rating("How satisfied are you with it")
            if rating is None:
                print("  Not rated: you can rate it later with sonde-agent rate\n")
                continue
            self._send(one.ticket_id, rating, self._ask_comment())
            print()
        return exit_codes.OK

    def _send(self, ticket_id: int, rating: int, comment: str) -> None:
        ask = agent_pb2.LocalRateAsk(ticket_id=ticket_id, rating=rating, comment=comment)
        answer = _exchange(self._address, ask)
        if not answer.rate.rated:
            raise RatingRefused("the agent did not say the rating was stored: try again")
        if self._as_json:
            print(json.dumps({"ticket_id": ticket_id, "rating": rating, "comment": comment}))
        else:
            print(f"Thank you: ticket #{ticket_id} rated {rating}/5")

    def _ask_rating(self, question: str) -> int | None:
        assert self._prompt is not None
        while True:
            typed = self._prompt(f"{question}, {SCALE}? (Enter: not now) ").strip()
            if not typed:
                return None
            try:
                return checked_rating(typed)
            except Usage as wrong:
                print(f"  {wrong}")

    def _ask_comment(self) -> str:
        assert self._prompt is not None
        while True:
            try:
                return checked_comment(self._prompt("A comment for the helpdesk (optional): "))
            except Usage as wrong:
                print(f"  {wrong}")


def _fail(message: str, as_json: bool, code: int = exit_codes.ERROR) -> int:
    if as_json:
        print(json.dumps({"error": message}))
    else:
        print(f"sonde-agent: {message}", file=sys.stderr)
    return code


def _terminal_prompt(as_json: bool) -> Prompt | None:
    if as_json or not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    return input


def rate_resolution(
    ticket: int | None,
    rating: str | None,
    *,
    comment: str,
    state_dir: Path | None,
    given: str | None,
    as_json: bool,
) -> int:
    try:
        if ticket is not None and ticket <= 0:
            raise Usage("a ticket is a number, like 42 (sonde-agent rate lists yours)")
        if ticket is None and rating is not None:
            raise Usage("give the ticket first: sonde-agent rate TICKET RATING")
        chosen = None if rating is None else checked_rating(rating)
        comment = checked_comment(comment)
    except Usage as wrong:
        return _fail(f"not sent: {wrong}", as_json, exit_codes.USAGE)
    path = local_address(state_dir, given)
    session = RatingSession(path, as_json, _terminal_prompt(as_json))
    try:
        if ticket is None:
            return session.waiting()
        return session.rate(ticket, chosen, comment)
    except Usage as wrong:
        return _fail(f"not sent: {wrong}", as_json, exit_codes.USAGE)
    except RatingRefused as refused:
        return _fail(str(refused), as_json)
    except (EOFError, KeyboardInterrupt):
        print()
        return _fail("stopped: what was rated before is kept", as_json)
    except (FileNotFoundError, ConnectionRefusedError):
        return _fail(
            f"the Sonde agent is not running on this computer (nothing listens on {path}): "
            "try again later",
            as_json,
        )
    except PermissionError:
        return _fail(f"not allowed to reach the Sonde agent at {path}", as_json)
    except TimeoutError:
        return _fail(f"the Sonde agent did not answer within {ANSWER_TIMEOUT_S:g} s", as_json)
    except (OSError, ValueError) as error:  # ValueError: protobuf's DecodeError
        return _fail(f"could not ask the Sonde agent at {path}: {error}", as_json)
