"""Fleet administration through the real programs: enrollment tokens listed and revoked (and
refused at once, on the replica that revoked them and on the other one), and a machine
removed while its agent process is connected."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import bring_online
from tests.e2e.test_replicas import second_replica
from tests.integration.storage.databases import create_database, drop_database
from tests.support.deployment import Deployment, deployment, run, wait_for


def sonde(
    deployment: Deployment, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run("sonde", *args, env=deployment.cli_env(token), timeout=120)


def sonde_json(deployment: Deployment, *args: str, token: str | None = None) -> dict[str, Any]:
    done = sonde(deployment, *args, "--json", token=token)
    assert done.returncode == 0, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def sonde_error(deployment: Deployment, *args: str, token: str | None = None) -> dict[str, str]:
    done = sonde(deployment, *args, "--json", token=token)
    assert done.returncode == 1, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
    error: dict[str, str] = json.loads(done.stdout)["error"]
    return error


def enroll(
    deployment: Deployment, enrollment: str, state: Path
) -> subprocess.CompletedProcess[str]:
    return run("sonde-agent", "enroll", enrollment, "--state", str(state), "--json")


def test_tokens_are_listed_without_secrets_and_a_revoked_one_is_refused_at_once(
    sonde_deployment: Deployment, tmp_path: Path
) -> None:
    created = sonde_json(sonde_deployment, "token", "create", "--uses", "3")
    token_id = created["token_id"]
    enrollment = created["enrollment"]
    assert enroll(sonde_deployment, enrollment, tmp_path / "first").returncode == 0

    listed = sonde_json(sonde_deployment, "tokens")["tokens"]
    mine = next(token for token in listed if token["id"] == token_id)
    assert mine["state"] == "ENROLLMENT_TOKEN_STATE_ACTIVE"
    assert (mine["uses_granted"], mine["uses_left"], mine["created_by"]) == (3, 2, "admin")
    table = sonde(sonde_deployment, "tokens")
    assert table.returncode == 0
    row = next(line for line in table.stdout.splitlines() if token_id in line)
    assert "active" in row
    assert "2 of 3" in row
    assert enrollment not in table.stdout + json.dumps(listed)

    revoked = sonde_json(sonde_deployment, "tokens", "revoke", token_id[:6])["token"]
    assert (revoked["id"], revoked["state"]) == (token_id, "ENROLLMENT_TOKEN_STATE_REVOKED")
    refused = enroll(sonde_deployment, enrollment, tmp_path / "second")
    assert refused.returncode != 0
    assert f"enrollment token {token_id} was revoked by admin" in refused.stdout + refused.stderr
    assert token_id not in [t["id"] for t in sonde_json(sonde_deployment, "tokens")["tokens"]]
    every = sonde_json(sonde_deployment, "tokens", "--all")["tokens"]
    assert any(t["id"] == token_id and t["revoked_by"] == "admin" for t in every)

    again = sonde_error(sonde_deployment, "tokens", "revoke", token_id)
    assert again["code"] == "FAILED_PRECONDITION"
    assert "already revoked" in again["message"]
    unknown = "0000000000000000" if token_id != "0000000000000000" else "ffffffffffffffff"
    missing = sonde_error(sonde_deployment, "tokens", "revoke", unknown)
    assert missing["code"] == "NOT_FOUND"
    assert "no enrollment token has an id starting" in missing["message"]
    audited = sonde_json(sonde_deployment, "audit", "--action", "enrollment_token.revoke")
    # Newest first: the refused unknown id, the refused second revocation, the revocation.
    assert [e["result"][:7] for e in audited["entries"]] == ["refused", "refused", "ok"]
    l2 = sonde_deployment.add_user("lee", "l2")
    denied = sonde_error(sonde_deployment, "tokens", token=l2)
    assert denied["code"] == "PERMISSION_DENIED"
    assert "enrollment.manage" in denied["message"]


@pytest.fixture
def sonde_deployment(tmp_path: Path) -> Iterator[Deployment]:
    with deployment(tmp_path / "server") as running:
        yield running


def test_a_removed_machine_is_cut_off_unlisted_and_kept_by_its_tickets(
    sonde_deployment: Deployment, tmp_path: Path
) -> None:
    online = bring_online(sonde_deployment, tmp_path / "agent")
    ticket = sonde_json(
        sonde_deployment, "ticket", "open", "--title", "PC is slow", "--agent", online.agent_id
    )["ticket"]
    before = sonde(sonde_deployment, "ticket", "show", str(ticket["id"])).stdout
    assert online.agent_id in before
    assert "(removed)" not in before

    l2 = sonde_deployment.add_user("lee", "l2")
    denied = sonde_error(sonde_deployment, "agents", "remove", online.agent_id, "--yes", token=l2)
    assert denied["code"] == "PERMISSION_DENIED"
    assert "agents.remove" in denied["message"]
    unconfirmed = sonde(sonde_deployment, "agents", "remove", online.agent_id)
    assert unconfirmed.returncode == 1
    assert "without confirmation: pass --yes" in unconfirmed.stderr
    assert sonde_deployment.agent_record(online.agent_id) is not None
    assert online.process.alive()

    removed = sonde_json(
        sonde_deployment, "agents", "remove", online.agent_id[:8], "--yes", "--reason", "sold"
    )["agent"]
    assert removed["id"] == online.agent_id
    assert removed["removed_by"] == "admin"
    assert removed["revoked"] is True
    # Its session is closed, and the agent is told it is revoked: it never reconnects.
    wait_for("the agent to stop", lambda: None if online.process.alive() else True, timeout=10)
    assert online.process.popen.returncode == 4
    restarted = sonde_deployment.start_agent(online.state)
    wait_for("the restarted agent to give up", lambda: None if restarted.alive() else True)
    assert restarted.popen.returncode == 4

    assert online.agent_id not in [
        a["id"] for a in sonde_json(sonde_deployment, "agents")["agents"]
    ]
    every = sonde_json(sonde_deployment, "agents", "--all")["agents"]
    assert any(a["id"] == online.agent_id and a["removed_at"] for a in every)
    shown = sonde_json(sonde_deployment, "ticket", "show", str(ticket["id"]))["ticket"]
    assert shown["agent_id"] == online.agent_id
    assert shown["agent_removed"] is True
    # Its ticket names it, labelled removed: ticket show, and ticket list's machine column.
    header = sonde(sonde_deployment, "ticket", "show", str(ticket["id"])).stdout
    assert f"({online.agent_id}) (removed)" in header
    listed = sonde(sonde_deployment, "ticket", "list").stdout.splitlines()
    row = next(n for n, line in enumerate(listed) if line.lstrip().startswith(str(ticket["id"])))
    assert any("(removed)" in line for line in listed[row : row + 3])
    assert all(len(line) <= 80 for line in listed)
    every_row = sonde(sonde_deployment, "agents", "--all").stdout.splitlines()
    assert any(online.agent_id[:8] in line and " removed" in line for line in every_row)
    again = sonde_error(sonde_deployment, "agents", "remove", online.agent_id, "--yes")
    assert again["code"] == "FAILED_PRECONDITION"
    assert "already removed" in again["message"]
    audited = sonde_json(sonde_deployment, "audit", "--action", "agent.remove")["entries"]
    # Newest first: the refused second removal, the removal (the l2's refusal came before).
    assert [(e["agent_id"], e["result"][:7]) for e in audited][:2] == [
        (online.agent_id, "refused"),
        (online.agent_id, "ok"),
    ]
    # The audit as a technician reads it: 80 columns, ok or refused, the reason under it.
    table = sonde(sonde_deployment, "audit", "--action", "agent.remove").stdout.splitlines()
    assert all(len(line) <= 80 for line in table), "\n".join(table)
    results = [
        [word for word in line.split() if word in ("ok", "refused")]
        for line in table
        if "agent.remove" in line
    ]
    assert results[:2] == [["refused"], ["ok"]]
    assert any("already removed" in line for line in table)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_token_revoked_through_one_replica_is_refused_by_the_other(tmp_path: Path) -> None:
    name = f"sonde_tokens_{secrets.token_hex(4)}"
    url = asyncio.run(create_database(name)).replace("+asyncpg", "")
    try:
        with deployment(tmp_path / "a", db_url=url) as a:
            b = second_replica(a, tmp_path / "b")
            try:
                created = sonde_json(a, "token", "create", "--uses", "5")
                token_id, enrollment = created["token_id"], created["enrollment"]
                assert enroll(a, enrollment, tmp_path / "first").returncode == 0
                sonde_json(b, "tokens", "revoke", token_id)
                # The string names A: A refuses what B revoked, with no wait.
                refused = enroll(a, enrollment, tmp_path / "second")
                assert refused.returncode != 0
                assert "was revoked by admin" in refused.stdout + refused.stderr
                listed = sonde_json(a, "tokens", "--all")["tokens"]
                assert [t["state"] for t in listed if t["id"] == token_id] == [
                    "ENROLLMENT_TOKEN_STATE_REVOKED"
                ]
            finally:
                b.stop()
    finally:
        asyncio.run(drop_database(name))
