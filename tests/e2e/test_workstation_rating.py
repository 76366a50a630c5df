"""`sonde-agent rate` from a real agent process to a real server (docs/web.md, "Satisfaction"):
a request asked for from the workstation and resolved by a technician is rated there by its
user, once; on a terminal each waiting request is asked in turn; the rating shows on the
ticket's timeline, in the audit log and in the interventions report."""

from __future__ import annotations

import json
import os
import pty
import pwd
import re
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from sonde.v1 import console_pb2
from tests.e2e.conftest import OnlineAgent
from tests.support.deployment import Deployment, program, run, wait_for

OPENED = re.compile(r"^Ticket #(\d+) opened: a technician will contact you$")


def online_agent(sonde: Deployment, state: Path) -> OnlineAgent:
    agent_id = sonde.enroll_agent(state)
    process = sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=15)
    wait_for("the help socket", lambda: "listening for `sonde-agent help`" in process.log())
    return OnlineAgent(agent_id, state, process)


def asked_for_help(agent: OnlineAgent, words: str) -> int:
    done = run("sonde-agent", "help", words, "--state", str(agent.state))
    assert done.returncode == 0, done.stderr
    matched = OPENED.match(done.stdout.strip())
    assert matched, done.stdout
    return int(matched.group(1))


def resolved(sonde: Deployment, ticket_id: int, resolution: str) -> None:
    sonde.sonde_json(
        "ticket", "resolve", str(ticket_id), "--resolution", resolution,
        "--outcome", "fixed", "--time-spent", "5m",
    )  # fmt: skip


def rate(agent: OnlineAgent, *args: str) -> subprocess.CompletedProcess[str]:
    return run("sonde-agent", "rate", *args, "--state", str(agent.state))


def waiting(agent: OnlineAgent) -> list[dict[str, Any]]:
    done = rate(agent, "--json")
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, Any]] = json.loads(done.stdout)["waiting"]
    return listed


def timeline_ratings(sonde: Deployment, ticket_id: int) -> list[str]:
    with sonde.console() as console:
        shown = console.GetTicket(console_pb2.GetTicketRequest(id=ticket_id), timeout=10)
    return [e.body for e in shown.timeline if e.kind == console_pb2.TICKET_EVENT_KIND_RATED]


def test_the_user_rates_a_resolved_request_once_from_the_workstation(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    agent = online_agent(shared_sonde, tmp_path / "state")
    ticket_id = asked_for_help(agent, "the printer jams")
    assert waiting(agent) == []
    nothing = rate(agent)
    assert nothing.returncode == 0, nothing.stderr
    assert "None of your requests from this computer waits for a rating" in nothing.stdout

    resolved(shared_sonde, ticket_id, "Cleared the print queue\nand restarted the spooler")
    [listed] = waiting(agent)
    assert (listed["ticket_id"], listed["title"]) == (ticket_id, "the printer jams")
    assert listed["resolution"].startswith("Cleared the print queue")
    assert listed["resolved_at"].endswith("Z")
    shown = rate(agent)  # not on a terminal: listed, with how to rate
    assert shown.returncode == 0, shown.stderr
    assert f"#{ticket_id}  the printer jams (resolved " in shown.stdout
    assert "Resolution: Cleared the print queue" in shown.stdout
    assert "sonde-agent rate TICKET RATING" in shown.stdout

    wrong = rate(agent, str(ticket_id), "7")
    assert wrong.returncode == 2
    assert "a rating is a number from 1 (bad) to 5 (very good), not '7'" in wrong.stderr
    no_rating = rate(agent, str(ticket_id))
    assert no_rating.returncode == 2
    assert f"sonde-agent rate {ticket_id} 4" in no_rating.stderr
    not_theirs = rate(agent, str(ticket_id + 1000), "5")
    assert not_theirs.returncode == 1
    assert f"ticket #{ticket_id + 1000} is not a request of yours" in not_theirs.stderr

    done = rate(agent, str(ticket_id), "4", "--comment", "quick <script>alert(1)</script>")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"Thank you: ticket #{ticket_id} rated 4/5"
    again = rate(agent, str(ticket_id), "1", "--json")
    assert again.returncode == 1
    assert "rated already (4/5)" in json.loads(again.stdout)["error"]
    assert waiting(agent) == []

    user = pwd.getpwuid(os.geteuid()).pw_name
    assert timeline_ratings(shared_sonde, ticket_id) == [
        f"Rated 4/5 by the requester on the workstation (user {user}): "
        "quick <script>alert(1)</script>"
    ]
    audit = shared_sonde.sonde_json("audit", "--ticket", str(ticket_id), "--action", "ticket.rated")
    assert [(e["actor"], e["result"].split(":")[0]) for e in audit["entries"]] == [
        (f"agent:{agent.agent_id}", "refused"),  # the second rating, newest first
        (f"agent:{agent.agent_id}", "ok"),
    ]
    report = shared_sonde.sonde_json("report", "interventions", "--from", "1d")
    [row] = [r for r in report["interventions"] if r["ticket_id"] == ticket_id]
    assert row["rating"] == 4


def on_a_terminal(agent: OnlineAgent, typed: list[str], timeout: float = 60) -> str:
    """`sonde-agent rate` with a terminal for stdin and stdout, answering each prompt in turn
    with the next line of `typed`; everything it showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*program("sonde-agent"), "rate", "--state", str(agent.state)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    shown = b""
    answers = iter(typed)
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the program ended and closed its terminal
                break
            if not chunk:
                break
            shown += chunk
            prompts = shown.count(b"(Enter: not now) ") + shown.count(b"(optional): ")
            while answered < prompts:
                os.write(controller, (next(answers) + "\n").encode())
                answered += 1
        assert process.wait(timeout=10) == 0, shown.decode()
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return shown.decode().replace("\r\n", "\n")


def test_on_a_terminal_each_waiting_request_is_asked_in_turn(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    agent = online_agent(shared_sonde, tmp_path / "state")
    first = asked_for_help(agent, "Outlook freezes")
    second = asked_for_help(agent, "no sound")
    resolved(shared_sonde, first, "Repaired the Outlook profile")
    resolved(shared_sonde, second, "Unmuted the speakers")

    # The latest resolved first: "no sound" is skipped, Outlook rated 5 after a wrong answer.
    shown = on_a_terminal(agent, ["", "nine", "5", "thanks, fast"])
    assert shown.index(f"#{second}  no sound") < shown.index(f"#{first}  Outlook freezes")
    assert "Not rated: you can rate it later with sonde-agent rate" in shown
    assert "a rating is a number from 1 (bad) to 5 (very good), not 'nine'" in shown
    assert f"Thank you: ticket #{first} rated 5/5" in shown
    assert timeline_ratings(shared_sonde, first)[0].endswith(": thanks, fast")
    assert [entry["ticket_id"] for entry in waiting(agent)] == [second]
