"""Monitoring end to end with the real programs: a real server checking a real agent every 2 s,
a group threshold set low so its disk.space finding is critical (a monitoring ticket opens by
itself), then set back so the finding is ok (the ticket closes by itself after 2 checks in a row,
saying so on its timeline). Everything is set with the `sonde group` commands."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sonde.v1 import console_pb2 as pb
from tests.e2e.conftest import bring_online
from tests.integration.storage.databases import create_database, drop_database
from tests.support.deployment import Deployment, run, wait_for

# Thresholds every disk on the test machine meets (critical at 0 % used), and then none does
# (critical above 100 %); uptime and the system drive's free space never decide.
NEVER_UPTIME = ("--threshold", "uptime_warning_s=1e12", "--threshold", "uptime_critical_s=1e12")
LOW = ("--threshold", "disk_used_warning_percent=0", "--threshold", "disk_used_critical_percent=0")
BACK = (
    "--threshold", "disk_used_warning_percent=101",
    "--threshold", "disk_used_critical_percent=101",
    "--threshold", "system_disk_free_warning_bytes=0",
    "--threshold", "system_disk_free_critical_bytes=0",
)  # fmt: skip
GROUP = ("group", "set", "lab", "--interval", "2s", "--collectors", "disks", "--clear-checks", "2")


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[Deployment]:
    sonde = Deployment(tmp_path)
    sonde.init()
    sonde.start_server("--monitoring-min-interval", "1")
    try:
        yield sonde
    finally:
        sonde.stop()


def cli(sonde: Deployment, *args: str) -> dict[str, Any]:
    done: subprocess.CompletedProcess[str] = run(
        "sonde", *args, "--json", env=sonde.cli_env(), timeout=30
    )
    assert done.returncode == 0, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def monitoring_tickets(sonde: Deployment) -> list[pb.Ticket]:
    with sonde.console() as console:
        reply = console.ListTickets(
            pb.ListTicketsRequest(
                statuses=[pb.TICKET_STATUS_NEW, pb.TICKET_STATUS_RESOLVED, pb.TICKET_STATUS_CLOSED]
            ),
            timeout=5,
        )
    return [t for t in reply.tickets if t.channel == pb.TICKET_CHANNEL_MONITORING]


def test_a_monitoring_ticket_opens_and_closes_by_itself_on_a_real_agent(
    monitored: Deployment, tmp_path: Path
) -> None:
    sonde = monitored
    agent = bring_online(sonde, tmp_path / "agent" / "state")
    group = cli(sonde, *GROUP, *LOW, *NEVER_UPTIME)["group"]
    assert (group["interval_s"], group["clear_checks"]) == (2, 2)
    added = cli(sonde, "group", "add", "lab", agent.agent_id)
    assert added["agent_ids"] == [agent.agent_id]

    opened = wait_for("a monitoring ticket", lambda: monitoring_tickets(sonde) or None, timeout=20)
    [ticket] = opened
    assert ticket.status == pb.TICKET_STATUS_NEW
    assert ticket.agent_id == agent.agent_id

    cli(sonde, *GROUP, *BACK, *NEVER_UPTIME)  # set back: the disk is ok again

    def closed() -> pb.Ticket | None:
        [now] = monitoring_tickets(sonde)  # one ticket: the finding opened no second one
        return now if now.status == pb.TICKET_STATUS_CLOSED else None

    done = wait_for("the monitoring ticket to close itself", closed, timeout=25)
    assert "disk.space cleared 2 checks in a row" in done.resolution
    with sonde.console() as console:
        timeline = console.GetTicket(pb.GetTicketRequest(id=done.id), timeout=5).timeline
    kinds = [pb.TicketEventKind.Name(e.kind) for e in timeline]
    assert kinds[0] == "TICKET_EVENT_KIND_OPENED"
    assert kinds[-2:] == ["TICKET_EVENT_KIND_RESOLVED", "TICKET_EVENT_KIND_CLOSED"]
    assert {e.actor for e in timeline} == {"monitoring"}

    listed = cli(sonde, "group", "list")["groups"]
    assert [(g["name"], g["members"]) for g in listed] == [("lab", [agent.agent_id])]
    shown = run("sonde", "group", "list", env=sonde.cli_env(), timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert "lab" in shown.stdout
    assert "disks" in shown.stdout


def test_group_set_changes_only_what_it_names(monitored: Deployment) -> None:
    sonde = monitored
    created = cli(sonde, "group", "set", "desks", "--interval", "1h", "--collectors", "disks")
    assert (created["group"]["interval_s"], created["group"]["clear_checks"]) == (3600, 3)
    cli(sonde, "group", "set", "desks", "--threshold", "disk_used_critical_percent=90")
    changed = cli(sonde, "group", "set", "desks", "--clear-checks", "5")["group"]
    assert changed["interval_s"] == 3600  # kept, not the 15 min a new group takes
    assert changed["collectors"] == ["disks"]
    assert changed["clear_checks"] == 5
    assert changed["thresholds"] == {"disk_used_critical_percent": 90.0}
    cli(sonde, "group", "set", "desks", "--off")
    back_on = cli(sonde, "group", "set", "desks", "--collectors", "disks,memory")["group"]
    assert back_on["interval_s"] == 0  # still off
    assert (back_on["collectors"], back_on["clear_checks"]) == (["disks", "memory"], 5)
    [listed] = cli(sonde, "group", "list")["groups"]
    assert (listed["name"], listed["clear_checks"]) == ("desks", 5)

    fresh = cli(sonde, "group", "set", "kiosks", "--clear-checks", "2")["group"]
    assert (fresh["interval_s"], fresh["clear_checks"]) == (15 * 60, 2)  # a new group's defaults

    audit = cli(sonde, "audit", "--action", "monitoring.group.set")["entries"]
    details = [json.loads(entry["detail"]) for entry in reversed(audit)]  # oldest first
    assert [(d["group"], d["changed"]) for d in details] == [
        ("desks", "interval_s,collectors,clear_checks,thresholds"),  # created: every setting
        ("desks", "thresholds"),
        ("desks", "clear_checks"),
        ("desks", "interval_s"),
        ("desks", "collectors"),
        ("kiosks", "interval_s,collectors,clear_checks,thresholds"),
    ]
    assert details[2]["interval_s"] == 3600  # the row says the settings after the change too

    with sonde.console() as console:
        for refused, reason in [
            (pb.SetAgentGroupRequest(name="desks", interval_s=0), "say --off"),
            (pb.SetAgentGroupRequest(name="desks", interval_s=60, off=True), "not both"),
        ]:
            with pytest.raises(grpc.RpcError) as error:
                console.SetAgentGroup(refused, timeout=5)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert reason in str(error.value.details())
    zero = run(
        "sonde", "group", "set", "desks", "--clear-checks", "0", env=sonde.cli_env(), timeout=30
    )
    assert zero.returncode == 2
    assert "--clear-checks '0': say a number from 1" in zero.stderr


@pytest.mark.postgres
@pytest.mark.slow
def test_two_replicas_on_one_database_queue_each_check_once(tmp_path: Path) -> None:
    """Both replicas' schedulers run: the agent is checked about once an interval, never twice
    at once. (Two rounds in the very same instant, which real processes rarely hit, are
    raced in tests/unit/domain/test_monitoring.py on PostgreSQL.)"""
    name = f"sonde_monitoring_{secrets.token_hex(4)}"
    url = asyncio.run(create_database(name)).replace("+asyncpg", "")
    a = Deployment(tmp_path / "a", db_url=url)
    b: Deployment | None = None
    try:
        a.init()
        a.start_server("--monitoring-min-interval", "1")
        b = Deployment(tmp_path / "b", db_url=url, admin_token=a.admin_token)
        b.data.mkdir(parents=True)
        shutil.copytree(a.data / "pki", b.data / "pki")
        shutil.copy2(a.data / "server.json", b.data / "server.json")
        b.data.chmod(0o700)
        b.start_server("--monitoring-min-interval", "1")
        agent = bring_online(a, tmp_path / "agent" / "state")
        cli(b, "group", "set", "lab", "--interval", "2s", "--collectors", "disks")
        cli(a, "group", "add", "lab", agent.agent_id)
        time.sleep(9)  # about 4 intervals, with both replicas' schedulers at work
        cli(b, "group", "set", "lab", "--off")
        with a.console() as console:
            listed = console.ListCommands(
                pb.ListCommandsRequest(agent=agent.agent_id, limit=100), timeout=10
            ).commands
        ran = sorted(
            (c for c in listed if c.requested_by == "monitoring"),
            key=lambda c: c.created_at.ToDatetime(),
        )
        assert 3 <= len(ran) <= 6, [c.created_at.ToDatetime() for c in ran]
        for before, after in itertools.pairwise(ran):
            # never two at once: each was queued after the one before had ended
            if before.state == pb.COMMAND_STATE_SUCCEEDED:
                assert before.finished_at.ToDatetime() <= after.created_at.ToDatetime()
            gap = after.created_at.ToDatetime() - before.created_at.ToDatetime()
            assert gap.total_seconds() >= 1.5, gap
    finally:
        if b is not None:
            b.stop()
        a.stop()
        asyncio.run(drop_database(name))
