"""Every `sonde` command once, as a real process, against a real server and agent on loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import OnlineAgent, bring_online
from tests.support.deployment import Deployment, run

HOSTILE = "<b>PC</b>\x1b[31mX\nY"
MARKUP = "<b>PC</b> [bold red]boom[/] [link=http://evil.example]x[/link]"


def sonde(
    deployment: Deployment, *args: str, token: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    variables = deployment.cli_env(token)
    variables.update(env)
    return run("sonde", *args, env=variables, timeout=120)


def sonde_json(deployment: Deployment, *args: str, token: str | None = None) -> dict[str, Any]:
    done = sonde(deployment, *args, "--json", token=token)
    assert done.returncode == 0, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
    value = json.loads(done.stdout)
    assert isinstance(value, dict)
    return value


def sonde_error(deployment: Deployment, *args: str, token: str | None = None) -> dict[str, str]:
    done = sonde(deployment, *args, "--json", token=token)
    assert done.returncode == 1, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
    error: dict[str, str] = json.loads(done.stdout)["error"]
    return error


def open_ticket(deployment: Deployment, *extra: str) -> dict[str, Any]:
    ticket: dict[str, Any] = sonde_json(
        deployment, "ticket", "open", "--title", "PC is slow", *extra
    )["ticket"]
    return ticket


def test_whoami(shared_sonde: Deployment) -> None:
    reply = sonde_json(shared_sonde, "whoami")
    assert reply["user"]["name"] == "admin"
    assert reply["user"]["role"] == "ROLE_ADMIN"
    done = sonde(shared_sonde, "whoami")
    assert done.returncode == 0
    assert f"admin (admin) on {shared_sonde.console_address}" in done.stdout


def test_login_saves_a_config_that_later_commands_use_and_logout_revokes_it(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    lena = sonde_json(shared_sonde, "users", "add", "lena", "--role", "l1")["api_token"]
    home = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    bare = {name: "" for name in ("SONDE_SERVER", "SONDE_TOKEN", "SONDE_CA")}
    login = sonde(
        shared_sonde,
        "login", shared_sonde.console_address,
        "--token", lena, "--ca", str(shared_sonde.ca_file),
        **home, **bare,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    config = tmp_path / "config" / "sonde" / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert sonde(shared_sonde, "whoami", **home, **bare).returncode == 0
    logout = sonde(shared_sonde, "logout", **home, **bare)
    assert logout.returncode == 0, logout.stdout + logout.stderr
    assert "revoked the API token on the server" in logout.stdout + logout.stderr
    missing = sonde(shared_sonde, "whoami", **home, **bare)
    assert missing.returncode == 1
    assert "sonde login SERVER --token TOKEN --ca CA_FILE" in missing.stderr
    # The token itself is dead on the server, not only forgotten here.
    refused = sonde_error(shared_sonde, "whoami", token=lena)
    assert refused["code"] == "UNAUTHENTICATED"
    assert "revoked" in refused["message"]


def test_login_with_a_wrong_token_says_so_and_saves_nothing(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    home = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    bare = {name: "" for name in ("SONDE_SERVER", "SONDE_TOKEN", "SONDE_CA")}
    login = sonde(
        shared_sonde,
        "login", shared_sonde.console_address,
        "--token", "sonde_" + "0" * 40, "--ca", str(shared_sonde.ca_file),
        **home, **bare,
    )  # fmt: skip
    assert login.returncode == 1
    assert "refused this API token" in login.stderr
    assert "nothing was saved" in login.stderr
    assert "log in again" not in login.stderr, "this is the login"
    assert not (tmp_path / "config" / "sonde" / "config.json").exists()


def test_an_admin_takes_access_back(shared_sonde: Deployment) -> None:
    added = sonde_json(shared_sonde, "users", "add", "carol", "--role", "l1", "--expires", "8h")
    token = added["api_token"]
    assert added["user"]["token_expires_at"]
    listed = sonde(shared_sonde, "users", "list")
    assert "carol" in listed.stdout, listed.stdout
    assert "enabled" in listed.stdout, listed.stdout
    disabled = sonde(shared_sonde, "users", "disable", "carol")
    assert disabled.returncode == 0
    assert "disabled carol: their API token is refused now" in disabled.stdout
    refused = sonde_error(shared_sonde, "whoami", token=token)
    assert (refused["code"], refused["message"]) == (
        "UNAUTHENTICATED",
        "user carol is disabled: ask an admin (sonde users enable)",
    )
    assert sonde(shared_sonde, "users", "enable", "carol").returncode == 0
    assert sonde_json(shared_sonde, "whoami", token=token)["user"]["role"] == "ROLE_L1"
    assert "carol is now l2" in sonde(shared_sonde, "users", "role", "carol", "l2").stdout
    assert sonde_json(shared_sonde, "whoami", token=token)["user"]["role"] == "ROLE_L2"
    rotated = sonde_json(shared_sonde, "users", "rotate", "carol")
    assert sonde_error(shared_sonde, "whoami", token=token)["code"] == "UNAUTHENTICATED"
    assert sonde_json(shared_sonde, "whoami", token=rotated["api_token"])["user"]["name"] == "carol"
    own = sonde_error(shared_sonde, "users", "disable", "admin")
    assert own["message"] == "you cannot disable yourself: ask another admin"


def test_agents_and_agent_show(shared_sonde: Deployment, shared_agent: OnlineAgent) -> None:
    listed = sonde_json(shared_sonde, "agents", "--online")["agents"]
    mine = next(agent for agent in listed if agent["id"] == shared_agent.agent_id)
    assert mine["online"] is True
    assert mine["hostname"] == socket.gethostname()
    table = sonde(shared_sonde, "agents")
    assert table.returncode == 0
    # The list: host name, then the start of the id (whole in agent show); within 80 columns.
    row = next(line for line in table.stdout.splitlines() if shared_agent.agent_id[:8] in line)
    assert row.startswith(socket.gethostname()[:6]), row
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    # AGENT by an unambiguous prefix of its id.
    shown = sonde_json(shared_sonde, "agent", "show", shared_agent.agent_id[:8])
    assert shown["agent"]["id"] == shared_agent.agent_id
    human = sonde(shared_sonde, "agent", "show", shared_agent.agent_id)
    assert human.returncode == 0
    assert "online" in human.stdout
    assert shared_agent.agent_id in human.stdout


def test_diag_on_a_ticket_lands_on_its_timeline(
    shared_sonde: Deployment, shared_agent: OnlineAgent
) -> None:
    ticket = open_ticket(shared_sonde, "--agent", shared_agent.agent_id, "--channel", "phone")
    reply = sonde_json(shared_sonde, "diag", socket.gethostname(), "--ticket", str(ticket["id"]))
    stored = reply["snapshot"]
    assert stored["summary"]["ticket_id"] == ticket["id"]
    assert stored["summary"]["agent_id"] == shared_agent.agent_id
    assert stored["snapshot"]["system"]["hostname"] == socket.gethostname()
    assert stored["findings"]
    timeline = sonde_json(shared_sonde, "ticket", "show", str(ticket["id"]))["timeline"]
    diagnostics = [e for e in timeline if e["kind"] == "TICKET_EVENT_KIND_DIAGNOSTIC"]
    assert [e["snapshot_id"] for e in diagnostics] == [stored["summary"]["id"]]
    assert diagnostics[0]["findings"]

    human = sonde(shared_sonde, "diag", shared_agent.agent_id, "--timeout", "30")
    assert human.returncode == 0, human.stderr
    for heading in ("Findings", "Key facts", "uptime", "memory", "network"):
        assert heading in human.stdout
    shown = sonde(shared_sonde, "ticket", "show", str(ticket["id"]))
    assert shown.returncode == 0
    assert "diagnostic" in shown.stdout
    assert "response due" in shown.stdout


def test_ticket_life_cycle(shared_sonde: Deployment) -> None:
    ticket_id = str(open_ticket(shared_sonde, "--priority", "p2", "--requester", "Marie")["id"])
    commented = sonde_json(shared_sonde, "ticket", "comment", ticket_id, "called", "back")
    assert commented["event"]["body"] == "called back"
    assigned = sonde_json(shared_sonde, "ticket", "assign", ticket_id)["ticket"]
    assert (assigned["assignee"], assigned["status"]) == ("admin", "TICKET_STATUS_IN_PROGRESS")
    mine = sonde_json(shared_sonde, "ticket", "list", "--mine", "--status", "in-progress")
    assert int(ticket_id) in [t["id"] for t in mine["tickets"]]
    escalated = sonde_json(
        shared_sonde, "ticket", "escalate", ticket_id, "--reason", "disk", "--to", "admin"
    )
    assert escalated["ticket"]["level"] == "TICKET_LEVEL_L2"
    assert escalated["ticket"]["assignee"] == "admin"
    l2 = sonde_json(shared_sonde, "ticket", "list", "--level", "l2")["tickets"]
    assert int(ticket_id) in [t["id"] for t in l2]
    resolved = sonde_json(
        shared_sonde, "ticket", "resolve", ticket_id, "--resolution", "new toner",
        "--outcome", "fixed", "--time-spent", "1h30m",
    )  # fmt: skip
    assert resolved["ticket"]["status"] == "TICKET_STATUS_RESOLVED"
    assert resolved["ticket"]["time_spent_s"] == 5400
    # Closing checks the record: what it lacks is listed, each with the command that gives it.
    refused = sonde_error(shared_sonde, "ticket", "close", ticket_id, "--note", "confirmed")
    assert refused["code"] == "FAILED_PRECONDITION"
    assert f"sonde ticket set {ticket_id} --category PATH" in refused["message"]
    assert f"sonde ticket set {ticket_id} --agent NAME" in refused["message"]
    added = sonde_json(shared_sonde, "category", "add", "printing", "--title", "Printing")
    assert added["category"]["path"] == "printing"
    details = sonde_json(
        shared_sonde, "ticket", "set", ticket_id, "--category", "printing", "--kind", "request"
    )["ticket"]
    assert (details["category"], details["kind"]) == ("printing", "TICKET_KIND_SERVICE_REQUEST")
    assert details["category_confirmed_by"] == "admin"  # an L2 ticket: confirmed as set
    closed = sonde_json(shared_sonde, "ticket", "close", ticket_id, "--note", "confirmed")
    assert closed["ticket"]["status"] == "TICKET_STATUS_CLOSED"
    open_only = sonde_json(shared_sonde, "ticket", "list")["tickets"]
    assert int(ticket_id) not in [t["id"] for t in open_only]
    everything = sonde_json(shared_sonde, "ticket", "list", "--all")["tickets"]
    assert int(ticket_id) in [t["id"] for t in everything]
    reopened = sonde_json(shared_sonde, "ticket", "reopen", ticket_id, "--reason", "again")
    assert reopened["ticket"]["status"] == "TICKET_STATUS_IN_PROGRESS"
    human = sonde(shared_sonde, "ticket", "list")
    assert human.returncode == 0
    assert "PC is slow" in human.stdout
    kinds = [e["kind"] for e in sonde_json(shared_sonde, "ticket", "show", ticket_id)["timeline"]]
    for kind in ("OPENED", "COMMENT", "ASSIGNED", "ESCALATED", "RESOLVED", "CLOSED", "REOPENED"):
        assert f"TICKET_EVENT_KIND_{kind}" in kinds


def test_users_tokens_and_roles(shared_sonde: Deployment) -> None:
    added = sonde_json(shared_sonde, "user", "add", "bob", "--role", "l1")
    assert added["user"]["role"] == "ROLE_L1"
    token = added["api_token"]
    names = [user["name"] for user in sonde_json(shared_sonde, "user", "list")["users"]]
    assert {"admin", "bob"} <= set(names)
    assert sonde_json(shared_sonde, "whoami", token=token)["user"]["name"] == "bob"
    denied = sonde_error(shared_sonde, "user", "list", token=token)
    assert denied["code"] == "PERMISSION_DENIED"
    enrollment = sonde_json(shared_sonde, "token", "create", "--uses", "2", "--ttl", "10m")
    assert enrollment["enrollment"].startswith("sonde-enroll-1.")
    assert enrollment["uses"] == 2
    human = sonde(shared_sonde, "token", "create")
    assert human.returncode == 0
    assert "sonde-agent enroll sonde-enroll-1." in human.stdout


def test_unknown_ticket_and_unknown_agent_are_not_found(shared_sonde: Deployment) -> None:
    error = sonde_error(shared_sonde, "ticket", "show", "99999")
    assert error["code"] == "NOT_FOUND"
    assert "99999" in error["message"]
    human = sonde(shared_sonde, "ticket", "show", "99999")
    assert human.returncode == 1
    assert human.stderr.startswith("error (NOT_FOUND): ")
    assert "99999" in human.stderr
    assert sonde_error(shared_sonde, "diag", "no-such-pc")["code"] == "NOT_FOUND"
    assert sonde_error(shared_sonde, "agent", "show", "no-such-pc")["code"] == "NOT_FOUND"


def test_offline_agent_is_unavailable_from_the_server_with_no_queue(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    agent_id = shared_sonde.enroll_agent(tmp_path / "never-started")
    error = sonde_error(shared_sonde, "diag", agent_id, "--no-queue")
    assert error["code"] == "UNAVAILABLE"
    assert "cannot reach the Sonde server" not in error["message"]


def test_unreachable_server_says_so(shared_sonde: Deployment) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    done = sonde(shared_sonde, "agents", "--json", SONDE_SERVER=address)
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "UNAVAILABLE"
    assert error["message"].startswith(f"cannot reach the Sonde server at {address}")


def test_a_failed_handshake_is_one_line_without_grpc_core_logs(
    shared_sonde: Deployment,
) -> None:
    """Something that is not a Sonde server answers: the technician reads one line, not gRPC
    core's "Handshake failed" log lines."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        stop = threading.Event()

        def answer_like_a_web_server() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    peer, _ = listener.accept()
                    with peer:
                        peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        serving = threading.Thread(target=answer_like_a_web_server, daemon=True)
        serving.start()
        try:
            done = sonde(shared_sonde, "agents", SONDE_SERVER=address)
        finally:
            stop.set()
            serving.join(timeout=5)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error (UNAVAILABLE): cannot reach the Sonde server at {address}")


def test_hostile_ticket_text_is_refused_or_printed_inert(shared_sonde: Deployment) -> None:
    # The server refuses control characters at intake; the CLI says so clearly.
    refused = sonde_error(shared_sonde, "ticket", "open", "--title", HOSTILE)
    assert refused["code"] == "INVALID_ARGUMENT"
    assert "\x1b" not in refused["message"]
    # Printable but hostile text is accepted, and shown as typed: no markup, no raw newline.
    ticket = sonde_json(shared_sonde, "ticket", "open", "--title", MARKUP, "--requester", MARKUP)[
        "ticket"
    ]
    ticket_id = str(ticket["id"])
    comment = sonde(shared_sonde, "ticket", "comment", ticket_id, f"{MARKUP}\nsecond line")
    assert comment.returncode == 0, comment.stdout + comment.stderr
    for args in (("ticket", "show", ticket_id), ("ticket", "list")):
        done = sonde(shared_sonde, *args, COLUMNS="300")
        assert done.returncode == 0
        assert "\x1b" not in done.stdout
        assert MARKUP in done.stdout
    shown = sonde(shared_sonde, "ticket", "show", ticket_id, COLUMNS="300").stdout
    # A comment keeps its newline (inside the timeline's indented detail), shown as typed.
    stripped = [line.strip() for line in shown.splitlines()]
    last = len(stripped) - 1 - stripped[::-1].index(MARKUP)  # the comment, after the opening
    assert stripped[last + 1] == "second line", shown


@pytest.fixture
def second_agent(shared_sonde: Deployment, tmp_path: Path) -> OnlineAgent:
    return bring_online(shared_sonde, tmp_path / "to-revoke")


def test_revoke(shared_sonde: Deployment, second_agent: OnlineAgent) -> None:
    reply = sonde_json(
        shared_sonde, "agents", "revoke", second_agent.agent_id, "--reason", "stolen"
    )
    assert reply["agent"]["revoked"] is True
    default = [a["id"] for a in sonde_json(shared_sonde, "agents")["agents"]]
    assert second_agent.agent_id not in default
    every = sonde_json(shared_sonde, "agents", "--all")["agents"]
    assert any(a["id"] == second_agent.agent_id and a["revoked"] for a in every)


def test_audit_lists_who_did_what_for_those_allowed(shared_sonde: Deployment) -> None:
    added = sonde_json(shared_sonde, "users", "add", "dan", "--role", "l2")
    ticket = open_ticket(shared_sonde)
    sonde_json(shared_sonde, "ticket", "comment", str(ticket["id"]), "called the user")
    listed = sonde_json(
        shared_sonde, "audit", "--ticket", str(ticket["id"]), "--action", "ticket.*"
    )
    actions = [entry["action"] for entry in listed["entries"]]
    assert actions == ["ticket.comment", "ticket.open"]
    assert {entry["actor"] for entry in listed["entries"]} == {"admin"}
    created = sonde_json(shared_sonde, "audit", "--who", "admin", "--action", "user.create")
    assert any('"name":"dan"' in entry["detail"] for entry in created["entries"])
    page = sonde_json(shared_sonde, "audit", "--limit", "1", "--since", "1h")
    assert len(page["entries"]) == 1
    assert page["more"] is True
    human = sonde(shared_sonde, "audit", "--limit", "1")
    assert human.returncode == 0
    assert "older entries match too: add --before" in human.stdout
    denied = sonde_error(shared_sonde, "audit", token=added["api_token"])
    assert denied["code"] == "PERMISSION_DENIED"
    assert "audit.read" in denied["message"]
    bad = sonde(shared_sonde, "audit", "--since", "yesterday")
    assert bad.returncode == 2
    assert "expected a span such as 2h or 3d" in bad.stderr


def test_a_stored_diagnostic_is_shown_and_compared_with_the_one_before(
    shared_sonde: Deployment, shared_agent: OnlineAgent
) -> None:
    first = sonde_json(shared_sonde, "diag", shared_agent.agent_id)["snapshot"]["summary"]
    second = sonde_json(shared_sonde, "diag", shared_agent.agent_id)["snapshot"]["summary"]
    shown = sonde_json(shared_sonde, "snapshot", "show", str(second["id"]))
    assert shown["snapshot"]["summary"]["agent_id"] == shared_agent.agent_id
    assert int(shown["previous_id"]) >= int(first["id"])
    human = sonde(shared_sonde, "snapshot", "show", str(second["id"]))
    assert human.returncode == 0
    assert f"Diagnostic #{second['id']}" in human.stdout
    diff = sonde_json(shared_sonde, "snapshot", "diff", str(second["id"]), str(first["id"]))
    assert (diff["machine"], diff["newer"], diff["older"]) == (
        shared_agent.agent_id,
        int(second["id"]),
        int(first["id"]),
    )
    # Two live collections a second apart: counters and processes moved, which the diff
    # leaves out unless asked (and counts); nothing of the bookkeeping either way.
    assert diff["facts_left_out"] > 0, diff
    paths = [change["path"] for change in diff["facts"]]
    assert not any(path.startswith(("processes.", "cpu.load_", "disks.io[")) for path in paths)
    everything = sonde_json(
        shared_sonde, "snapshot", "diff", str(second["id"]), str(first["id"]), "--all"
    )
    every_path = [change["path"] for change in everything["facts"]]
    assert any(path.startswith("processes.") for path in every_path), everything
    assert everything["facts_left_out"] == 0
    assert not any(path.startswith(("collected_at", "duration_ms")) for path in every_path)
    default = sonde_json(shared_sonde, "snapshot", "diff", str(second["id"]))
    assert default["older"] == int(shown["previous_id"])
    table = sonde(shared_sonde, "snapshot", "diff", str(second["id"]))
    assert table.returncode == 0
    assert "Facts that changed" in table.stdout
    assert "facts that move at every collection left out" in table.stdout
    missing = sonde_error(shared_sonde, "snapshot", "show", "999999999")
    assert missing["code"] == "NOT_FOUND"
