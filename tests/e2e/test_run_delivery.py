"""Script runs reach the agent in order, never after their expiry, and at most once across
kill -9 of the server: real sonde-server and sonde-agent processes on loopback, SQLite.

The test's catalog scripts, signed here with the deployment's catalog key, append their `tag`
parameter to a file in the test's folder: that file is what the workstation actually ran.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import CatalogSource
from sonde.v1 import console_pb2
from tests.e2e import test_replicas
from tests.e2e.test_replicas import Pair, holding
from tests.support.catalog_bundles import manifest_text, signed_bundle
from tests.support.deployment import Deployment, run, wait_for

KILLS = 12
# Each kill test restarts a server 12 times and waits for the agent to come back: about 40 s
# alone, two or three times that beside other pytest-xdist workers on two cores. The suite's 120 s
# limit per test would cut it short while it is still making progress.
KILL_TEST_TIMEOUT_S = 360
TAG = """
[[parameters]]
name = "tag"
type = "string"
pattern = "^[a-z0-9-]{1,40}$"
required = true
description = "What the script writes to the test's file."
"""
NAP = """
[[parameters]]
name = "nap"
type = "string"
pattern = "^[0-9][.][0-9]{2}$"
required = true
description = "Seconds to sleep after writing the tag."
"""
pair = test_replicas.pair  # the fixture: two replicas on PostgreSQL, one agent knowing both
OPEN_STATES = (
    console_pb2.COMMAND_STATE_QUEUED,
    console_pb2.COMMAND_STATE_DELIVERED,
    console_pb2.COMMAND_STATE_RUNNING,
)


def publish_tagging_scripts(sonde: Deployment, ran: Path, bundle: Path) -> None:
    """note-tag appends its tag to `ran`; note-tag-and-nap does, then sleeps `nap` seconds."""
    key = serialization.load_pem_private_key(
        (sonde.data / "pki" / "catalog.key").read_bytes(), password=None
    )
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    append = f"printf '%s\\n' \"$SONDE_PARAM_TAG\" >> '{ran}'\n"
    bundle.write_bytes(
        signed_bundle(
            key,
            CatalogSource(
                manifest_text("note-tag", parameters=TAG).encode(),
                f"#!/bin/bash\n{append}".encode(),
            ),
            CatalogSource(
                manifest_text("note-tag-and-nap", parameters=TAG + NAP).encode(),
                f'#!/bin/bash\n{append}sleep "$SONDE_PARAM_NAP"\n'.encode(),
            ),
        )
    )
    done = run("sonde", "catalog", "publish", str(bundle), env=sonde.cli_env())
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"


def free_port_below_the_ephemeral_range(picker: random.Random) -> int:
    while True:
        port = picker.randrange(20_000, 32_768)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def restart_below_the_ephemeral_range(sonde: Deployment, attempts: int = 5) -> None:
    """The server again, on free ports under Linux's ephemeral range (from 32768): while it
    is killed, no program's outgoing connection on this busy machine can take them. Ports
    another program took between the look and the bind: the next pair is tried."""
    assert sonde.server is not None
    sonde.server.stop()
    picker = random.SystemRandom()  # not the test's seed: a run after a run picks others
    for attempt in range(attempts):
        console_port = free_port_below_the_ephemeral_range(picker)
        agent_port = console_port
        while agent_port == console_port:
            agent_port = free_port_below_the_ephemeral_range(picker)
        sonde.console_address = f"127.0.0.1:{console_port}"
        sonde.agent_address = f"127.0.0.1:{agent_port}"
        try:
            sonde.start_server(same_ports=True)
            return
        except AssertionError as error:
            if "address already in use" not in str(error) or attempt == attempts - 1:
                raise


def tags_ran(ran: Path) -> list[str]:
    return ran.read_text().split() if ran.exists() else []


def get_run(sonde: Deployment, run_id: str) -> console_pb2.ScriptRunInfo:
    with sonde.console() as console:
        return console.GetRun(console_pb2.GetRunRequest(id=run_id), timeout=10).run


def final_runs(
    sonde: Deployment, run_ids: list[str], timeout: float
) -> list[console_pb2.ScriptRunInfo]:
    def ended() -> list[console_pb2.ScriptRunInfo] | None:
        found = [get_run(sonde, run_id) for run_id in run_ids]
        return None if any(r.command.state in OPEN_STATES for r in found) else found

    return wait_for(f"{len(run_ids)} runs to end", ended, timeout=timeout, interval=0.25)


def audit_rows(sonde: Deployment, action: str) -> list[console_pb2.AuditEntry]:
    rows: list[console_pb2.AuditEntry] = []
    with sonde.console() as console:
        before = 0
        while True:
            page = console.ListAudit(
                console_pb2.ListAuditRequest(action=action, limit=1000, before_id=before),
                timeout=10,
            )
            rows += page.entries
            if not page.more:
                return rows
            before = page.entries[-1].id


def test_offline_runs_run_in_the_order_asked_and_an_expired_one_never_runs(
    sonde: Deployment, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.txt"
    publish_tagging_scripts(sonde, ran, tmp_path / "catalog.bundle")
    state = tmp_path / "laptop"
    agent_id = sonde.enroll_agent(state)

    # The laptop is off: five runs through the CLI, the third one good for 2 s only.
    asked: dict[str, console_pb2.ScriptRunInfo] = {}
    for tag in ("one", "two", "stale", "four", "five"):
        expiry = ["--expires", "2s"] if tag == "stale" else []
        done = run(
            "sonde", "run", agent_id, "note-tag", "--param", f"tag={tag}", *expiry, "--json",
            env=sonde.cli_env(),
        )  # fmt: skip
        assert done.returncode == 0, f"{done.stdout}{done.stderr}"
        reply = json.loads(done.stdout)["run"]
        assert reply["command"]["state"] == "COMMAND_STATE_QUEUED", reply
        asked[tag] = get_run(sonde, reply["command"]["id"])
    stale_until = asked["stale"].command.expires_at.ToDatetime(tzinfo=UTC)
    assert (stale_until - datetime.now(UTC)).total_seconds() <= 2

    time.sleep(max(0.0, (stale_until - datetime.now(UTC)).total_seconds()) + 0.5)
    sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=20)

    kept = ["one", "two", "four", "five"]
    ended = final_runs(sonde, [asked[tag].command.id for tag in kept], timeout=60)
    for tag, done_run in zip(kept, ended, strict=True):
        assert done_run.command.state == console_pb2.COMMAND_STATE_SUCCEEDED, (tag, done_run)
        assert done_run.exit_code == 0
        assert done_run.command.deliveries == 1
    assert tags_ran(ran) == kept  # one after the other, in the order they were asked
    delivered = [r.command.delivered_at.ToNanoseconds() for r in ended]
    assert delivered == sorted(delivered)

    stale = get_run(sonde, asked["stale"].command.id)
    assert stale.command.state == console_pb2.COMMAND_STATE_EXPIRED, stale
    assert stale.command.deliveries == 0
    assert not stale.ended
    assert "stale" not in tags_ran(ran)
    dispatches = audit_rows(sonde, "script.dispatch")
    dispatched = {json.loads(row.detail)["command_id"] for row in dispatches}
    assert stale.command.id not in dispatched  # never signed nor sent


@pytest.mark.timeout(KILL_TEST_TIMEOUT_S)
def test_kill_9_of_the_server_at_random_points_ends_each_run_once_and_runs_none_twice(
    sonde: Deployment, tmp_path: Path
) -> None:
    rng = random.Random(7)
    restart_below_the_ephemeral_range(sonde)
    ran = tmp_path / "ran.txt"
    publish_tagging_scripts(sonde, ran, tmp_path / "catalog.bundle")
    state = tmp_path / "desk"
    agent_id = sonde.enroll_agent(state)
    agent = sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=20)
    started = time.monotonic()

    def sessions() -> int:
        return agent.log().count("online: ")

    def session_after(count: int) -> None:
        wait_for("the agent's next session", lambda: sessions() > count or None, timeout=30)

    asked: dict[str, str] = {}  # tag -> run id
    at_kill = sessions() - 1
    for kill in range(KILLS):
        if rng.random() < 0.5:  # asked once the agent is back, or while it still reconnects
            session_after(at_kill)
        tag = f"kill-{kill}"
        with sonde.console() as console:
            reply = console.RunScript(
                console_pb2.RunScriptRequest(
                    agent=agent_id,
                    script_id="note-tag-and-nap",
                    parameters={"tag": tag, "nap": f"{rng.uniform(0.0, 1.0):.2f}"},
                ),
                timeout=10,
            )
        asked[tag] = reply.run.command.id
        time.sleep(rng.uniform(0.0, 0.4))  # before delivery, mid-run, or after it ended
        at_kill = sessions()
        sonde.kill_server()
        sonde.start_server(same_ports=True)
    assert agent.alive(), agent.log()

    assert_each_ran_once_and_ended_once(sonde, asked, ran)
    elapsed = time.monotonic() - started
    assert elapsed < KILL_TEST_TIMEOUT_S - 30, f"{KILLS} kills took {elapsed:.0f} s"


def assert_each_ran_once_and_ended_once(
    sonde: Deployment, asked: dict[str, str], ran: Path
) -> None:
    """`asked` (tag -> run id) all end succeeded, each tag once in `ran`, each run with one
    stored command.result (its repeats refused) and one script.dispatch row per delivery."""
    ended = final_runs(sonde, list(asked.values()), timeout=60)
    results = audit_rows(sonde, "command.result")
    dispatches = audit_rows(sonde, "script.dispatch")
    written = Counter(tags_ran(ran))
    for (tag, run_id), done_run in zip(asked.items(), ended, strict=True):
        state_name = console_pb2.CommandState.Name(done_run.command.state)
        # The agent never stopped: each run ran once, and the result it kept reached the server.
        assert written[tag] == 1, (tag, written[tag], state_name)
        assert done_run.command.state == console_pb2.COMMAND_STATE_SUCCEEDED, (tag, done_run)
        assert done_run.ended
        assert done_run.exit_code == 0
        mine = [row for row in results if json.loads(row.detail).get("command_id") == run_id]
        stored = [row for row in mine if row.result == "ok"]
        assert len(stored) == 1, (tag, [(r.result, r.detail) for r in mine])
        assert json.loads(stored[0].detail)["state"] == "succeeded"
        for resent in mine:  # a result resent after a crash: refused as a repeat, not stored
            assert resent is stored[0] or "had already ended" in resent.result, resent
        sent = [r for r in dispatches if json.loads(r.detail)["command_id"] == run_id]
        assert len(sent) == done_run.command.deliveries >= 1, (tag, len(sent))
    assert set(written) == set(asked)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(KILL_TEST_TIMEOUT_S)
def test_kill_9_of_the_replica_holding_the_agent_ends_each_run_once_and_runs_none_twice(
    pair: Pair, tmp_path: Path
) -> None:
    """The same on two replicas sharing PostgreSQL: each run asked through either one, the
    holder killed; the agent moves to the survivor, which resends what was delivered."""
    rng = random.Random(11)
    ran = tmp_path / "ran.txt"
    publish_tagging_scripts(pair.a, ran, tmp_path / "catalog.bundle")
    started = time.monotonic()
    asked: dict[str, str] = {}  # tag -> run id
    for kill in range(KILLS):
        holder, survivor = pair.holder()
        tag = f"kill-{kill}"
        with rng.choice((holder, survivor)).console() as console:
            reply = console.RunScript(
                console_pb2.RunScriptRequest(
                    agent=pair.agent_id,
                    script_id="note-tag-and-nap",
                    parameters={"tag": tag, "nap": f"{rng.uniform(0.0, 1.0):.2f}"},
                ),
                timeout=10,
            )
        asked[tag] = reply.run.command.id
        time.sleep(rng.uniform(0.0, 0.4))  # before delivery, mid-run, or after it ended
        holder.kill_server()
        wait_for(
            "the agent to move to the surviving replica",
            holding(survivor, pair.agent_id),
            timeout=30,
        )
        holder.start_server(same_ports=True)
    assert pair.agent.alive(), pair.agent.log()

    _, live = pair.holder()
    assert_each_ran_once_and_ended_once(live, asked, ran)
    elapsed = time.monotonic() - started
    assert elapsed < KILL_TEST_TIMEOUT_S - 30, f"{KILLS} kills took {elapsed:.0f} s"
