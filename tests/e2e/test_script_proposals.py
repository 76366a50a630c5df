"""Writing a script, end to end with the real programs: an l2 proposes a new version from a
folder; the review shows it beside the published version (the raised risk called out, the
diffs, 80 columns); the author cannot approve it, another person does; export-approved
writes a folder that `sonde-catalog sign` signs as is; `sonde catalog publish` marks the
proposal published, and only then does the new version run on a real agent."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

from sonde.catalog.bundle import load_private_key
from tests.support.catalog_bundles import manifest_text, signed_bundle, source
from tests.support.deployment import Deployment, run

NEW_SCRIPT = b'#!/bin/sh\necho "say-hello 1.1.0, louder"\n'


def cli(sonde: Deployment, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return run("sonde", *args, env=sonde.cli_env(token), timeout=120)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def test_propose_review_approve_export_sign_publish_and_run(
    sonde: Deployment, tmp_path: Path
) -> None:
    key = sonde.data / "pki" / "catalog.key"
    bundle = tmp_path / "first.bundle"
    bundle.write_bytes(signed_bundle(load_private_key(key.read_bytes()), source("say-hello")))
    assert cli(sonde, None, "catalog", "publish", str(bundle)).returncode == 0
    bob = sonde.add_user("bob", "l2")
    ann = sonde.add_user("ann", "l1")

    folder = tmp_path / "proposal"
    folder.mkdir()
    (folder / "say-hello.toml").write_text(manifest_text("say-hello", "1.1.0", risk="medium"))
    (folder / "say-hello.sh").write_bytes(NEW_SCRIPT)
    refused = cli(sonde, ann, "scripts", "propose", str(folder), "--json")
    assert refused.returncode == 1
    assert "needs the scripts.propose permission (l2, admin); ann is l1" in refused.stdout
    done = cli(sonde, bob, "scripts", "propose", str(folder), "--note", "louder", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (proposal,) = as_json(done)["proposals"]
    number = str(proposal["id"])
    assert (proposal["version"], proposal["state"]) == ("1.1.0", "PROPOSAL_STATE_PENDING")
    again = cli(sonde, bob, "scripts", "propose", str(folder))
    assert again.returncode == 1
    assert "not newer than 1.1.0, pending as proposal" in again.stderr

    shown = cli(sonde, None, "scripts", "review", "say-hello@1.1.0")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, shown.stdout
    assert "risk raised: low to" in shown.stdout
    assert "The risk is raised" in shown.stdout
    assert '+echo "say-hello 1.1.0, louder"' in shown.stdout
    assert '-risk = "low"' in shown.stdout
    assert f"decide: sonde scripts review {number} --approve" in shown.stdout
    review = as_json(cli(sonde, bob, "scripts", "review", number, "--json"))
    assert review["published_version"] == "1.0.0"
    assert review["risk_raised"] is True
    assert review["may_review"] is False  # bob is its author
    assert base64.b64decode(review["script"]) == NEW_SCRIPT

    own = cli(sonde, bob, "scripts", "review", number, "--approve")
    assert own.returncode == 1
    assert "needs the catalog.review permission (admin); bob is l2" in own.stderr
    no_reason = cli(sonde, None, "scripts", "review", number, "--reject")
    assert no_reason.returncode == 1
    assert "--reject needs --reason" in no_reason.stderr
    approved = as_json(cli(sonde, None, "scripts", "review", number, "--approve", "--json"))
    assert approved["proposal"]["state"] == "PROPOSAL_STATE_APPROVED"
    assert approved["proposal"]["reviewed_by"] == "admin"

    agent_id = sonde.enroll_agent(tmp_path / "agent" / "state")
    sonde.start_agent(tmp_path / "agent" / "state")
    sonde.wait_online(agent_id)
    unpublished = cli(sonde, None, "run", agent_id, "say-hello", "--version", "1.1.0", "--json")
    assert unpublished.returncode == 1
    assert "say-hello has no version '1.1.0' (published: 1.0.0)" in unpublished.stdout

    out = tmp_path / "to-sign"
    exported = as_json(cli(sonde, None, "scripts", "export-approved", "--out", str(out), "--json"))
    assert [(w["script_id"], w["version"]) for w in exported["written"]] == [("say-hello", "1.1.0")]
    assert (out / "linux" / "say-hello.sh").read_bytes() == NEW_SCRIPT
    full = cli(sonde, None, "scripts", "export-approved", "--out", str(out))
    assert full.returncode == 1
    assert "is not empty" in full.stderr
    signed = tmp_path / "new.bundle"
    done = run("sonde-catalog", "sign", "--key", str(key), str(out), "--out", str(signed))
    assert done.returncode == 0, done.stderr
    assert cli(sonde, None, "catalog", "publish", str(signed)).returncode == 0

    listed = as_json(cli(sonde, bob, "scripts", "proposals", "--json"))["proposals"]
    assert [(p["id"], p["state"]) for p in listed] == [(proposal["id"], "PROPOSAL_STATE_PUBLISHED")]
    ran = cli(sonde, None, "run", agent_id, "say-hello", "--wait", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    ended = as_json(ran)["run"]
    assert ended["script_version"] == "1.1.0"
    assert base64.b64decode(ended["stdout"]) == b"say-hello 1.1.0, louder\n"
