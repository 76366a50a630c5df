"""`sonde-agent fix` from a real agent process to a real server (docs/agent.md, "Self-service
fixes"): the list the server allows, a self-service run logged on a workstation ticket with its
end, and the refusals the user sees."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.v1 import console_pb2
from tests.support.catalog_bundles import signed_bundle, source
from tests.support.deployment import Deployment, run, wait_for

SELF_SERVICE = "self_service = true\n"
RUNNING = re.compile(r"^Running Clear the cache on ticket #(\d+) \.\.\.$", re.MULTILINE)


def publish(deployment: Deployment, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(
        (deployment.data / "pki" / "catalog.key").read_bytes(), password=None
    )
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    bundle = tmp_path / "catalog.bundle"
    bundle.write_bytes(
        signed_bundle(
            key,
            source("clear-cache", title="Clear the cache", parameters=SELF_SERVICE),
            source("say-bye", title="Say goodbye"),  # low risk, not self-service
            source("restart-it", title="Restart it", risk="medium", parameters=SELF_SERVICE),
            source("mac-only", title="For macs", platform="macos", parameters=SELF_SERVICE),
        )
    )
    done = run("sonde", "catalog", "publish", str(bundle), env=deployment.cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr


def fix(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("sonde-agent", "fix", *args, "--state", str(state), timeout=400)


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def ticket(sonde: Deployment, ticket_id: int) -> console_pb2.GetTicketResponse:
    with sonde.console() as console:
        return console.GetTicket(console_pb2.GetTicketRequest(id=ticket_id), timeout=10)


def test_the_user_lists_and_runs_a_self_service_fix_logged_on_a_ticket(
    sonde: Deployment, tmp_path: Path
) -> None:
    publish(sonde, tmp_path)
    state = tmp_path / "agent" / "state"
    agent_id = sonde.enroll_agent(state)
    process = sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=15)
    wait_for("the help socket", lambda: "listening for `sonde-agent help`" in process.log())

    listed = fix(state)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["clear-cache", "Clear", "the", "cache"]
    assert "say-bye" not in listed.stdout
    assert "restart-it" not in listed.stdout
    assert "mac-only" not in listed.stdout
    assert as_json(fix(state, "--json"))["scripts"] == [
        {"id": "clear-cache", "version": "1.0.0", "title": "Clear the cache"}
    ]

    done = fix(state, "clear-cache")
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"
    matched = RUNNING.search(done.stdout)
    assert matched, done.stdout
    ticket_id = int(matched.group(1))
    assert f"clear-cache succeeded (exit code 0), on ticket #{ticket_id}" in done.stdout
    assert "  clear-cache ran" in done.stdout

    user = pwd.getpwuid(os.geteuid()).pw_name
    actor = f"user:{user}@{agent_id[:8]}"
    # The user hears how it ended from the agent as the script ends; the result reaches the
    # server through the agent's outbox right after, and the ticket shows it then.
    wait_for(
        "the run's end on the ticket",
        lambda: (
            console_pb2.TICKET_EVENT_KIND_RUN_ENDED
            in [event.kind for event in ticket(sonde, ticket_id).timeline]
        ),
        timeout=30,
        interval=0.2,
    )
    shown = ticket(sonde, ticket_id)
    assert shown.ticket.title == "Self-service fix: Clear the cache"
    assert shown.ticket.channel == console_pb2.TICKET_CHANNEL_WORKSTATION
    assert shown.ticket.agent_id == agent_id
    assert shown.ticket.requester == user
    kinds = [event.kind for event in shown.timeline]
    assert console_pb2.TICKET_EVENT_KIND_SCRIPT_RUN in kinds
    assert console_pb2.TICKET_EVENT_KIND_RUN_ENDED in kinds
    started = next(e for e in shown.timeline if e.kind == console_pb2.TICKET_EVENT_KIND_SCRIPT_RUN)
    assert started.actor == actor
    with sonde.console() as console:
        audit = console.ListAudit(
            console_pb2.ListAuditRequest(ticket_id=ticket_id, limit=50), timeout=10
        )
    runs = [r for r in audit.entries if r.action == "script.run"]
    assert [(r.actor, r.result) for r in runs] == [(actor, "ok")]

    # The second run lands on the same ticket (the user's own, opened less than a day ago).
    again = fix(state, "clear-cache", "--json")
    assert again.returncode == 0, again.stderr
    answer = as_json(again)
    assert answer["ticket_id"] == ticket_id
    assert answer["state"] == "succeeded"
    assert answer["exit_code"] == 0
    assert "clear-cache ran" in answer["output_tail"]

    # Refusals, each saying why; none of them runs anything.
    refused = fix(state, "say-bye")
    assert refused.returncode == 1
    assert "say-bye is not a self-service script" in refused.stderr
    with sonde.console() as console:
        audit = console.ListAudit(
            console_pb2.ListAuditRequest(agent=agent_id, limit=50), timeout=10
        )
    refusals = [r for r in audit.entries if r.action == "script.run" and r.result != "ok"]
    assert [(r.actor, r.result.split(":")[0]) for r in refusals] == [(actor, "refused")]
    assert "say-bye is not a self-service script" in refusals[0].result
    refused = fix(state, "restart-it")
    assert "restart-it is of medium risk: only low-risk scripts are self-service" in (
        refused.stderr
    )
    refused = fix(state, "no-such-fix")
    assert "no script 'no-such-fix' is published for this computer" in refused.stderr
    refused = fix(state, "mac-only")
    assert "no script 'mac-only' is published for this computer" in refused.stderr

    with sonde.console() as console:
        other = console.OpenTicket(
            console_pb2.OpenTicketRequest(title="about nothing", requester="bob"), timeout=10
        ).ticket
    refused = fix(state, "clear-cache", "--ticket", str(other.id))
    assert f"ticket #{other.id} is not about this computer" in refused.stderr
    refused = fix(state, "clear-cache", "--ticket", "999999")
    assert "no ticket #999999" in refused.stderr

    # The hourly limit: two runs so far, one more, then refused.
    assert fix(state, "clear-cache", "--ticket", str(ticket_id)).returncode == 0
    refused = fix(state, "clear-cache")
    assert refused.returncode == 1
    assert "already ran 3 self-service fixes in the last hour (at most 3)" in refused.stderr
    with sonde.console() as console:
        listed_runs = console.ListRuns(console_pb2.ListRunsRequest(agent=agent_id), timeout=10)
    assert len(listed_runs.runs) == 3

    # A closed ticket is refused.
    with sonde.console() as console:
        console.CloseTicket(
            console_pb2.CloseTicketRequest(
                id=ticket_id, note="done", outcome=console_pb2.TICKET_OUTCOME_CANCELLED
            ),
            timeout=10,
        )
    refused = fix(state, "clear-cache", "--ticket", str(ticket_id))
    assert f"ticket #{ticket_id} is closed" in refused.stderr


def test_without_a_server_nothing_is_run_and_the_user_is_told(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "agent" / "state"
    agent_id = sonde.enroll_agent(state)
    process = sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=15)
    wait_for("the help socket", lambda: "listening for `sonde-agent help`" in process.log())
    sonde.kill_server()
    wait_for("the agent to notice", lambda: "disconnected" in process.log(), timeout=60)
    done = fix(state, "clear-cache")
    assert done.returncode == 1
    assert "not connected to the helpdesk server right now: nothing was run" in done.stderr
    stopped = fix(tmp_path / "nobody" / "state", "--json")
    assert stopped.returncode == 1
    assert "the Sonde agent is not running on this computer" in as_json(stopped)["error"]
