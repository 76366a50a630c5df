"""`sonde-agent help TEXT` from a real agent process to a real server (docs/agent.md, "Asking
for help from the workstation"): the ticket, its requester from the kernel, the snapshot and
its findings; hostile local clients; the hourly limit; a server that cannot be reached."""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sonde.agent.help_socket import help_socket_path
from sonde.v1 import agent_pb2, console_pb2
from tests.e2e.conftest import OnlineAgent
from tests.support.deployment import Deployment, run, wait_for

OPENED = re.compile(r"^Ticket #(\d+) opened: a technician will contact you$")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def online_agent(sonde: Deployment, state: Path, *extra: str) -> OnlineAgent:
    agent_id = sonde.enroll_agent(state)
    process = sonde.start_agent(state, *extra)
    sonde.wait_online(agent_id, timeout=15)
    wait_for("the help socket", lambda: "listening for `sonde-agent help`" in process.log())
    return OnlineAgent(agent_id, state, process)


def ticket(sonde: Deployment, ticket_id: int) -> console_pb2.GetTicketResponse:
    with sonde.console() as console:
        return console.GetTicket(console_pb2.GetTicketRequest(id=ticket_id), timeout=10)


def workstation_tickets(sonde: Deployment, agent_id: str) -> list[console_pb2.Ticket]:
    with sonde.console() as console:
        listed = console.ListTickets(console_pb2.ListTicketsRequest(limit=1000), timeout=10)
    return [
        t
        for t in listed.tickets
        if t.agent_id == agent_id and t.channel == console_pb2.TICKET_CHANNEL_WORKSTATION
    ]


def ask(path: Path, payload: bytes, timeout: float = 30) -> agent_pb2.LocalHelpAnswer:
    """Write raw bytes on the agent's socket; the answer frame it sends back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    (length,) = struct.unpack(">I", data[:4])
    assert len(data) == 4 + length
    return agent_pb2.LocalHelpAnswer.FromString(data[4:])


def frame(description: str) -> bytes:
    body = agent_pb2.LocalHelpAsk(description=description).SerializeToString()
    return struct.pack(">I", len(body)) + body


def test_help_opens_a_workstation_ticket_with_a_fresh_snapshot_and_its_findings(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    # A target nobody listens on: the fresh snapshot has a network.target finding to attach.
    agent = online_agent(shared_sonde, tmp_path / "state", "--target", f"127.0.0.1:{closed_port()}")
    done = run("sonde-agent", "help", "my printer doesn't print", "--state", str(agent.state))
    assert done.returncode == 0, done.stderr
    matched = OPENED.match(done.stdout.strip())
    assert matched, done.stdout
    ticket_id = int(matched.group(1))

    shown = ticket(shared_sonde, ticket_id)
    opened = shown.ticket
    assert opened.channel == console_pb2.TICKET_CHANNEL_WORKSTATION
    assert opened.requester == pwd.getpwuid(os.geteuid()).pw_name
    assert opened.agent_id == agent.agent_id
    assert opened.title == "my printer doesn't print"
    assert opened.description.startswith("my printer doesn't print\n")
    kinds = [event.kind for event in shown.timeline]
    assert kinds[:2] == [
        console_pb2.TICKET_EVENT_KIND_OPENED,
        console_pb2.TICKET_EVENT_KIND_DIAGNOSTIC,
    ]
    diagnostic = shown.timeline[1]
    assert diagnostic.actor == f"agent:{agent.agent_id}"
    assert diagnostic.snapshot_id > 0
    assert "network.target" in [finding.check for finding in diagnostic.findings]
    with shared_sonde.console() as console:
        snapshot = console.GetSnapshot(
            console_pb2.GetSnapshotRequest(id=diagnostic.snapshot_id), timeout=10
        )
        audit = console.ListAudit(
            console_pb2.ListAuditRequest(ticket_id=ticket_id, limit=50), timeout=10
        )
    assert snapshot.snapshot.snapshot.agent_id == agent.agent_id
    assert snapshot.snapshot.summary.ticket_id == ticket_id
    assert [f.check for f in snapshot.snapshot.findings] == [f.check for f in diagnostic.findings]
    rows = [r for r in audit.entries if r.action == "ticket.open" and r.ticket_id == ticket_id]
    assert [r.actor for r in rows] == [f"agent:{agent.agent_id}"]

    as_json = run(
        "sonde-agent", "help", "the screen\x1b[31m flickers", "--state", str(agent.state), "--json"
    )
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["ticket_id"] > ticket_id
    assert ticket(shared_sonde, answer["ticket_id"]).ticket.title == "the screen[31m flickers"


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every local user can reach (pytest's tmp_path is root's own)."""
    folder = Path(tempfile.mkdtemp(prefix="sonde-help-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the client as another user")
def test_the_requester_is_the_kernels_word_for_the_calling_user(
    shared_sonde: Deployment, tmp_path: Path, open_folder: Path
) -> None:
    path = open_folder / "help.sock"
    agent = online_agent(shared_sonde, tmp_path / "state", "--help-socket", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o666
    nobody = pwd.getpwnam("nobody")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "PYTHONPATH": os.pathsep.join(sys.path[1:])}

    def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            user=nobody.pw_uid,
            group=nobody.pw_gid,
            extra_groups=[],
            env=env,
            cwd="/",
            check=False,
        )

    def runs_sonde(python: str) -> bool:
        try:
            return as_nobody(python, "-c", "import sonde.agent.help_cmd").returncode == 0
        except PermissionError:
            return False

    # An interpreter that user may run (this one may live in root's own home), with our path.
    candidates = (sys.executable, f"/usr/bin/python3.{sys.version_info.minor}")
    python = next((c for c in candidates if os.path.exists(c) and runs_sonde(c)), None)
    if python is None:
        pytest.skip("no Python interpreter with Sonde importable by the user nobody")
    launch = "import sys; from sonde.agent.cli import main; sys.exit(main())"
    done = as_nobody(python, "-c", launch, "help", "nothing works", "--socket", str(path))
    assert done.returncode == 0, done.stderr
    matched = OPENED.match(done.stdout.strip())
    assert matched, done.stdout
    opened = ticket(shared_sonde, int(matched.group(1))).ticket
    assert opened.requester == "nobody"
    assert opened.agent_id == agent.agent_id


def test_hostile_clients_are_refused_and_the_agent_keeps_working(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    agent = online_agent(shared_sonde, tmp_path / "state")
    path = help_socket_path(agent.state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    too_long = "x" * 4001
    done = run("sonde-agent", "help", too_long, "--state", str(agent.state))
    assert done.returncode == 2
    assert "4001 characters; at most 4000" in done.stderr
    # The same words sent by a client of its own, past the CLI's check: the agent refuses too.
    assert "at most 4000" in ask(path, frame(too_long)).error
    assert "at most 32768 bytes" in ask(path, struct.pack(">I", 10**9) + b"x" * 100).error
    garbage = ask(path, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert garbage.ticket_id == 0
    assert "refused" in garbage.error
    undecodable = ask(path, struct.pack(">I", 3) + b"\x0a\x01\xff")  # a string, not UTF-8
    assert undecodable.error == "refused: that is not a sonde-agent help request"
    assert "ended before it was complete" in ask(path, struct.pack(">I", 50) + b"abc").error
    assert "describe the problem" in ask(path, frame("\x00\x07  \x1b")).error

    # One that connects and never sends is answered after 10 s; meanwhile others are served.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.settimeout(30)
        silent.connect(str(path))
        meanwhile = run("sonde-agent", "help", "still there?", "--state", str(agent.state))
        assert meanwhile.returncode == 0, meanwhile.stderr
        assert OPENED.match(meanwhile.stdout.strip())
        data = b""
        while chunk := silent.recv(65536):
            data += chunk
    assert agent_pb2.LocalHelpAnswer.FromString(data[4:]).error == "refused: no request within 10 s"

    assert agent.process.alive()
    after = run("sonde-agent", "help", "and now?", "--state", str(agent.state))
    assert after.returncode == 0, after.stderr
    assert OPENED.match(after.stdout.strip())
    assert len(workstation_tickets(shared_sonde, agent.agent_id)) == 2


def test_five_help_tickets_an_hour_per_agent(shared_sonde: Deployment, tmp_path: Path) -> None:
    agent = online_agent(shared_sonde, tmp_path / "state")
    for n in range(5):
        done = run("sonde-agent", "help", f"problem {n}", "--state", str(agent.state))
        assert done.returncode == 0, done.stderr
        assert OPENED.match(done.stdout.strip())
    refused = run("sonde-agent", "help", "problem 6", "--state", str(agent.state), "--json")
    assert refused.returncode == 1
    answer = json.loads(refused.stdout)
    assert answer["ticket_id"] is None
    assert "already asked for help 5 times in the last hour" in answer["error"]
    assert len(workstation_tickets(shared_sonde, agent.agent_id)) == 5
    # Another machine is not held back by this one's limit.
    other = online_agent(shared_sonde, tmp_path / "other")
    done = run("sonde-agent", "help", "mine works", "--state", str(other.state))
    assert done.returncode == 0, done.stderr


def test_without_the_server_the_user_is_told_it_was_not_sent(
    sonde: Deployment, tmp_path: Path
) -> None:
    agent = online_agent(sonde, tmp_path / "state")
    sonde.kill_server()
    wait_for("the agent to notice", lambda: "disconnected" in agent.process.log(), timeout=60)
    done = run("sonde-agent", "help", "the network is down", "--state", str(agent.state))
    assert done.returncode == 1
    assert "your request for help was not sent" in done.stderr
    assert "call the helpdesk" in done.stderr
    sonde.start_server(same_ports=True)
    sonde.wait_online(agent.agent_id, timeout=60)
    assert workstation_tickets(sonde, agent.agent_id) == []


def test_without_a_running_agent_the_user_is_told_so(tmp_path: Path) -> None:
    done = run("sonde-agent", "help", "hello", "--state", str(tmp_path / "state"))
    assert done.returncode == 1
    assert "the Sonde agent is not running on this computer" in done.stderr
