"""`sonde run`, `sonde runs`, `sonde approve` and `sonde reject` as real processes against a
real server: the tiers' refusals as a technician reads them, a high-risk run approved by
another person, a rejection, a cancel, and secrets masked in what the CLI prints."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.catalog_bundles import signed_bundle, source
from tests.support.deployment import Deployment, run

PARAMETERS = """
[[parameters]]
name = "service_name"
type = "string"
pattern = "[A-Za-z0-9_.-]{1,64}"
required = true
description = "The service."

[[parameters]]
name = "password"
type = "string"
pattern = "[A-Za-z0-9]{1,64}"
secret = true
description = "A secret."
"""
SECRET = "Sup3rSecretValue"


def sonde(
    deployment: Deployment, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run("sonde", *args, env=deployment.cli_env(token), timeout=120)


def ok(deployment: Deployment, *args: str, token: str | None = None) -> dict[str, Any]:
    done = sonde(deployment, *args, "--json", token=token)
    assert done.returncode == 0, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def refused(deployment: Deployment, *args: str, token: str | None = None) -> str:
    done = sonde(deployment, *args, "--json", token=token)
    assert done.returncode == 1, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
    return str(json.loads(done.stdout)["error"]["message"])


def _publish(deployment: Deployment, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(
        (deployment.data / "pki" / "catalog.key").read_bytes(), password=None
    )
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    bundle = tmp_path / "catalog.bundle"
    bundle.write_bytes(
        signed_bundle(
            key,
            source("clear-temp", risk="low"),
            source("restart-thing", risk="medium", parameters=PARAMETERS),
            source("repair-updates", risk="high"),
        )
    )
    ok(deployment, "catalog", "publish", str(bundle))


def test_runs_from_the_cli(shared_sonde: Deployment, tmp_path: Path) -> None:
    _publish(shared_sonde, tmp_path)
    agent = shared_sonde.enroll_agent(tmp_path / "agent")
    ann = shared_sonde.add_user("ann", "l1")
    bob = shared_sonde.add_user("bob", "l2")

    # Tiers, as the technician reads them.
    said = refused(shared_sonde, "run", agent, "clear-temp", token=ann)
    assert "give --ticket N" in said
    said = refused(
        shared_sonde, "run", agent, "restart-thing", "--param", "service_name=x", token=ann
    )
    assert "needs scripts.run.medium" in said
    said = refused(shared_sonde, "run", agent, "restart-thing", token=bob)
    assert "needs the parameter service_name" in said

    # A medium run with a secret: masked in every listing.
    asked = ok(
        shared_sonde,
        "run", agent, "restart-thing",
        "--param", "service_name=cups", "--param", f"password={SECRET}", "--dry-run",
        token=bob,
    )  # fmt: skip
    run_id = asked["run"]["command"]["id"]
    assert asked["run"]["parameters"] == {"service_name": "cups", "password": "***"}
    assert asked["run"]["dry_run"] is True
    listed = sonde(shared_sonde, "runs", "--agent", agent, token=bob)
    assert listed.returncode == 0, listed.stderr
    assert "restart-thing" in listed.stdout
    shown = sonde(shared_sonde, "runs", "show", run_id, token=bob)
    assert "password=***" in shown.stdout
    assert SECRET not in shown.stdout + listed.stdout
    audit = sonde(shared_sonde, "audit", "--json")
    assert SECRET not in audit.stdout
    cancelled = ok(shared_sonde, "runs", "cancel", run_id, "--reason", "wrong machine", token=bob)
    assert cancelled["run"]["command"]["state"] == "COMMAND_STATE_CANCELLED"

    # A high-risk run: another person approves; nobody approves their own.
    pending = ok(shared_sonde, "run", agent, "repair-updates", token=bob)["run"]
    assert pending["command"]["state"] == "COMMAND_STATE_PENDING_APPROVAL"
    said = refused(shared_sonde, "approve", pending["command"]["id"], token=bob)
    assert "another person with scripts.approve" in said
    said = refused(shared_sonde, "approve", pending["command"]["id"], token=ann)
    assert "scripts.approve" in said
    approved = ok(shared_sonde, "approve", pending["command"]["id"])["run"]
    assert approved["command"]["state"] == "COMMAND_STATE_QUEUED"
    assert approved["approved_by"] == "admin"
    waiting = ok(shared_sonde, "runs", "--state", "queued", token=bob)["runs"]
    assert [r["command"]["id"] for r in waiting] == [pending["command"]["id"]]

    # Rejected: it never runs.
    other = ok(shared_sonde, "run", agent, "repair-updates", token=bob)["run"]["command"]["id"]
    gone = ok(shared_sonde, "reject", other, "--reason", "not during office hours")["run"]
    assert gone["command"]["state"] == "COMMAND_STATE_REJECTED"
    assert "not during office hours" in gone["command"]["reason"]
