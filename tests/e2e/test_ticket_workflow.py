"""The ticket moves a technician reached for, through the real `sonde` against a real server and
real agents on loopback: wait and resume, escalation's hand-over, diag --ticket refusals, the
diagnostic's machine on the timeline, and an agent's last tickets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.e2e.conftest import OnlineAgent, bring_online
from tests.e2e.test_cli_commands import open_ticket, sonde, sonde_error, sonde_json
from tests.support.deployment import Deployment


@pytest.fixture(scope="module")
def other_agent(shared_sonde: Deployment, tmp_path_factory: pytest.TempPathFactory) -> OnlineAgent:
    return bring_online(shared_sonde, tmp_path_factory.mktemp("other") / "state")


def test_wait_and_resume(shared_sonde: Deployment) -> None:
    ticket_id = str(open_ticket(shared_sonde, "--assignee", "admin")["id"])
    refused = sonde_error(shared_sonde, "ticket", "resume", ticket_id)
    assert refused["code"] == "FAILED_PRECONDITION"
    assert f"ticket {ticket_id} is in_progress, not waiting" in refused["message"]

    said = sonde(shared_sonde, "ticket", "wait", ticket_id, "--reason", "User sends a photo")
    assert said.returncode == 0, said.stderr
    assert f"ticket #{ticket_id} is waiting: User sends a photo" in said.stdout
    shown = sonde_json(shared_sonde, "ticket", "show", ticket_id)
    assert shown["ticket"]["status"] == "TICKET_STATUS_WAITING"
    waiting = shown["timeline"][-1]
    assert (waiting["kind"], waiting["body"]) == ("TICKET_EVENT_KIND_WAITING", "User sends a photo")
    assert "paused while waiting" in sonde(shared_sonde, "ticket", "show", ticket_id).stdout
    again = sonde_error(shared_sonde, "ticket", "wait", ticket_id, "--reason", "x")
    assert "already waiting" in again["message"]

    resumed = sonde_json(shared_sonde, "ticket", "resume", ticket_id, "--note", "photo came")
    assert resumed["ticket"]["status"] == "TICKET_STATUS_IN_PROGRESS"
    assert resumed["ticket"]["resolve_due_at"] >= shown["ticket"]["resolve_due_at"]
    timeline = sonde_json(shared_sonde, "ticket", "show", ticket_id)["timeline"]
    assert [e["kind"] for e in timeline[-2:]] == [
        "TICKET_EVENT_KIND_WAITING",
        "TICKET_EVENT_KIND_RESUMED",
    ]
    sonde_json(
        shared_sonde, "ticket", "close", ticket_id, "--note", "duplicate", "--outcome", "duplicate"
    )
    closed = sonde_error(shared_sonde, "ticket", "wait", ticket_id, "--reason", "x")
    assert closed["code"] == "FAILED_PRECONDITION"
    assert f"ticket {ticket_id} is closed: reopen it first" in closed["message"]
    audit = sonde_json(shared_sonde, "audit", "--ticket", ticket_id)["entries"]
    assert {"ticket.wait", "ticket.resume"} <= {entry["action"] for entry in audit}


def test_escalation_says_what_became_of_the_assignee(shared_sonde: Deployment) -> None:
    handed = str(open_ticket(shared_sonde, "--assignee", "admin")["id"])
    said = sonde(shared_sonde, "ticket", "escalate", handed, "--reason", "mailbox repair")
    assert said.returncode == 0, said.stderr
    assert "escalated to L2, new: admin no longer has it: it waits in the L2 queue" in said.stdout
    shown = sonde(shared_sonde, "ticket", "show", handed)
    assert "admin no longer has it" in shown.stdout
    escalated = sonde_json(shared_sonde, "ticket", "show", handed)["timeline"][-1]
    assert escalated["previous_assignee"] == "admin"

    kept = str(open_ticket(shared_sonde, "--assignee", "admin")["id"])
    reply = sonde_json(
        shared_sonde, "ticket", "escalate", kept, "--reason", "firmware", "--keep-assignee"
    )
    assert (reply["previous_assignee"], reply["ticket"]["assignee"]) == ("admin", "admin")
    unassigned = str(open_ticket(shared_sonde)["id"])
    refused = sonde_error(
        shared_sonde, "ticket", "escalate", unassigned, "--reason", "x", "--keep-assignee"
    )
    assert f"ticket {unassigned} has no assignee to keep" in refused["message"]


def _commands_of(deployment: Deployment, agent_id: str) -> list[dict[str, object]]:
    commands: list[dict[str, object]] = sonde_json(deployment, "commands", "--agent", agent_id).get(
        "commands", []
    )
    return commands


def test_diag_ticket_refused_for_a_closed_ticket_or_another_machine_sends_nothing(
    shared_sonde: Deployment, shared_agent: OnlineAgent, other_agent: OnlineAgent
) -> None:
    about_shared = str(open_ticket(shared_sonde, "--agent", shared_agent.agent_id)["id"])
    closed = str(open_ticket(shared_sonde, "--agent", other_agent.agent_id)["id"])
    sonde_json(
        shared_sonde, "ticket", "close", closed, "--note", "duplicate", "--outcome", "duplicate"
    )
    before = _commands_of(shared_sonde, other_agent.agent_id)

    wrong = sonde_error(shared_sonde, "diag", other_agent.agent_id, "--ticket", about_shared)
    assert wrong["code"] == "INVALID_ARGUMENT"
    assert f"ticket {about_shared} is about" in wrong["message"]
    assert f"({shared_agent.agent_id}), not" in wrong["message"]
    assert f"({other_agent.agent_id})" in wrong["message"]
    gone = sonde_error(shared_sonde, "diag", other_agent.agent_id, "--ticket", closed)
    assert gone["code"] == "FAILED_PRECONDITION"
    assert f"ticket {closed} is closed: reopen it first" in gone["message"]
    assert _commands_of(shared_sonde, other_agent.agent_id) == before
    timeline = sonde_json(shared_sonde, "ticket", "show", about_shared)["timeline"]
    assert [e["kind"] for e in timeline] == ["TICKET_EVENT_KIND_OPENED"]

    # On its own machine the diagnostic lands, and the timeline names that machine.
    sonde_json(shared_sonde, "diag", shared_agent.agent_id, "--ticket", about_shared)
    shown = sonde_json(shared_sonde, "ticket", "show", about_shared)["timeline"][-1]
    assert shown["snapshot"]["agent_hostname"] == socket.gethostname()
    human = sonde(shared_sonde, "ticket", "show", about_shared, COLUMNS="200")
    assert f"{socket.gethostname()} ({shared_agent.agent_id})" in human.stdout


def test_agent_show_lists_its_last_ten_tickets_and_how_many_more(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    agent = bring_online(shared_sonde, tmp_path / "busy")
    opened = [
        open_ticket(shared_sonde, "--agent", agent.agent_id, "--title", f"call {n}")["id"]
        for n in range(12)
    ]
    sonde_json(
        shared_sonde, "ticket", "close", str(opened[-1]), "--note", "spam", "--outcome", "cancelled"
    )
    shown = sonde_json(shared_sonde, "agent", "show", agent.agent_id)
    recent = shown["recent_tickets"]
    assert [t["id"] for t in recent] == list(reversed(opened))[:10]
    assert recent[0]["status"] == "TICKET_STATUS_CLOSED"
    assert shown["ticket_count"] == 12
    human = sonde(shared_sonde, "agent", "show", agent.agent_id, COLUMNS="200")
    assert human.returncode == 0, human.stderr
    assert "newest first" in human.stdout
    assert f"2 more: sonde ticket list --agent {agent.agent_id} --all" in human.stdout
